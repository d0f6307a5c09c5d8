"""The account × attribute graph built from the decision log, with rarity weights.

Accounts are linked through what they share: a device id, a device-trait fingerprint, an IP or IP /24
inside one time bucket, a phone hash or number block, an address, a payment account, a code batch.
Each attribute becomes one column of a sparse ``accounts × attributes`` matrix. Attributes that many
genuine users share (a mall's public Wi-Fi, a carrier gateway IP, a popular phone model) are weighted
down by how common they are (an IDF-like ``log(N / degree)``) and dropped above a degree cap, so they do
not glue strangers together. Each attribute type also has a base weight: a shared device id says much
more than a shared IP /24 in the same hour.

The decision-log adapter only has to produce columns: ``account, attr_type, attr_value, ts[, amount]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

#: Base weight per attribute type: how much sharing one such attribute says about two accounts.
DEFAULT_TYPE_WEIGHTS: dict[str, float] = {
    "device_id": 3.0,
    "payment_account": 3.0,
    "phone_hash": 3.0,
    "device_fp": 2.0,
    "address": 2.0,
    "ip": 1.0,
    "code_batch": 1.0,
    "phone_block": 0.7,
    "ip24": 0.5,
}

#: Attribute types only meaningful within a time bucket (seconds): an IP shared a month apart is noise.
DEFAULT_TIME_BUCKETS: dict[str, int] = {"ip": 3600, "ip24": 3600}


@dataclass
class AttributeGraph:
    """Accounts × attributes, weighted; every array is indexed by account row or attribute column.

    ``edge_*`` keep the raw (deduplicated per account, attribute) links for evidence and timelines.
    """

    incidence: sp.csr_matrix  # (n_accounts, n_attributes) binary, float32
    attr_weight: np.ndarray  # (n_attributes,) rarity × type weight; 0 for dropped attributes
    attr_degree: np.ndarray  # (n_attributes,) distinct accounts per attribute
    attr_type: np.ndarray  # (n_attributes,) index into ``type_names``
    attr_value: np.ndarray  # (n_attributes,) the original value
    attr_bucket: np.ndarray  # (n_attributes,) time bucket (-1 when the type is not time-bucketed)
    type_names: list[str]
    type_weight: np.ndarray  # (n_types,)
    accounts: np.ndarray  # (n_accounts,) original account keys
    edge_account: np.ndarray
    edge_attr: np.ndarray
    edge_ts: np.ndarray  # first ts of the link (0 when no timestamps were given)
    account_amount: np.ndarray  # (n_accounts,) money taken (0 when unknown)
    degree_cap: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def n_accounts(self) -> int:
        return self.incidence.shape[0]

    @property
    def n_attributes(self) -> int:
        return self.incidence.shape[1]

    def weighted(self) -> sp.csr_matrix:
        """The incidence with each column scaled by its rarity weight (dropped attributes are zero)."""
        out = self.incidence @ sp.diags(self.attr_weight.astype(np.float32))
        out = sp.csr_matrix(out)
        out.eliminate_zeros()
        return out

    def attribute_label(self, j: int) -> str:
        t = self.type_names[self.attr_type[j]]
        b = int(self.attr_bucket[j])
        return f"{t}={self.attr_value[j]}" + (f"@{b}" if b >= 0 else "")


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and each value's index among them (O(n) for compact integer ranges)."""
    values = np.asarray(values)
    if values.dtype.kind in "iu" and values.size:
        lo, hi = int(values.min()), int(values.max())
        if hi - lo <= 4 * values.size + 1024:
            present = np.zeros(hi - lo + 1, dtype=bool)
            present[values - lo] = True
            code = np.cumsum(present, dtype=np.int64) - 1
            return np.nonzero(present)[0] + lo, code[values - lo]
    uniq, inv = np.unique(values, return_inverse=True)
    return uniq, inv.astype(np.int64).ravel()


def build_graph(
    account: np.ndarray,
    attr_type: np.ndarray,
    attr_value: np.ndarray,
    ts: np.ndarray | None = None,
    amount: np.ndarray | None = None,
    *,
    type_weights: Mapping[str, float] | None = None,
    time_buckets: Mapping[str, int] | None = None,
    degree_cap: int = 1000,
    min_degree: int = 2,
) -> AttributeGraph:
    """Build the weighted account × attribute graph from parallel columns of links.

    - ``account``, ``attr_value``: any sortable keys (ints are fastest); ``attr_type``: type names (or ints).
    - ``ts``: seconds; types in ``time_buckets`` are keyed by ``(value, ts // bucket)``.
    - ``amount``: money taken with each link's event, summed per account (prize money for the gang table).
    - weight of attribute ``a`` = ``type_weight × log(N / degree(a)) / log(N)``; attributes with fewer than
      ``min_degree`` accounts (they link nobody) or more than ``degree_cap`` get weight 0.
    """
    type_weights = dict(DEFAULT_TYPE_WEIGHTS if type_weights is None else type_weights)
    time_buckets = dict(DEFAULT_TIME_BUCKETS if time_buckets is None else time_buckets)
    accounts, acc = _factorize(account)
    type_names_arr, typ = _factorize(attr_type)
    type_names = [str(t) for t in type_names_arr]
    values, val = _factorize(attr_value)
    n_types = len(type_names)
    ts_arr = np.zeros(len(acc), dtype=np.int64) if ts is None else np.asarray(ts).astype(np.int64)

    bucket_len = np.array([time_buckets.get(t, 0) for t in type_names], dtype=np.int64)
    per_link_len = bucket_len[typ]
    bucket = np.where(per_link_len > 0, ts_arr // np.maximum(per_link_len, 1), -1)
    bucket_keys, bucket_code = _factorize(bucket)
    key = (typ * len(values) + val) * len(bucket_keys) + bucket_code
    attr_keys, attr = _factorize(key)
    n_attr = len(attr_keys)
    a_bucket_code = attr_keys % len(bucket_keys)
    a_tv = attr_keys // len(bucket_keys)
    a_type = (a_tv // len(values)).astype(np.int64)
    a_value = values[a_tv % len(values)]
    a_bucket = bucket_keys[a_bucket_code]

    # one link per (account, attribute): keep the earliest ts
    pair = acc * n_attr + attr
    order = np.argsort(pair)
    pair_sorted = pair[order]
    start = np.nonzero(np.r_[True, pair_sorted[1:] != pair_sorted[:-1]])[0]
    sel = order[start]
    e_acc, e_attr = acc[sel], attr[sel]
    e_ts = np.minimum.reduceat(ts_arr[order], start) if start.size else ts_arr[:0]
    n_acc = len(accounts)
    inc = sp.csr_matrix((np.ones(len(sel), dtype=np.float32), (e_acc, e_attr)), shape=(n_acc, n_attr))
    deg = np.bincount(e_attr, minlength=n_attr)
    tw = np.array([type_weights.get(t, 1.0) for t in type_names], dtype=np.float64)
    rarity = np.log(max(n_acc, 2) / np.maximum(deg, 1)) / np.log(max(n_acc, 2))
    weight = tw[a_type] * np.clip(rarity, 0.0, None)
    weight[(deg < min_degree) | (deg > degree_cap)] = 0.0
    amt = np.zeros(n_acc) if amount is None else np.bincount(acc, weights=np.asarray(amount, float), minlength=n_acc)
    return AttributeGraph(
        incidence=inc,
        attr_weight=weight,
        attr_degree=deg,
        attr_type=a_type,
        attr_value=a_value,
        attr_bucket=a_bucket,
        type_names=type_names,
        type_weight=tw[:n_types],
        accounts=accounts,
        edge_account=e_acc,
        edge_attr=e_attr,
        edge_ts=e_ts,
        account_amount=amt,
        degree_cap=degree_cap,
    )


def graph_from_frame(frame, **kwargs) -> AttributeGraph:
    """Build from a polars (or pandas-like) frame with columns account, attr_type, attr_value[, ts, amount]."""
    cols = set(frame.columns)

    def col(name: str) -> np.ndarray | None:
        return frame[name].to_numpy() if name in cols else None

    return build_graph(col("account"), col("attr_type"), col("attr_value"), col("ts"), col("amount"), **kwargs)


def project(graph: AttributeGraph, pair_budget: int = 30_000_000, counts: bool = False) -> sp.csr_matrix:
    """Account × account weights ``W = B · diag(w / (deg - 1)) · Bᵀ`` (zero diagonal).

    Each attribute spreads its weight over the other accounts sharing it, so an attribute shared by
    many contributes little to any one pair and pulls each holder with a total of at most ``w``.
    Materialising the projection costs ``Σ deg²`` pairs; the most popular attributes (the weakest
    glue) are dropped until that fits ``pair_budget``. With ``counts=True`` each entry is instead the
    number of (kept) attributes the pair shares.
    """
    w = graph.attr_weight.copy()
    deg = graph.attr_degree.astype(np.float64)
    active = w > 0
    cost = np.where(active, deg * deg, 0.0)
    if cost.sum() > pair_budget:
        order = np.argsort(-cost, kind="stable")
        cum = np.cumsum(cost[order][::-1])[::-1]  # cost of attributes from this rank on
        over = cum > pair_budget
        w[order[over]] = 0.0
    scale = np.divide(w, np.maximum(deg - 1, 1), where=w > 0, out=np.zeros_like(w))
    if counts:
        scale = (scale > 0).astype(np.float64)
    cols = np.nonzero(scale > 0)[0]
    b = graph.incidence[:, cols].tocsc()
    bw = b @ sp.diags(scale[cols].astype(np.float32))
    proj = sp.csr_matrix(bw @ b.T.tocsr())
    proj.setdiag(0)
    proj.eliminate_zeros()
    return proj
