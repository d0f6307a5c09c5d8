"""Feature rows for training, scoring and backtesting, computed by the online engine's own code.

Training never recomputes a feature: :func:`replay_events` runs the events in time order through an
:class:`~woolguard.engine.Engine` (the same windows, static features and gang sweep as online, via
:func:`woolguard.report.decide_stream`) and keeps each decision's ``features``. :class:`FeatureSpec` turns such a
feature mapping into the model's numeric vector, the same way for a batch (training, backtest) and for one
event (the scorer's hot path).

Encoding: ints and bools as float64; ``kind`` (a string) as its index in :class:`~woolguard.events.EventKind`
(a LightGBM categorical feature); any other string feature as a categorical code from the spec's vocabulary
(unknown strings -> NaN, which LightGBM treats as missing). ``model_score`` is never a model input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from woolguard.events import PAYOUT_KINDS, Decision, Event, EventKind
from woolguard.features.catalog import DEFAULT_WINDOWS

#: Features that are outputs of the model or labels in disguise: never inputs.
EXCLUDED = frozenset({"model_score", "model_actor_score", "model_shadow_score"})
#: Static features that only say *when* an event happens (see :func:`context_features`).
WHEN_FEATURES = ("campaign_age_s", "hour")
KIND_CODES: dict[str, int] = {k.value: i for i, k in enumerate(EventKind)}


@dataclass
class FeatureSpec:
    """Which features the model reads, in which order, and how strings become numbers."""

    names: list[str]
    #: feature name -> vocabulary (string -> code); ``kind`` uses :data:`KIND_CODES`.
    categories: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def categorical(self) -> list[str]:
        return [n for n in self.names if n in self.categories]

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "categories": self.categories}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        return cls(list(d["names"]), {k: dict(v) for k, v in d.get("categories", {}).items()})

    def vector_into(self, feats: Mapping[str, Any], out: np.ndarray) -> np.ndarray:
        """Fill ``out`` (float64, len(names)) from one feature mapping (missing or None: NaN)."""
        return self.filler()(feats, out)

    def filler(self) -> Callable[[Mapping[str, Any], np.ndarray], np.ndarray]:
        """The scorer's hot path, planned once: ``fill(feats, out)`` does what :meth:`vector_into` does.

        One ``map`` over the names, the categorical positions patched, one assignment into the float64 row (numpy
        reads None as NaN); no Python work per numeric feature (59 features: 5.8 → ~2 µs)."""
        names = tuple(self.names)
        cats = tuple((i, self.categories[n]) for i, n in enumerate(names) if n in self.categories)

        def fill(feats: Mapping[str, Any], out: np.ndarray) -> np.ndarray:
            vals = list(map(feats.get, names))
            for i, vocab in cats:
                v = vals[i]
                if v is not None:
                    vals[i] = vocab.get(v if isinstance(v, str) else str(v))
            out[:] = vals
            return out

        return fill

    def matrix(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> np.ndarray:
        """A float64 matrix (rows × names) from columns of raw feature values."""
        n = len(next(iter(columns.values()))) if columns else 0
        out = np.empty((n, len(self.names)), dtype=np.float64)
        for j, name in enumerate(self.names):
            col = columns.get(name)
            if col is None:
                out[:, j] = np.nan
            elif name in self.categories:
                vocab = self.categories[name]
                out[:, j] = np.fromiter((vocab.get(v if isinstance(v, str) else str(v), np.nan) for v in col),
                                        dtype=np.float64, count=n)
            else:
                out[:, j] = np.asarray(col, dtype=np.float64)
        return out


def context_features(names: Iterable[str]) -> list[str]:
    """Of ``names``, the features that describe the moment rather than the claimant: windows keyed by the campaign
    alone (its whole traffic, its known gang members active: ``camp_accounts_1m``, ``camp_gang_accounts_10m``, ...)
    and :data:`WHEN_FEATURES`. A genuine shopper who claims while a crowd floods the campaign shares all of them
    with the crowd; the model's actor score (:class:`~woolguard.model.scorer.LightGBMScorer`) holds them at a
    reference value."""
    moment = {w.name for w in DEFAULT_WINDOWS if w.key == ("campaign",)} | set(WHEN_FEATURES)
    return [n for n in names if n in moment]


def spec_for_engine(feature_names: Sequence[str], sample: Mapping[str, Any] | None = None) -> FeatureSpec:
    """The spec for an engine's features (``Engine.feature_names``): every numeric feature and ``kind``."""
    names = [n for n in feature_names if n not in EXCLUDED]
    cats: dict[str, dict[str, int]] = {}
    if "kind" in names:
        cats["kind"] = dict(KIND_CODES)
    if sample is not None:
        for n in names:
            if n != "kind" and isinstance(sample.get(n), str):
                cats[n] = {}
    return FeatureSpec(names, cats)


@dataclass
class FeatureTable:
    """Feature rows in time order, with what training and backtesting need beside them."""

    columns: dict[str, list[Any]]
    ts: np.ndarray  # epoch ms
    label: np.ndarray  # 1 fraud, 0 genuine, -1 unlabelled
    event_id: list[str]
    kind: list[str]
    value: np.ndarray  # money at stake (yuan), 0 when none
    truth: list[str]
    decisions: dict[str, list[Any]] = field(default_factory=dict)  # outcome, level, score, reasons per row

    def __len__(self) -> int:
        return len(self.event_id)


class _Collector:
    """A ``decide_stream`` sink that keeps each decision's features (and its event's facts)."""

    def __init__(self, names: Sequence[str], label_of: Callable[[Event], int], keep: Callable[[Event], bool]):
        self.names = list(names)
        self.rows: list[list[Any]] = []
        self.ts: list[int] = []
        self.label: list[int] = []
        self.event_id: list[str] = []
        self.kind: list[str] = []
        self.value: list[float] = []
        self.truth: list[str] = []
        self.outcome: list[str] = []
        self.level: list[int] = []
        self.reasons: list[list[str]] = []
        self.label_of = label_of
        self.keep = keep

    def __call__(self, event: Event, decision: Decision) -> None:
        if not self.keep(event):
            return
        f = decision.features
        self.rows.append([f[n] for n in self.names])
        self.ts.append(event.ts)
        self.label.append(self.label_of(event))
        self.event_id.append(event.event_id)
        self.kind.append(event.kind.value)
        self.value.append(event.value or 0.0)
        self.truth.append(event.truth or "")
        self.outcome.append(decision.outcome.value)
        self.level.append(decision.level)
        self.reasons.append([r.rule for r in decision.reasons if not r.shadow])

    def table(self) -> FeatureTable:
        cols = {n: [r[j] for r in self.rows] for j, n in enumerate(self.names)}
        return FeatureTable(cols, np.asarray(self.ts, dtype=np.int64), np.asarray(self.label, dtype=np.int8),
                            self.event_id, self.kind, np.asarray(self.value, dtype=np.float64), self.truth,
                            {"outcome": self.outcome, "level": self.level, "reasons": self.reasons})


def truth_label(event: Event) -> int:
    """The simulator's label: 1 for any wool-party archetype, 0 genuine, -1 when the event has none."""
    if event.truth is None:
        return -1
    return 0 if event.truth == "genuine" else 1


def payout_only(event: Event) -> bool:
    return event.kind in PAYOUT_KINDS


def replay_events(events: Iterable[Event], engine: Any, *, label_of: Callable[[Event], int] = truth_label,
                  keep: Callable[[Event], bool] = payout_only, sweep: Any = True,
                  on_decision: Callable[[Event, Decision], None] | None = None) -> FeatureTable:
    """Decide ``events`` (time order) with ``engine`` exactly as online and return the kept rows' features.

    ``sweep`` runs the online gang sweep between events, as ``woolguard demo`` does (``True``: the demo's
    :class:`~woolguard.report.GangSweep`; or the one given; ``False``: none), so ``gang_score`` and the windows
    over known gang members are what the engine had at the time. The returned columns are
    ``engine.feature_names`` (including ``model_score``, which :class:`FeatureSpec` leaves out).
    """
    from woolguard.report import Report, decide_stream
    from woolguard.sim import challenge_passed

    col = _Collector(engine.feature_names, label_of, keep)
    sink = col
    if on_decision is not None:
        def sink(event: Event, decision: Decision) -> None:  # type: ignore[misc]
            col(event, decision)
            on_decision(event, decision)
    decide_stream(events, engine, Report(challenge_passed), sink=sink, sweep=sweep)
    return col.table()
