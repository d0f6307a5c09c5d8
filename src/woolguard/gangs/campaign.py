"""Gang detection over a campaign's decided events: links in, gang table and hot-path scores out.

Four detectors, each with its own score in [0, 1], run side by side on the links of
:mod:`woolguard.gangs.links` (identity, invitation and lockstep-burst links) — the fourth, co-timing
(:mod:`woolguard.gangs.cotiming`: accounts starting sessions in the same quiet windows again and again),
on the buffer's event times in :func:`detect_buffer`:

1. ``community``: Louvain on the rarity-weighted identity + lockstep graph (no invitation links), each
   community trimmed to its lockstep core (members sharing two or more attributes inside it, at least
   two of them with one co-member). Score ``cohesion / (cohesion + 1) × support × (1 - exp(-(n - 1) / 3))``:
   a rare attribute set shared by many reads as a ring; two to four people on a family phone and home
   broadband score low (the size factor), strangers chained by one popular attribute are trimmed away.
2. ``invite_hub``: one account named as inviter / assist target by ``min_children`` or more distinct
   accounts in the window (a farm head or a crowd leader). Score ``1 - exp(-children / 15)``.
3. ``lockstep``: accounts that burst together on one value (a phone-number segment, a device-trait
   fingerprint) within minutes, far above the value's base rate (:func:`woolguard.gangs.links.burst_links`);
   the accounts of overlapping bursting cells form a group. Score ``1 - exp(-accounts / 8)`` times the
   share of its members that also burst on a second cell or share another attribute (repetition).

An account's ``gang_score`` is the highest score of a gang holding it (× 100 for the engine), its
``gang_size`` that gang's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from woolguard.gangs.communities import detect_communities
from woolguard.gangs.cotiming import cotiming_groups
from woolguard.gangs.graph import AttributeGraph, build_graph
from woolguard.gangs.grow import grow_gangs
from woolguard.gangs.links import ALL_TYPES, LINK_BUCKETS, LINK_WEIGHTS, TYPES, LinkBuffer
from woolguard.gangs.table import Gang, account_gang_features, gang_from_rows


@dataclass
class CampaignGangs:
    gangs: list[Gang]
    accounts: np.ndarray
    gang_score: np.ndarray  # per account, in [0, 1]
    gang_size: np.ndarray
    graph: AttributeGraph | None = None
    meta: dict = field(default_factory=dict)

    def engine_map(self) -> dict[str, tuple[int, int]]:
        """``account id -> (gang_score 0-100, gang_size)`` for :attr:`woolguard.engine.Engine.gangs`."""
        hit = np.nonzero(self.gang_score > 0)[0]
        return {str(self.accounts[i]): (round(100 * float(self.gang_score[i])), int(self.gang_size[i])) for i in hit}


def _groups(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Connected components of accounts linked through shared columns (labels per account row)."""
    if rows.size == 0:
        return np.full(n, -1)
    m = int(cols.max()) + 1
    b = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, m))
    adj = sp.bmat([[None, b], [b.T, None]]).tocsr()
    _, lab = connected_components(adj, directed=False)
    out = lab[:n].copy()
    out[np.diff(b.indptr) == 0] = -1
    return out


def _burst_keys(graph: AttributeGraph, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For burst attribute columns (labels ``value@start/seconds``): a code of the value (any time) and a
    code of (value, hour) — the window a 5-minute cell and its hour cell share."""
    uniq, inv = np.unique(cols, return_inverse=True)
    base, hour = [], []
    for v in graph.attr_value[uniq].tolist():
        head, _, when = str(v).rpartition("@")
        base.append(head or str(v))
        hour.append(int(when.split("/")[0]) // 3600 if when.split("/")[0].isdigit() else -1)
    _, bcode = np.unique(np.asarray(base, dtype=object), return_inverse=True)
    _, wcode = np.unique(np.stack([bcode, np.asarray(hour)]), axis=1, return_inverse=True)
    return bcode.ravel()[inv], wcode.ravel()[inv]


def campaign_graph(buf: LinkBuffer, since_s: int | None = None,
                   type_weights: Mapping[str, float] | None = None) -> AttributeGraph:
    """The attribute graph of a :class:`LinkBuffer`'s links since ``since_s`` (all when None),
    invitation links weighted 0 (evidence only; the hub detector reads them)."""
    weights = dict(LINK_WEIGHTS if type_weights is None else type_weights)
    weights["inviter"] = 0.0
    acc, typ, val, ts, amt = buf.columns(since_s)
    graph = build_graph(acc, typ, val, ts, amt,
                        type_weights={str(i): weights.get(t, 1.0) for i, t in enumerate(ALL_TYPES)},
                        time_buckets={str(ALL_TYPES.index(t)): b for t, b in LINK_BUCKETS.items()})
    graph.type_names = [ALL_TYPES[int(t)] for t in graph.type_names]
    names = np.asarray(buf.account_names, dtype=object)
    graph.accounts = names[graph.accounts] if graph.accounts.size else graph.accounts.astype(object)
    graph.attr_value = buf.names(graph.attr_value)
    return graph


def detect_buffer(buf: LinkBuffer, since_s: int | None = None, cotiming: bool = True, grow: bool = True,
                  **kwargs) -> CampaignGangs:
    """Gangs among the links of ``buf`` since ``since_s`` (the online sweep and ``woolguard gangs run``):
    the three graph detectors of :func:`detect_on_graph` plus co-timing groups
    (:func:`woolguard.gangs.cotiming.cotiming_groups`; ``cotiming=False`` leaves them out), then identity
    gangs grown by their members' evidence (:func:`grow_found`; ``grow=False`` leaves that out)."""
    if len(buf) == 0:
        return CampaignGangs([], np.array([], dtype=object), np.zeros(0), np.zeros(0, dtype=np.int64))
    graph = campaign_graph(buf, since_s, kwargs.pop("type_weights", None))
    groups: list[np.ndarray] = []
    scores: list[float] = []
    if cotiming:
        acc = np.asarray(buf.account, dtype=np.int64)
        ts = np.asarray(buf.ts, dtype=np.int64)
        if since_s is not None:
            k = int(np.searchsorted(ts, since_s))
            acc, ts = acc[k:], ts[k:]
        index = {a: i for i, a in enumerate(graph.accounts.tolist())}
        names = buf.account_names
        for grp in cotiming_groups(acc, ts, seed=kwargs.get("seed", 0)):
            groups.append(np.fromiter((index[names[a]] for a in grp.accounts.tolist()), dtype=np.int64))
            scores.append(grp.score)
    found = detect_on_graph(graph, extra_groups=[("cotiming", r, s) for r, s in zip(groups, scores, strict=True)],
                            **kwargs)
    return grow_found(found, buf, since_s) if grow else found


#: How much sharing one value of a type says in :func:`grow_found`: values that describe the account (its
#: number and number segment, device id, address, payment account, GPS point) count fully; values that
#: describe its surroundings at the moment (a phone model many people own, an IP or /24 it shares with
#: its neighbours, a code, an invitation) count half, so they add to other evidence but never suffice alone.
GROW_WEIGHTS: dict[str, float] = {"device_id": 1.0, "phone_hash": 1.0, "phone_block": 1.0, "phone_prefix": 1.0,
                                  "address": 1.0, "payment": 1.0, "geo": 1.0, "device_fp": 0.5, "ip": 0.5,
                                  "ip24": 0.5, "code": 0.5, "inviter": 0.5}
#: Detectors whose gangs grow (identity rings); invitation hubs and co-timing crowds share nothing by design.
GROWING = ("community", "lockstep")


def grow_found(found: CampaignGangs, buf: LinkBuffer, since_s: int | None = None, **grow_kw) -> CampaignGangs:
    """Attach unplaced accounts to identity gangs on their combined evidence against the gang's members
    (:func:`woolguard.gangs.grow.grow_gangs`) over every raw link of ``buf`` since ``since_s``."""
    graph = found.graph
    if graph is None or not found.gangs:
        return found
    index = {a: i for i, a in enumerate(graph.accounts.tolist())}
    owner = np.full(graph.n_accounts, -1, dtype=np.int64)
    for gi in range(len(found.gangs) - 1, -1, -1):  # strongest last: it wins
        g = found.gangs[gi]
        if g.detector in GROWING:
            owner[[index[m] for m in g.members]] = gi
    acc, typ, val, ts, _amount, _burst = buf.raw(since_s)
    keep = typ != TYPES.index("self")  # the placeholder of an account without links
    row_of = np.fromiter((index.get(a, -1) for a in buf.account_names), dtype=np.int64, count=len(buf.account_names))
    rows = row_of[acc[keep]]
    ok = rows >= 0
    w_of = np.asarray([GROW_WEIGHTS.get(t, 0.0) for t in TYPES])
    grown = grow_gangs(rows[ok], val[keep][ok], ts[keep][ok], owner, w_of[typ[keep][ok]], **grow_kw)
    added = np.nonzero((grown >= 0) & (owner < 0))[0]
    if added.size == 0:
        return found
    gangs = list(found.gangs)
    for gi in np.unique(grown[added]).tolist():
        g = gangs[gi]
        new_rows = np.r_[np.fromiter((index[m] for m in g.members), dtype=np.int64), added[grown[added] == gi]]
        gangs[gi] = gang_from_rows(graph, g.gang_id, g.detector, new_rows, g.score)
    gscore, gsize = account_gang_features(gangs, graph.accounts)
    return CampaignGangs(gangs, found.accounts, gscore, gsize, graph, meta={**found.meta, "grown": int(added.size)})


def detect_campaign_gangs(
    account: np.ndarray,
    attr_type: np.ndarray,
    attr_value: np.ndarray,
    ts: np.ndarray,
    amount: np.ndarray | None = None,
    *,
    type_weights: Mapping[str, float] | None = None,
    **kwargs,
) -> CampaignGangs:
    """Run the three detectors over string link columns (type names as in :data:`LINK_WEIGHTS`)."""
    weights = dict(LINK_WEIGHTS if type_weights is None else type_weights)
    weights["inviter"] = 0.0  # invitations are the hub detector's; in the graph they are evidence only
    if np.asarray(account).size == 0:
        return CampaignGangs([], np.array([], dtype=object), np.zeros(0), np.zeros(0, dtype=np.int64))
    graph = build_graph(np.asarray(account, dtype=object), np.asarray(attr_type, dtype=object),
                        np.asarray(attr_value, dtype=object), np.asarray(ts), amount, type_weights=weights,
                        time_buckets=LINK_BUCKETS)
    return detect_on_graph(graph, **kwargs)


def detect_on_graph(
    graph: AttributeGraph,
    *,
    min_size: int = 5,
    min_community_score: float = 0.5,
    min_children: int = 20,
    lockstep_types: tuple[str, ...] = ("burst_phone_prefix", "burst_device_fp"),
    min_lockstep: int = 4,
    min_score: float = 0.5,
    pair_budget: int = 14_000_000,
    seed: int = 0,
    extra_groups: list[tuple[str, np.ndarray, float]] | None = None,
) -> CampaignGangs:
    """Run the three detectors on an attribute graph whose type names are link types; gangs scoring
    below ``min_score`` are not reported. ``extra_groups``: ``(detector, account rows, score)`` found
    elsewhere (co-timing) join the table with the same evidence."""
    gangs: list[Gang] = [gang_from_rows(graph, 0, d, rows, s) for d, rows, s in (extra_groups or [])]
    # 1. communities
    comm = detect_communities(graph, pair_budget=pair_budget, seed=seed)
    size = comm.size.astype(np.float64)
    score = comm.cohesion / (comm.cohesion + 1.0) * comm.support * (1.0 - np.exp(-(size - 1) / 3.0))
    keep = np.nonzero((comm.size >= min_size) & (score >= min_community_score))[0]
    if keep.size:
        order = np.argsort(comm.labels, kind="stable")
        lab_sorted = comm.labels[order]
        for c in keep:
            lo, hi = np.searchsorted(lab_sorted, [c, c + 1])
            gangs.append(gang_from_rows(graph, 0, "community", order[lo:hi], float(score[c])))
    # 2. invitation hubs
    tnames = graph.type_names
    edge_type = np.asarray(tnames, dtype=object)[graph.attr_type[graph.edge_attr]]
    index = {a: i for i, a in enumerate(graph.accounts.tolist())}
    if "inviter" in tnames:
        t_inv = tnames.index("inviter")
        inv_cols = np.nonzero((graph.attr_type == t_inv) & (graph.attr_degree >= min_children))[0]
        inc = graph.incidence.tocsc()
        for j in inv_cols:
            head = graph.attr_value[j]
            rows = inc.indices[inc.indptr[j]:inc.indptr[j + 1]]
            if head in index:
                rows = np.union1d(rows, [index[head]])
            s = 1.0 - np.exp(-(rows.size - 1) / 15.0)
            g = gang_from_rows(graph, 0, "invite_hub", rows, s)
            links = [(f"inviter={head}", int(graph.attr_degree[j])), *g.shared_attributes[:9]]
            gangs.append(Gang(**{**g.__dict__, "shared_attributes": links}))
    # 3. lockstep bursts: cells of one value at any time (a number segment a farm keeps drawing from,
    #    shift after shift) are one group; a member is "repeated" when it bursts in two windows (a
    #    5-minute cell and the hour holding it are one window) or shares another attribute
    sel = np.isin(edge_type, list(lockstep_types)) & (graph.attr_degree[graph.edge_attr] >= min_lockstep)
    if sel.any():
        e_rows, e_cols = graph.edge_account[sel], graph.edge_attr[sel]
        _, window = _burst_keys(graph, e_cols)
        lab = _groups(e_rows, e_cols, graph.n_accounts)
        acc_win = np.unique(e_rows.astype(np.int64) * (int(window.max()) + 1) + window)
        cells_per_acc = np.bincount(acc_win // (int(window.max()) + 1), minlength=graph.n_accounts)
        n_cells = np.bincount(e_rows, minlength=graph.n_accounts)
        other = np.asarray((graph.incidence.multiply(graph.attr_degree >= 2)).sum(axis=1)).ravel() - n_cells
        for c in np.unique(lab[lab >= 0]):
            rows = np.nonzero(lab == c)[0]
            if rows.size < min_lockstep:
                continue
            repeated = float(np.mean((cells_per_acc[rows] >= 2) | (other[rows] >= 1)))
            s = (1.0 - np.exp(-rows.size / 8.0)) * (0.5 + 0.5 * repeated)
            gangs.append(gang_from_rows(graph, 0, "lockstep", rows, s))
    gangs = [g for g in gangs if g.score >= min_score]
    gangs.sort(key=lambda g: (-g.score, -g.size))
    gangs = [Gang(**{**g.__dict__, "gang_id": i}) for i, g in enumerate(gangs)]
    gscore, gsize = account_gang_features(gangs, graph.accounts)
    return CampaignGangs(gangs, graph.accounts, gscore, gsize, graph,
                         meta={"links": int(graph.incidence.nnz), "accounts": int(graph.n_accounts)})

