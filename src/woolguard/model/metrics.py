"""Ranking metrics and drift, in numpy: AUROC, AUPRC (average precision), recall at fixed false-positive
rates, ROC / PR curves (thinned for plotting) and population stability (PSI)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: False-positive rates at which recall is reported.
FPR_POINTS = (0.001, 0.005, 0.01, 0.05)
#: PSI above this is an alert (the usual reading: < 0.1 stable, 0.1-0.25 moving, > 0.25 shifted).
PSI_ALERT = 0.25


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest first."""
    order = np.argsort(-s, kind="mergesort")
    s = s[order]
    y = y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], y.size - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    return tps.astype(np.float64), fps.astype(np.float64), s[distinct]


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(s, dtype=np.float64)
    p = int(y.sum())
    n = y.size - p
    if p == 0 or n == 0:
        return float("nan")
    tps, fps, _ = _curve(y, s)
    tpr = np.r_[0.0, tps / p]
    fpr = np.r_[0.0, fps / n]
    return float(np.trapezoid(tpr, fpr))


def auprc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision (the step-wise area under the precision-recall curve)."""
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(s, dtype=np.float64)
    p = int(y.sum())
    if p == 0:
        return float("nan")
    tps, fps, _ = _curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / p
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def recall_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float) -> float:
    """The largest recall with a false-positive rate at most ``fpr``."""
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(s, dtype=np.float64)
    p = int(y.sum())
    n = y.size - p
    if p == 0 or n == 0:
        return float("nan")
    tps, fps, _ = _curve(y, s)
    ok = fps / n <= fpr
    return float(tps[ok].max() / p) if ok.any() else 0.0


def threshold_at_fpr(y: np.ndarray, s: np.ndarray, fpr: float) -> float:
    """The lowest score threshold (``score >= t`` flags) whose false-positive rate is at most ``fpr``."""
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(s, dtype=np.float64)
    n = y.size - int(y.sum())
    _tps, fps, thr = _curve(y, s)
    ok = np.nonzero(fps / max(n, 1) <= fpr)[0]
    return float(thr[ok[-1]]) if ok.size else float(np.inf)


def curves(y: np.ndarray, s: np.ndarray, points: int = 200) -> dict[str, list[list[float]]]:
    """ROC ([fpr, tpr]) and PR ([recall, precision]) curves, thinned to about ``points`` points each."""
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(s, dtype=np.float64)
    p = int(y.sum())
    n = y.size - p
    if p == 0 or n == 0:
        return {"roc": [], "pr": []}
    tps, fps, _ = _curve(y, s)
    keep = np.unique(np.linspace(0, tps.size - 1, min(points, tps.size)).astype(int))
    tpr, fpr = tps[keep] / p, fps[keep] / n
    prec = tps[keep] / (tps[keep] + fps[keep])
    return {"roc": [[0.0, 0.0]] + [[round(float(a), 5), round(float(b), 5)] for a, b in zip(fpr, tpr, strict=True)],
            "pr": [[round(float(a), 5), round(float(b), 5)] for a, b in zip(tpr, prec, strict=True)]}


def summary(y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    y = np.asarray(y, dtype=np.int64)
    out: dict[str, Any] = {"rows": int(y.size), "positives": int(y.sum()),
                           "auroc": round(auroc(y, s), 5), "auprc": round(auprc(y, s), 5)}
    out["recall_at_fpr"] = {str(f): round(recall_at_fpr(y, s, f), 5) for f in FPR_POINTS}
    return out


# -- drift -------------------------------------------------------------------------------------------


def reference_bins(x: np.ndarray, bins: int = 10) -> list[float]:
    """Inner bin edges: deciles of the reference sample (distinct values only; NaN is a bin of its own)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return []
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    return [float(e) for e in edges]


def bin_shares(x: np.ndarray, edges: list[float]) -> list[float]:
    """Share of ``x`` in each bin ``(-inf, e0], (e0, e1], ..., (e_last, inf)`` plus a last bin for NaN."""
    x = np.asarray(x, dtype=np.float64)
    nan = np.isnan(x)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), x[~nan], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)
    counts = np.r_[counts, float(nan.sum())]
    return [float(c) for c in counts / max(1, x.size)]


def psi(expected: list[float], actual: list[float], eps: float = 1e-4) -> float:
    """Population stability index between two bin-share vectors."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    return float(np.sum((a - e) * np.log(a / e)))
