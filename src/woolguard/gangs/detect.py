"""The batch gang job: one attribute graph in, a gang table and per-account scores out.

Runs the detectors side by side (communities on the rarity-weighted projection, FRAUDAR-style dense
blocks, optionally invitation farms), turns each hit into a :class:`Gang` with its evidence, and derives
the per-account hot-path features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from woolguard.gangs.communities import Communities, detect_communities
from woolguard.gangs.dense import DenseBlock, camouflage_weights, dense_blocks
from woolguard.gangs.graph import AttributeGraph
from woolguard.gangs.invites import InviteFarm
from woolguard.gangs.table import Gang, TimelineEntry, account_gang_features, gang_from_rows


@dataclass
class GangReport:
    gangs: list[Gang]
    gang_score: np.ndarray  # per account row of the graph
    gang_size: np.ndarray
    lockstep_score: np.ndarray  # per account: dense-core density over background (unsupervised)
    communities: Communities
    blocks: list[DenseBlock]

    def rows(self) -> list[dict]:
        return [g.as_row() for g in self.gangs]


def detect_gangs(
    graph: AttributeGraph,
    *,
    farms: list[InviteFarm] | None = None,
    min_size: int = 3,
    min_community_score: float = 0.5,
    n_blocks: int = 10,
    min_lift: float = 3.0,
    pair_budget: int = 14_000_000,
    seed: int = 0,
) -> GangReport:
    """Run every detector on ``graph`` and build the gang table (strongest gangs first)."""
    comm = detect_communities(graph, pair_budget=pair_budget, seed=seed)
    type_w = graph.type_weight[graph.attr_type] * (graph.attr_weight > 0)
    blocks, lockstep = dense_blocks(
        camouflage_weights(graph.incidence, type_weight=type_w),
        n_blocks=n_blocks,
        min_accounts=min_size,
        min_lift=min_lift,
    )
    gangs: list[Gang] = []
    keep = np.nonzero((comm.size >= min_size) & (comm.score >= min_community_score))[0]
    if keep.size:
        order = np.argsort(comm.labels, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(comm.labels[comm.labels >= 0], minlength=comm.size.size))]
        offset = int((comm.labels < 0).sum())
        for c in keep:
            rows = order[offset + bounds[c] : offset + bounds[c + 1]]
            gangs.append(gang_from_rows(graph, len(gangs), "community", rows, comm.score[c]))
    for b in blocks:
        gangs.append(gang_from_rows(graph, len(gangs), "dense_block", b.accounts, 1.0 - 1.0 / b.lift))
    for f in farms or []:
        members = [f.inviter, *np.asarray(f.children).tolist()]
        gangs.append(
            Gang(
                gang_id=len(gangs),
                detector="invite_farm",
                members=members,
                size=len(members),
                score=f.score,
                shared_attributes=[(f"inviter={f.inviter}", len(members) - 1)],
                first_ts=f.first_ts,
                last_ts=f.last_ts,
                money=0.0,
                timeline=[
                    TimelineEntry(f.first_ts, f.inviter, "first invite"),
                    TimelineEntry(f.last_ts, f.inviter, "last invite"),
                ],
            )
        )
    gangs.sort(key=lambda g: -g.score)
    gangs = [Gang(**{**g.__dict__, "gang_id": i}) for i, g in enumerate(gangs)]
    score, size = account_gang_features(gangs, graph.accounts)
    return GangReport(gangs, score, size, lockstep, comm, blocks)
