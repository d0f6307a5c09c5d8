"""Communities on the weighted account graph (Louvain from scikit-network) and how gang-like each is.

The account × account projection (see :func:`woolguard.gangs.graph.project`) is clustered with Louvain.
Each community is trimmed to its tied core and scored by:

- cohesion: the average, over members, of the rarity weight of the attributes they share with at least
  one other member, each scaled by its exclusivity (members holding it over all accounts holding it);
- support: the share of members tied by two or more shared attributes;
- redundancy: the share of tied member pairs sharing two or more attributes (the lockstep signature).

``score = cohesion / (cohesion + half) × support × sqrt(redundancy)``. A ring sharing devices, payment
accounts and phone blocks scores high; 500 strangers who only share a mall's Wi-Fi, or strangers chained
by one chance coincidence each, score low however many they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sknetwork.clustering import Louvain

from woolguard.gangs.graph import AttributeGraph, project


@dataclass(frozen=True)
class Communities:
    """Per-account community label (-1 for accounts linked to nobody) and per-community statistics."""

    labels: np.ndarray  # (n_accounts,)
    size: np.ndarray  # (n_communities,)
    cohesion: np.ndarray  # (n_communities,) mean shared-attribute weight per member
    score: np.ndarray  # (n_communities,) cohesion mapped to [0, 1), times support
    support: np.ndarray  # (n_communities,) share of members with >= min_ties shared attributes
    ties: np.ndarray  # (n_accounts,) attributes each account shares with others of its community
    redundancy: np.ndarray  # (n_communities,) share of tied member pairs sharing >= 2 attributes
    lockstep: np.ndarray  # (n_accounts,) shares >= 2 attributes with some member of its community


def louvain_labels(adjacency: sp.spmatrix, resolution: float = 1.0, seed: int = 0) -> np.ndarray:
    """Louvain labels of a symmetric weighted adjacency; isolated nodes get -1."""
    adjacency = sp.csr_matrix(adjacency)
    n = adjacency.shape[0]
    labels = np.full(n, -1, dtype=np.int64)
    linked = np.nonzero(np.diff(adjacency.indptr) > 0)[0]
    if linked.size == 0:
        return labels
    sub = adjacency[linked][:, linked]
    algo = Louvain(
        resolution=resolution,
        random_state=seed,
        tol_optimization=0.01,
        tol_aggregation=0.01,
        return_probs=False,
        return_aggregate=False,
    )
    labels[linked] = algo.fit_predict(sub)
    return labels


def community_cohesion(
    graph: AttributeGraph,
    labels: np.ndarray,
    half_score: float = 1.0,
    min_ties: int = 2,
    pair_counts: sp.spmatrix | None = None,
) -> Communities:
    """Size, cohesion, support and score of each community:
    ``score = cohesion / (cohesion + half_score) × support``."""
    n_comm = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
    member = labels >= 0
    rows = np.nonzero(member)[0]
    onehot = sp.csr_matrix(
        (np.ones(rows.size, dtype=np.float32), (labels[rows], rows)), shape=(n_comm, graph.n_accounts)
    )
    counts = sp.csr_matrix(onehot @ graph.incidence)  # members of each community per attribute
    counts.data[counts.data < 2] = 0  # an attribute held by one member ties it to nobody
    counts.eliminate_zeros()
    # rarity weight × exclusivity (share of the attribute's accounts inside this community): a popular
    # phone model held by 40 members and 60 outsiders ties the 40 together only weakly
    w = graph.attr_weight[counts.indices] * counts.data / np.maximum(graph.attr_degree[counts.indices], 1)
    row = np.repeat(np.arange(n_comm), np.diff(counts.indptr))
    shared = np.bincount(row, weights=counts.data * w, minlength=n_comm)
    size = np.bincount(labels[rows], minlength=n_comm)
    cohesion = shared / np.maximum(size, 1)
    # multi-tie support: share of members holding at least `min_ties` attributes shared in the community;
    # a chain of strangers each sharing one thing with the next is not a gang, a device farm is
    n_attr = graph.n_attributes
    shared_keys = row.astype(np.int64) * n_attr + counts.indices
    inc = graph.incidence.tocoo()
    lab = labels[inc.row]
    on = lab >= 0
    edge_keys = lab[on].astype(np.int64) * n_attr + inc.col[on]
    ties = np.bincount(inc.row[on], weights=np.isin(edge_keys, shared_keys), minlength=graph.n_accounts)
    tied = np.bincount(labels[rows], weights=ties[rows] >= min_ties, minlength=n_comm)
    support = tied / np.maximum(size, 1)
    # lockstep redundancy: share of tied member pairs that share two or more attributes. A ring reuses
    # the same device, number block and IP together; strangers chained by chance share one thing each.
    redundancy = np.ones(n_comm)
    lockstep = np.ones(graph.n_accounts, dtype=bool)
    if pair_counts is not None:
        pc = sp.triu(pair_counts, k=1).tocoo()
        lab_r, lab_c = labels[pc.row], labels[pc.col]
        same = (lab_r == lab_c) & (lab_r >= 0)
        multi_pair = same & (pc.data >= 2)
        tied_pairs = np.bincount(lab_r[same], minlength=n_comm)
        multi = np.bincount(lab_r[multi_pair], minlength=n_comm)
        redundancy = np.divide(multi, tied_pairs, out=np.zeros(n_comm), where=tied_pairs > 0)
        lockstep = np.zeros(graph.n_accounts, dtype=bool)
        lockstep[pc.row[multi_pair]] = True
        lockstep[pc.col[multi_pair]] = True
    score = cohesion / (cohesion + half_score) * support * np.sqrt(redundancy)
    return Communities(
        labels=labels,
        size=size,
        cohesion=cohesion,
        score=score,
        support=support,
        ties=ties,
        redundancy=redundancy,
        lockstep=lockstep,
    )


def detect_communities(
    graph: AttributeGraph,
    pair_budget: int = 14_000_000,
    resolution: float = 1.0,
    seed: int = 0,
    min_ties: int = 2,
    trim_rounds: int = 2,
) -> Communities:
    """Project, cluster with Louvain, trim every community to its tied core, and score it.

    Louvain puts every linked account somewhere, so a ring's community may also hold neighbours tied
    to it by a single attribute. Members with fewer than ``min_ties`` attributes shared inside their
    community, or sharing two or more attributes with no other member, are dropped (label -1) and the
    rest re-scored, ``trim_rounds`` times.
    """
    labels = louvain_labels(project(graph, pair_budget), resolution, seed)
    pair_counts = project(graph, pair_budget, counts=True)
    comm = community_cohesion(graph, labels, min_ties=min_ties, pair_counts=pair_counts)
    for _ in range(trim_rounds):
        labels = np.where((comm.ties >= min_ties) & comm.lockstep, comm.labels, -1)
        comm = community_cohesion(graph, labels, min_ties=min_ties, pair_counts=pair_counts)
    return comm
