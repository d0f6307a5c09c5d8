"""The gang table: one row per gang with the evidence that ties its members, and the per-account
hot-path features ``gang_score`` and ``gang_size`` derived from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from woolguard.gangs.graph import AttributeGraph


@dataclass(frozen=True)
class TimelineEntry:
    ts: int
    account: object
    attribute: str


@dataclass(frozen=True)
class Gang:
    """A suspected gang: who, how sure, which detector, what ties them, when, and what they took."""

    gang_id: int
    detector: str  # "community" | "dense_block" | "invite_farm"
    members: list
    size: int
    score: float  # in [0, 1]
    shared_attributes: list[tuple[str, int]]  # (type=value[@bucket], members holding it), strongest first
    first_ts: int
    last_ts: int
    money: float
    timeline: list[TimelineEntry] = field(default_factory=list)

    def as_row(self) -> dict:
        return {
            "gang_id": self.gang_id,
            "detector": self.detector,
            "size": self.size,
            "score": round(self.score, 4),
            "members": [str(m) for m in self.members],
            "shared_attributes": [f"{a} ×{c}" for a, c in self.shared_attributes],
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "money": self.money,
        }


def gang_from_rows(
    graph: AttributeGraph,
    gang_id: int,
    detector: str,
    rows: np.ndarray,
    score: float,
    max_attributes: int = 10,
    max_timeline: int = 50,
) -> Gang:
    """Evidence for a set of account rows: the attributes two or more of them share, and their timeline."""
    rows = np.asarray(rows, dtype=np.int64)
    # the graph's edge arrays are sorted by (account, attribute), exactly like the incidence's CSR
    # entries, so a member's links are the slice indptr[r]:indptr[r + 1]
    ptr = graph.incidence.indptr
    lengths = ptr[rows + 1] - ptr[rows]
    e_all = np.repeat(ptr[rows] - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(lengths.sum())
    attrs = graph.edge_attr[e_all]
    uniq, counts = np.unique(attrs, return_counts=True)
    keep = counts >= 2
    shared, counts = uniq[keep], counts[keep]
    strength = counts * np.maximum(graph.attr_weight[shared], 1e-9)
    top_idx = np.argsort(-strength, kind="stable")[:max_attributes]
    top, top_counts = shared[top_idx], counts[top_idx]
    e = e_all[np.isin(attrs, top)]
    e = e[np.argsort(graph.edge_ts[e], kind="stable")]
    all_e_ts = graph.edge_ts[e_all]
    timeline = [
        TimelineEntry(
            int(graph.edge_ts[i]), graph.accounts[graph.edge_account[i]], graph.attribute_label(graph.edge_attr[i])
        )
        for i in e[:max_timeline]
    ]
    return Gang(
        gang_id=gang_id,
        detector=detector,
        members=list(graph.accounts[rows]),
        size=int(rows.size),
        score=float(score),
        shared_attributes=[(graph.attribute_label(j), int(c)) for j, c in zip(top, top_counts, strict=True)],
        first_ts=int(all_e_ts.min()) if all_e_ts.size else 0,
        last_ts=int(all_e_ts.max()) if all_e_ts.size else 0,
        money=float(graph.account_amount[rows].sum()),
        timeline=timeline,
    )


def account_gang_features(gangs: list[Gang], accounts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per account (aligned with ``accounts``): the highest score of a gang it belongs to, and that
    gang's size (0 and 0 for accounts in no gang). These are the hot path's ``gang_score, gang_size``."""
    index = {a: i for i, a in enumerate(accounts.tolist())}
    score = np.zeros(len(accounts))
    size = np.zeros(len(accounts), dtype=np.int64)
    for g in sorted(gangs, key=lambda g: g.score):
        rows = np.fromiter((index[m] for m in (np.asarray(g.members).tolist()) if m in index), dtype=np.int64)
        better = g.score >= score[rows]
        score[rows[better]] = g.score
        size[rows[better]] = g.size
    return score, size


def membership_matrix(gangs: list[Gang], accounts: np.ndarray) -> sp.csr_matrix:
    """Accounts × gangs incidence (for joins in the analyst console or the model's training set)."""
    index = {a: i for i, a in enumerate(accounts.tolist())}
    r, c = [], []
    for j, g in enumerate(gangs):
        for m in np.asarray(g.members).tolist():
            if m in index:
                r.append(index[m])
                c.append(j)
    return sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(accounts), len(gangs)))
