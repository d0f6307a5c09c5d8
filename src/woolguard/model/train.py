"""Training: LightGBM on replayed feature rows, split by time (by default), evaluated on a later period.

Splits (over labelled rows only; unlabelled rows still fed the windows when the features were computed):

``time``    rows in event-time order: the first ``1 - test_frac`` train, the rest test; the last ``valid_frac`` of
            the training period is the validation slice (early stopping, calibration, level thresholds).
``random``  a random stratified split (``test_frac`` test, ``valid_frac`` of the rest validation), only to compare
            with results published on that recipe: it lets the model see the future and flatters drifting data.

Nothing is ever chosen on the test rows: they are scored once, after everything else is fixed.
Class imbalance: positives are weighted ``scale_pos_weight = min(negatives / positives, 20)``; the bias this puts
on the raw probability is removed by the Platt calibration fitted on the validation slice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from woolguard.model import metrics
from woolguard.model.features import FeatureSpec
from woolguard.model.feedback import is_fraud_evidence
from woolguard.model.scorer import Calibration

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": "auc",  # early stopping on the ranking the model is judged by, not on log loss (base rates drift)
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_cat_to_onehot": 8,
    "cat_smooth": 10.0,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
    "force_col_wise": True,
}
#: Features whose rise can only raise the risk (LightGBM monotone constraints): more evidence of a gang never makes
#: an event look safer. Without it the trees, which see few detected members in the first days, let an account's
#: age or tier outweigh its gang membership. Features absent from a spec are ignored.
MONOTONE_INCREASING = ("gang_score", "camp_gang_accounts_10m", "acct_gang_links_7d")


def monotone_increasing(name: str) -> bool:
    """Whether the model may only rise with feature ``name``: the gang features above, and the label feedback's
    fraud evidence (an entity's known fraud count and fraud rates, :func:`woolguard.model.feedback.is_fraud_evidence`):
    more confirmed fraud on a key never makes its next event look safer. Without the constraint the trees also
    learned the training period's non-monotone dips, which a drifting later period does not share."""
    return name in MONOTONE_INCREASING or is_fraud_evidence(name)
MAX_ROUNDS = 800
EARLY_STOP = 50
#: A validation AUROC gain smaller than this is no improvement for early stopping (noise on a validation slice of
#: thousands of rows). Without it a model kept adding trees for gains of 1e-5 (sim seed 7, scale 0.3: 459 trees,
#: and the engine's per-event cost grows with the trees); with it, 246 trees at the same test AUROC.
EARLY_STOP_MIN_DELTA = 1e-4
#: Validation false-positive rates at which the four risk levels start (level 1 .. level 4).
LEVEL_FPRS = (0.05, 0.02, 0.005, 0.001)


@dataclass
class Split:
    mode: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    seed: int = 0
    test_frac: float = 0.3

    def describe(self, ts: np.ndarray) -> dict[str, Any]:
        def window(idx: np.ndarray) -> dict[str, int]:
            return {"rows": int(idx.size), "first_ts": int(ts[idx].min()) if idx.size else 0,
                    "last_ts": int(ts[idx].max()) if idx.size else 0}

        return {"mode": self.mode, "seed": self.seed, "test_frac": self.test_frac, "train": window(self.train),
                "valid": window(self.valid), "test": window(self.test)}


def time_split(ts: np.ndarray, y: np.ndarray, test_frac: float = 0.3, valid_frac: float = 0.2,
               test_from_ms: int | None = None) -> Split:
    """Labelled rows by time: train, then validation (end of the training period), then test.

    ``test_from_ms`` puts the boundary at a time instead of a share of rows.
    """
    lab = np.nonzero(y >= 0)[0]
    lab = lab[np.argsort(ts[lab], kind="mergesort")]
    if test_from_ms is not None:
        cut = int(np.searchsorted(ts[lab], test_from_ms))
    else:
        cut = round(lab.size * (1 - test_frac))
    fit, test = lab[:cut], lab[cut:]
    vcut = round(fit.size * (1 - valid_frac))
    return Split("time", fit[:vcut], fit[vcut:], test, 0, round(test.size / max(1, lab.size), 4))


def random_split(y: np.ndarray, test_frac: float = 0.4, valid_frac: float = 0.2, seed: int = 42) -> Split:
    """A random split stratified by label (for comparison with published results only)."""
    rng = np.random.default_rng(seed)
    train, valid, test = [], [], []
    for cls in (0, 1):
        idx = np.nonzero(y == cls)[0]
        idx = idx[rng.permutation(idx.size)]
        nt = round(idx.size * test_frac)
        test.append(idx[:nt])
        rest = idx[nt:]
        nv = round(rest.size * valid_frac)
        valid.append(rest[:nv])
        train.append(rest[nv:])
    return Split("random", *(np.sort(np.concatenate(p)) for p in (train, valid, test)), seed=seed,
                 test_frac=test_frac)


@dataclass
class TrainResult:
    model_text: str
    spec: FeatureSpec
    calibration: Calibration
    split: dict[str, Any]
    metrics: dict[str, Any]
    levels: list[float]
    importance: list[dict[str, Any]]
    drift: dict[str, Any]
    reference: dict[str, Any]
    curves: dict[str, Any]
    params: dict[str, Any]
    rounds: int
    seconds: float
    test_scores: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    #: context feature -> the value the actor score holds it at (the genuine training rows' median); see
    #: :meth:`woolguard.model.scorer.LightGBMScorer.actor_probability`
    context: dict[str, float] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {"features": self.spec.to_dict(), "calibration": self.calibration.to_dict(), "split": self.split,
                "metrics": self.metrics, "levels": self.levels, "importance": self.importance, "drift": self.drift,
                "reference": self.reference, "params": self.params, "rounds": self.rounds,
                "train_seconds": round(self.seconds, 2), "context_reference": self.context}


def train(x: np.ndarray, y: np.ndarray, ts: np.ndarray, spec: FeatureSpec, split: Split, *,
          params: dict[str, Any] | None = None, threads: int = 2, max_rounds: int = MAX_ROUNDS,
          screen_psi: float | None = None, context: Sequence[str] = ()) -> TrainResult:
    """Fit on ``split.train`` (early stopping on ``split.valid``), calibrate on valid, measure on test.

    ``context``: features that describe the moment rather than the claimant
    (:func:`woolguard.model.features.context_features`); the result keeps each one's median over the genuine
    training rows (the moment a genuine shopper typically claims at), the value the scorer's actor score holds it at.

    ``screen_psi``: leave out every feature whose PSI between the training rows and the validation slice exceeds
    it (features that drift within the training data; decided without the test rows). The dropped ones are listed
    in the result's ``params["screened_out"]``.
    """
    t0 = time.perf_counter()
    screened: list[str] = []
    if screen_psi is not None:
        ref = reference_of(x[split.train], np.zeros(split.train.size), spec)
        d = drift_report(ref, x[split.valid], np.zeros(split.valid.size), spec)
        screened = [n for n in spec.names if d["features"].get(n, 0.0) > screen_psi]
        if screened:
            keep = [j for j, n in enumerate(spec.names) if n not in screened]
            names = [spec.names[j] for j in keep]
            spec = FeatureSpec(names, {k: v for k, v in spec.categories.items() if k in names})
            x = x[:, keep]
    p = dict(DEFAULT_PARAMS)
    p.update(params or {})
    p["num_threads"] = threads
    ytr = y[split.train]
    pos = max(1, int(ytr.sum()))
    p.setdefault("scale_pos_weight", min(20.0, (ytr.size - pos) / pos))
    if "monotone_constraints" not in p and any(monotone_increasing(n) for n in spec.names):
        p["monotone_constraints"] = [1 if monotone_increasing(n) else 0 for n in spec.names]
    cats = [spec.names.index(n) for n in spec.categorical]
    dtrain = lgb.Dataset(x[split.train], ytr, feature_name=spec.names, categorical_feature=cats,
                         free_raw_data=True)
    dvalid = lgb.Dataset(x[split.valid], y[split.valid], reference=dtrain)
    booster = lgb.train(p, dtrain, num_boost_round=max_rounds, valid_sets=[dvalid],
                        callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False, min_delta=EARLY_STOP_MIN_DELTA)])
    rounds = booster.best_iteration or booster.current_iteration()
    model_text = booster.model_to_string(num_iteration=rounds)
    booster = lgb.Booster(model_str=model_text)
    mv = booster.predict(x[split.valid], raw_score=True, num_threads=threads)
    calib = Calibration.fit(mv, y[split.valid])
    pv = calib.batch(mv)
    levels = [metrics.threshold_at_fpr(y[split.valid], pv, f) for f in LEVEL_FPRS]
    levels = [float(min(1.0, v)) for v in np.maximum.accumulate(levels)]
    mt = booster.predict(x[split.test], raw_score=True, num_threads=threads)
    pt = calib.batch(mt)
    res_metrics = {"valid": metrics.summary(y[split.valid], pv), "test": metrics.summary(y[split.test], pt)}
    gain = booster.feature_importance("gain")
    splits_ = booster.feature_importance("split")
    total = float(gain.sum()) or 1.0
    importance = sorted(({"feature": n, "gain_share": round(float(g) / total, 5), "splits": int(s)}
                         for n, g, s in zip(spec.names, gain, splits_, strict=True)),
                        key=lambda d: -d["gain_share"])
    ptr = calib.batch(booster.predict(x[split.train], raw_score=True, num_threads=threads))
    reference = reference_of(x[split.train], ptr, spec)
    drift = drift_report(reference, x[split.test], pt, spec)
    used = {**p, "screen_psi": screen_psi, "screened_out": screened}
    genuine = split.train[y[split.train] == 0]
    ctx = {n: float(np.nanmedian(x[genuine, spec.names.index(n)])) for n in context if n in spec.names}
    return TrainResult(model_text, spec, calib, split.describe(ts), res_metrics, levels, importance, drift,
                       reference, metrics.curves(y[split.test], pt), used, rounds, time.perf_counter() - t0, pt,
                       ctx)


def reference_of(x: np.ndarray, scores: np.ndarray, spec: FeatureSpec) -> dict[str, Any]:
    """Bin edges and shares of each feature and of the score over the training rows (for PSI later)."""
    ref: dict[str, Any] = {}
    for j, name in enumerate(spec.names):
        edges = metrics.reference_bins(x[:, j])
        ref[name] = {"edges": edges, "shares": metrics.bin_shares(x[:, j], edges)}
    edges = metrics.reference_bins(scores)
    ref["__score__"] = {"edges": edges, "shares": metrics.bin_shares(scores, edges)}
    return ref


def drift_report(reference: dict[str, Any], x: np.ndarray, scores: np.ndarray, spec: FeatureSpec,
                 alert: float = metrics.PSI_ALERT) -> dict[str, Any]:
    """PSI of each feature and of the score between the reference (training) rows and ``x``."""
    out: dict[str, float] = {}
    for j, name in enumerate(spec.names):
        r = reference.get(name)
        if r is not None:
            out[name] = round(metrics.psi(r["shares"], metrics.bin_shares(x[:, j], r["edges"])), 5)
    r = reference["__score__"]
    score_psi = round(metrics.psi(r["shares"], metrics.bin_shares(scores, r["edges"])), 5)
    return {"alert_threshold": alert, "score_psi": score_psi,
            "features": dict(sorted(out.items(), key=lambda kv: -kv[1])),
            "alerts": [n for n, v in out.items() if v > alert] + (["score"] if score_psi > alert else []),
            "rows": int(x.shape[0])}
