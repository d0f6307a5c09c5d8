"""Ranking metrics for the gang detectors: AUROC and AUPRC (average precision), tie-aware, numpy only."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count one half)."""
    y = np.asarray(labels).astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision (step-wise area under precision-recall), ties grouped as one threshold."""
    y = np.asarray(labels).astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each tie group
    tp_at = tp[last]
    precision = tp_at / (last + 1)
    recall_gain = np.diff(np.r_[0, tp_at]) / n_pos
    return float(np.sum(precision * recall_gain))
