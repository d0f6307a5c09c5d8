"""Per-node graph features for the learned model: neighbour aggregates, label propagation from
training nodes only, community and dense-core statistics.

The one place these features are defined: the batch gang job, training and the benchmark all call
:func:`node_features`. Labels are only ever read where ``label_mask`` is true (the training nodes), and a
node's own label never reaches its own features, so the features of a held-out node carry no leakage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class NodeFeatures:
    """A feature matrix with one named column per feature."""

    values: np.ndarray  # (n_nodes, n_features) float32
    names: list[str]


def symmetric_adjacency(edges: np.ndarray, n_nodes: int, weights: np.ndarray | None = None) -> sp.csr_matrix:
    """Undirected CSR adjacency from an (m, 2) edge list (each edge once or twice; self-loops dropped)."""
    edges = np.asarray(edges, dtype=np.int64)
    keep = edges[:, 0] != edges[:, 1]
    e = edges[keep]
    w = np.ones(len(e), dtype=np.float32) if weights is None else np.asarray(weights, np.float32)[keep]
    a = sp.coo_matrix((w, (e[:, 0], e[:, 1])), shape=(n_nodes, n_nodes)).tocsr()
    a = a.maximum(a.T).tocsr()
    a.sum_duplicates()
    return a


def _row_reduce(adj: sp.csr_matrix, x: np.ndarray, op: np.ufunc, empty: float) -> np.ndarray:
    """Per-row reduction (max/min) of neighbour features; rows without neighbours get ``empty``."""
    out = np.full((adj.shape[0], x.shape[1]), empty, dtype=np.float32)
    nonempty = np.diff(adj.indptr) > 0
    if adj.nnz == 0:
        return out
    gathered = x[adj.indices]
    starts = adj.indptr[:-1][nonempty]
    out[nonempty] = op.reduceat(gathered, starts, axis=0)
    return out


def _mean_operator(adj: sp.csr_matrix) -> sp.csr_matrix:
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg, dtype=np.float64), where=deg > 0)
    return sp.diags(inv) @ adj


def node_features(
    adj: sp.csr_matrix,
    x: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    label_mask: np.ndarray | None = None,
    communities: np.ndarray | None = None,
    core: np.ndarray | None = None,
    prior_strength: float = 5.0,
    n_folds: int = 5,
    seed: int = 0,
) -> NodeFeatures:
    """Graph features of every node of ``adj`` (symmetric, unweighted or weighted CSR).

    - ``x``: node attributes; their 1-hop mean/max/min/std and 2-hop mean are added.
    - ``labels`` + ``label_mask``: positive/labelled counts among 1-hop neighbours and along 2-hop paths
      (self-paths removed), smoothed towards the training base rate with ``prior_strength``.
    - ``communities``: size of the node's community, its share of edges inside it, and the community's
      training-label rate without the node itself.
    - ``core``: a per-node dense-core or lockstep score (kept as is, plus its neighbour mean).
    """
    adj = sp.csr_matrix(adj, dtype=np.float32)
    adj.sort_indices()
    n = adj.shape[0]
    cols: list[np.ndarray] = []
    names: list[str] = []

    def add(values: np.ndarray, name: str | list[str]) -> None:
        values = np.asarray(values, dtype=np.float32)
        if values.ndim == 1:
            values = values[:, None]
        cols.append(values)
        names.extend([name] if isinstance(name, str) else name)

    binary = adj.copy()
    binary.data[:] = 1.0
    deg = np.asarray(binary.sum(axis=1)).ravel()
    mean_op = _mean_operator(binary)
    add(np.log1p(deg), "log_degree")
    add(np.log1p(np.asarray(adj.sum(axis=1)).ravel()), "log_weighted_degree")
    add(mean_op @ np.log1p(deg), "nbr_mean_log_degree")

    if x is not None:
        x = np.asarray(x, dtype=np.float32)
        d = x.shape[1]
        base = [f"x{j}" for j in range(d)]
        add(x, base)
        m1 = mean_op @ x
        add(m1, [f"nbr_mean_{b}" for b in base])
        add(_row_reduce(binary, x, np.maximum, np.nan), [f"nbr_max_{b}" for b in base])
        add(_row_reduce(binary, x, np.minimum, np.nan), [f"nbr_min_{b}" for b in base])
        sq = mean_op @ (x * x)
        add(np.sqrt(np.maximum(sq - m1 * m1, 0.0)), [f"nbr_std_{b}" for b in base])
        add(x - m1, [f"diff_nbr_{b}" for b in base])
        add(mean_op @ m1, [f"hop2_mean_{b}" for b in base])

    if labels is not None and label_mask is not None:
        mask = np.asarray(label_mask, dtype=bool)
        yl = np.where(mask, np.asarray(labels, dtype=np.float64), 0.0)
        ml = mask.astype(np.float64)
        base_rate = yl.sum() / max(ml.sum(), 1.0)
        pos1 = binary @ yl
        lab1 = binary @ ml
        # two-hop path counts; the paths i -> j -> i bring the node's own label back, remove them
        pos2 = binary @ pos1 - deg * yl
        lab2 = binary @ lab1 - deg * ml
        add(lab1, "nbr_labelled")
        add(pos1, "nbr_positive")
        add((pos1 + prior_strength * base_rate) / (lab1 + prior_strength), "nbr_label_rate")
        add((pos2 + prior_strength * base_rate) / (lab2 + prior_strength), "hop2_label_rate")
        wpos = adj @ yl
        wlab = adj @ ml
        add((wpos + prior_strength * base_rate) / (wlab + prior_strength), "nbr_label_rate_weighted")

    if communities is not None:
        comm = np.asarray(communities, dtype=np.int64)
        size = np.bincount(comm, minlength=comm.max() + 1)
        add(np.log1p(size[comm]), "community_log_size")
        coo = binary.tocoo()
        inside = np.bincount(coo.row, weights=(comm[coo.row] == comm[coo.col]).astype(float), minlength=n)
        add(np.divide(inside, deg, out=np.zeros(n), where=deg > 0), "community_inside_share")
        if labels is not None and label_mask is not None:
            # Leave-one-out rates leak the node's own label (its community's rate moves against it), so
            # labelled nodes get out-of-fold rates: their fold's labels are hidden from them.
            rate = np.empty(n)
            fold = np.random.default_rng(seed).integers(0, n_folds, size=n)
            fold[~mask] = -1
            for k in range(-1, n_folds):
                use = mask & (fold != k)
                cpos = np.bincount(comm, weights=yl * use, minlength=size.size)
                clab = np.bincount(comm, weights=use.astype(float), minlength=size.size)
                sel = fold == k
                rate[sel] = ((cpos + prior_strength * base_rate) / (clab + prior_strength))[comm[sel]]
            add(rate, "community_label_rate")

    if core is not None:
        core = np.asarray(core, dtype=np.float64)
        add(core, "core")
        add(mean_op @ core, "nbr_mean_core")

    return NodeFeatures(values=np.hstack(cols), names=names)
