"""The engine's learned signal: a LightGBM model behind :class:`woolguard.engine.Scorer`.

One event costs one C call: the feature mapping is written into a preallocated float64 row
(:meth:`FeatureSpec.filler`, planned once per model) and LightGBM's single-row fast path
(``LGBM_BoosterPredictForMatSingleRowFast``, prepared once per model) returns the raw margin; ``booster.predict``
would spend ~30-70 µs per row in Python-side checks. The probability is LightGBM's own (sigmoid of the margin)
passed through the artifact's calibration (Platt scaling fitted on a period after the training one).

Contributions (LightGBM's ``pred_contrib=True``, SHAP values in log-odds) cost milliseconds for a row, so they are
computed only when someone reads them: the engine reads them only when the score is high enough to give the
``model.score`` reason. With the model's context features (the campaign's traffic: the moment, not the claimant)
the scorer also writes ``model_actor_score`` into the features: the same trees on the same vector with those
features held at a reference value (one more single-row call). :class:`ShadowScorer` scores a second model, writes
its score into the logged features as ``model_shadow_score`` and never lets it act.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np

from woolguard.model.features import FeatureSpec

_PREDICT_NORMAL, _PREDICT_RAW = 0, 1
_DTYPE_FLOAT64 = 1


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= -700 else 0.0


class Calibration:
    """Platt scaling on the raw margin: ``p = sigmoid(a * margin + b)``; identity is ``a=1, b=0``."""

    def __init__(self, a: float = 1.0, b: float = 0.0):
        self.a = a
        self.b = b

    def __call__(self, margin: float) -> float:
        return sigmoid(self.a * margin + self.b)

    def batch(self, margin: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * np.asarray(margin) + self.b)))

    def to_dict(self) -> dict[str, float]:
        return {"method": "platt", "a": self.a, "b": self.b}  # type: ignore[dict-item]

    @classmethod
    def fit(cls, margin: np.ndarray, y: np.ndarray) -> Calibration:
        from scipy.optimize import minimize

        m = np.asarray(margin, dtype=np.float64)
        t = np.asarray(y, dtype=np.float64)
        p = t.sum()
        n = t.size - p
        # Platt's targets keep the fit finite on separable data
        t = np.where(t > 0, (p + 1) / (p + 2), 1 / (n + 2))

        def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
            z = ab[0] * m + ab[1]
            q = 1.0 / (1.0 + np.exp(-z))
            ll = np.logaddexp(0, z) - t * z
            g = q - t
            return float(ll.sum()), np.array([float((g * m).sum()), float(g.sum())])

        res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        return cls(float(res.x[0]), float(res.x[1]))


class Contributions(Sequence[tuple[str, float]]):
    """The features that pushed one score most towards fraud, largest first; computed on first read."""

    __slots__ = ("_items", "_row", "_scorer")

    def __init__(self, scorer: LightGBMScorer, row: np.ndarray):
        self._scorer = scorer
        self._row = row
        self._items: list[tuple[str, float]] | None = None

    def _get(self) -> list[tuple[str, float]]:
        if self._items is None:
            self._items = self._scorer.contributions(self._row)
        return self._items

    def __bool__(self) -> bool:  # there are always contributions to show; do not compute them to say so
        return True

    def __len__(self) -> int:
        return len(self._get())

    def __getitem__(self, i: Any) -> Any:
        return self._get()[i]

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return iter(self._get())

    def __repr__(self) -> str:
        return f"Contributions({self._get()!r})"


class LightGBMScorer:
    """A trained model as the engine's scorer. Not thread-safe (one per engine, like the engine)."""

    def __init__(self, model_text: str, spec: FeatureSpec, calibration: Calibration | None = None,
                 levels: Sequence[float] = (), ref: str = "", context: Mapping[str, float] | None = None):
        self.booster = lgb.Booster(model_str=model_text)
        self.spec = spec
        self.feature_names = list(spec.names)
        self.calibration = calibration or Calibration()
        #: calibrated probability at which levels 1, 2, 3, 4 start (empty: no level mapping)
        self.levels = list(levels)
        self.ref = ref
        n = len(spec.names)
        if self.booster.num_feature() != n:
            raise ValueError(f"model has {self.booster.num_feature()} features, spec names {n}")
        #: the model's context features (the moment, not the claimant) and the reference value each is held at
        #: for the actor score; empty: the actor score is the score
        self.context = {k: float(v) for k, v in (context or {}).items() if k in spec.names}
        self._ctx_pos = np.array([spec.names.index(k) for k in self.context], dtype=np.int64)
        self._ctx_val = np.array(list(self.context.values()), dtype=np.float64)
        #: the actor score is computed from this probability up (the model's top level less one score point, which
        #: covers the rounding of ``model_score``); below, it is the score: the policy reads it only to confirm a
        #: top-level score, and a second pass of the trees on every event would double the model's cost
        self.actor_from = self.levels[3] - 0.01 if len(self.levels) >= 4 else 0.0
        self._row = np.zeros(n, dtype=np.float64)
        self._fill = spec.filler()
        self._out = np.zeros(1, dtype=np.float64)
        self._n = ctypes.c_int64(0)
        self._fast = self._fast_config(_PREDICT_RAW, n)
        self._call = lgb.basic._LIB.LGBM_BoosterPredictForMatSingleRowFast
        self._row_p = self._row.ctypes.data_as(ctypes.c_void_p)
        self._out_p = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._n_p = ctypes.byref(self._n)

    def _fast_config(self, predict_type: int, n: int) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        lgb.basic._safe_call(lgb.basic._LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
            self.booster._handle, ctypes.c_int(predict_type), ctypes.c_int(0), ctypes.c_int(-1),
            ctypes.c_int(_DTYPE_FLOAT64), ctypes.c_int32(n), ctypes.c_char_p(b"num_threads=1"),
            ctypes.byref(handle)))
        return handle

    def __del__(self) -> None:
        fast = getattr(self, "_fast", None)
        if fast is not None and fast.value:
            try:
                lgb.basic._LIB.LGBM_FastConfigFree(fast)
            except Exception:
                pass

    # -- one event ---------------------------------------------------------------------------------

    def margin(self, features: Mapping[str, Any]) -> float:
        """LightGBM's raw score for one feature mapping."""
        self._fill(features, self._row)
        if self._call(self._fast, self._row_p, self._n_p, self._out_p) != 0:
            raise lgb.basic.LightGBMError(lgb.basic._LIB.LGBM_GetLastError().decode("utf-8"))
        return float(self._out[0])

    def raw_probability(self, features: Mapping[str, Any]) -> float:
        """LightGBM's own (uncalibrated) probability: what ``booster.predict`` gives."""
        return sigmoid(self.margin(features))

    def score(self, features: Mapping[str, Any]) -> tuple[float, Contributions]:  # type: ignore[override]
        """The calibrated probability and its (lazy) contributions; when ``features`` is a dict, the actor score
        (:meth:`actor_probability`, × 100) is written into it as ``model_actor_score`` for the policy's rules
        (computed from :attr:`actor_from` up, the score below)."""
        m = self.margin(features)
        p = self.calibration(m)
        contributions = Contributions(self, self._row.copy())
        if isinstance(features, dict):
            features["model_actor_score"] = round(self._actor_from_row(p) * 100)
        return p, contributions

    def actor_probability(self, features: Mapping[str, Any]) -> float:
        """The calibrated probability with the context features held at their reference values: what the model
        says of the claimant at the campaign's usual traffic (the genuine training rows' median). Computed when the
        probability is at least :attr:`actor_from` (the model's top level, less one score point); below, it is the
        probability itself. A crowd flooding the campaign raises ``model_score`` for everyone in it, recruits and
        shoppers alike; it cannot raise this."""
        return self._actor_from_row(self.calibration(self.margin(features)))

    def _actor_from_row(self, p: float) -> float:
        # self._row holds the event's vector, p its probability
        if not self._ctx_pos.size or p < self.actor_from:
            return p
        self._row[self._ctx_pos] = self._ctx_val
        if self._call(self._fast, self._row_p, self._n_p, self._out_p) != 0:
            raise lgb.basic.LightGBMError(lgb.basic._LIB.LGBM_GetLastError().decode("utf-8"))
        return self.calibration(float(self._out[0]))

    def level(self, probability: float) -> int:
        level = 0
        for i, cut in enumerate(self.levels, start=1):
            if probability >= cut:
                level = i
        return level

    def contributions(self, row: np.ndarray, top: int = 5) -> list[tuple[str, float]]:
        """LightGBM's own contributions (``pred_contrib=True``) of one vector, the largest towards fraud first."""
        c = self.booster.predict(row.reshape(1, -1), pred_contrib=True, num_threads=1)[0][:-1]
        order = np.argsort(-c)[:top]
        return [(self.feature_names[i], float(c[i])) for i in order if c[i] > 0]

    # -- batches -------------------------------------------------------------------------------------

    def margins(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        return self.booster.predict(x, raw_score=True, num_threads=threads)

    def probabilities(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        return self.calibration.batch(self.margins(x, threads))

    def actor_probabilities(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        """:meth:`actor_probability` of every row of ``x``."""
        p = self.probabilities(x, threads)
        if not self._ctx_pos.size:
            return p
        xa = np.array(x, dtype=np.float64, copy=True)
        xa[:, self._ctx_pos] = self._ctx_val
        return np.where(p < self.actor_from, p, self.probabilities(xa, threads))


class ShadowScorer:
    """The active model acts; the shadow one is scored on the same features and only logged.

    The shadow's score (0-100) is written into the features mapping as ``model_shadow_score``: the engine hands its
    features dict to the scorer and logs that same dict, so the decision log carries both scores side by side.
    With no active model the engine sees probability 0 and no contributions (no reason, nothing acts).
    """

    def __init__(self, active: LightGBMScorer | None, shadow: LightGBMScorer):
        self.active = active
        self.shadow = shadow
        self.feature_names = active.feature_names if active is not None else shadow.feature_names

    def score(self, features: Mapping[str, Any]) -> tuple[float, Sequence[tuple[str, float]]]:
        p, _ = self.shadow.score(features)
        if isinstance(features, dict):
            features["model_shadow_score"] = round(p * 100)
            features["model_actor_score"] = -1  # the shadow's actor score never acts either
        if self.active is None:
            return 0.0, []
        return self.active.score(features)
