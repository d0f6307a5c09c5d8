"""Importing any event log (CSV or Parquet) with a column mapping, and the windowed features of imported logs.

``import_log(path, mapping, out_dir)`` reads the file, checks every row and writes ``events.parquet`` (one row per
kept event, in time order) and ``import.json`` (the mapping, counts, the bad rows and the window catalogue) to
``out_dir``. Bad rows are never dropped silently: each is reported with its line number (CSV: the file line, the
header being line 1; Parquet: the row number from 1), its column and the problem, and then either skipped
(``on_error="skip"``, listed in ``bad_rows.csv``) or the whole import is refused (``on_error="refuse"``).

The mapping (:class:`Mapping`) names which column is the time and its format (``iso`` text, epoch ``s`` or ``ms``,
or ``order``: a plain order number, one unit read as one second), the account, and optionally the device, IP,
amount, label (with its positive values, and optionally its negative ones: other values are then unlabelled),
extra entity columns (each gets its own windows), category columns (raw values as categorical model inputs) and
an event id.

Features of an imported log (:func:`imported_features`) are computed by the same machinery as the engine's: a
catalogue of :class:`~woolguard.features.catalog.Window` definitions built for the import (counts, distinct counts,
first-seen and gap regularity per entity over a few spans) run through
:class:`~woolguard.features.state.MemoryState`, plus amount sums per entity and span kept here
(:class:`SumWindows`: the catalogue has no sum operation; see docs/model.md for the ``WindowOp.SUM`` this stands
in for). Extra entities are not in :data:`woolguard.features.catalog.ENTITIES`, so their windows are
:class:`ImportWindow` (a ``Window`` that accepts any entity name); the state code reads only the name, key, op,
span, member and kinds.
"""

from __future__ import annotations

import csv
import json
import math
from collections import deque
from collections.abc import Mapping as MappingT
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from woolguard.events import EventKind
from woolguard.features.catalog import Window, WindowOp
from woolguard.features.state import MemoryState
from woolguard.model.features import FeatureSpec

TIME_FORMATS = ("iso", "s", "ms", "order")
#: Epoch ms that order number 0 maps to (2020-01-01T00:00:00Z); each unit is one second.
ORDER_EPOCH_MS = 1_577_836_800_000
#: Window spans (seconds, or order units) when the mapping gives none.
DEFAULT_SPANS = {"order": (10, 100, 1_000, 10_000), "time": (3_600, 86_400, 7 * 86_400, 30 * 86_400)}
MAX_BAD_SHOWN = 50
#: A category column with more values than this is no raw model input (the trees would learn the training period's
#: individual values); it is used through label feedback instead (``model.feedback``: causal target statistics).
MAX_RAW_CATEGORIES = 32


class ImportError_(ValueError):
    """An import that cannot go on: a mapping that does not fit the file, or bad rows under ``refuse``."""

    def __init__(self, message: str, bad: list[dict[str, Any]] | None = None):
        self.bad = bad or []
        super().__init__(message)


@dataclass
class Mapping:
    time: str
    account: str
    time_format: str = "iso"
    device: str | None = None
    ip: str | None = None
    amount: str | None = None
    label: str | None = None
    positive: list[str] = field(default_factory=lambda: ["1"])
    negative: list[str] | None = None
    entities: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    event_id: str | None = None
    kind: str = "order"
    spans: list[int] | None = None
    #: How late a label reaches the system (seconds; order: units). Default: the third span (7 days; 1,000 units).
    label_delay: int | None = None

    def __post_init__(self) -> None:
        if self.time_format not in TIME_FORMATS:
            raise ImportError_(f"time format {self.time_format!r}: expected one of {', '.join(TIME_FORMATS)}")
        try:
            EventKind(self.kind)
        except ValueError:
            raise ImportError_(f"kind {self.kind!r} is not an event kind") from None
        if self.label_delay is not None and (not isinstance(self.label_delay, int) or self.label_delay < 0):
            raise ImportError_(f"label_delay {self.label_delay!r}: expected a whole number >= 0")
        self.positive = [str(v) for v in self.positive]
        if self.negative is not None:
            self.negative = [str(v) for v in self.negative]

    def columns(self) -> list[str]:
        cols = [self.time, self.account, self.device, self.ip, self.amount, self.label, self.event_id,
                *self.entities, *self.categories]
        return list(dict.fromkeys(c for c in cols if c))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: MappingT[str, Any]) -> Mapping:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ImportError_(f"mapping: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        return cls(**d)

    def entity_names(self) -> list[str]:
        """Entities with windows: account, then device and IP when mapped, then the extra columns."""
        out = ["account"]
        if self.device:
            out.append("device")
        if self.ip:
            out.append("ip")
        out += [f"x_{c}" for c in self.entities]
        return out


def _read(path: Path) -> tuple[pl.DataFrame, int]:
    """All columns as text; the offset from row index to the reported line number."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        df = pl.read_parquet(path)
        return df.with_columns(pl.all().cast(pl.String)), 1
    if suffix in (".csv", ".txt", ".tsv") or suffix == ".gz":
        sep = "\t" if suffix == ".tsv" else ","
        try:
            return pl.read_csv(path, infer_schema=False, separator=sep), 2
        except pl.exceptions.ComputeError as exc:
            raise ImportError_(f"{path}: not readable as CSV: {exc}") from None
    raise ImportError_(f"{path}: expected a .csv or .parquet file")


def _parse_time(col: pl.Series, fmt: str) -> pl.Series:
    """Epoch ms (Int64) or null where the value does not parse."""
    s = col.str.strip_chars()
    if fmt == "iso":
        def one(v: str | None) -> int | None:
            if v is None or not v:
                return None
            try:
                dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                return None
            if dt.tzinfo is None:  # naive times are read as UTC
                from datetime import UTC

                dt = dt.replace(tzinfo=UTC)
            return int(dt.timestamp() * 1000)

        return s.map_elements(one, return_dtype=pl.Int64)
    num = s.cast(pl.Float64, strict=False)
    num = pl.Series(np.where(np.isfinite(num.fill_null(np.nan).to_numpy()), num.to_numpy(), np.nan)).fill_nan(None)
    if fmt == "s":
        return (num * 1000).round(0).cast(pl.Int64)
    if fmt == "ms":
        return num.round(0).cast(pl.Int64)
    return (num * 1000 + ORDER_EPOCH_MS).round(0).cast(pl.Int64)


def import_log(path: str | Path, mapping: Mapping, out_dir: str | Path, *, on_error: str = "skip") -> dict[str, Any]:
    """Read, check and write an event log; returns the import summary (also written to ``import.json``)."""
    if on_error not in ("skip", "refuse"):
        raise ImportError_("on_error must be 'skip' or 'refuse'")
    path = Path(path)
    if not path.is_file():
        raise ImportError_(f"{path}: no such file")
    df, offset = _read(path)
    missing = [c for c in mapping.columns() if c not in df.columns]
    if missing:
        raise ImportError_(f"{path}: mapped column(s) {missing} not in the file (columns: {df.columns})")
    n = df.height
    line = np.arange(n, dtype=np.int64) + offset
    bad: list[dict[str, Any]] = []
    bad_mask = np.zeros(n, dtype=bool)

    def flag(mask: np.ndarray, column: str, problem: str) -> None:
        idx = np.nonzero(mask & ~bad_mask)[0]
        values = df[column].gather(idx).to_list() if idx.size else []
        for i, v in zip(idx.tolist(), values, strict=True):
            bad.append({"line": int(line[i]), "column": column, "value": v, "problem": problem})
        bad_mask[idx] = True

    ts = _parse_time(df[mapping.time], mapping.time_format)
    flag(ts.is_null().to_numpy(), mapping.time, f"not a time ({mapping.time_format})")
    if not bad_mask.all():
        tsv = ts.to_numpy()
        ok = ~bad_mask
        out_of_range = np.zeros(n, dtype=bool)
        out_of_range[ok] = (tsv[ok] < 946_684_800_000) | (tsv[ok] > 4_102_444_800_000)
        flag(out_of_range, mapping.time, "time outside 2000-2100 (a unit mistake?)")
    acct = df[mapping.account].str.strip_chars()
    flag((acct.is_null() | (acct.str.len_chars() == 0) | (acct.str.len_chars() > 128)).to_numpy(),
         mapping.account, "account missing or longer than 128 characters")
    amount = None
    if mapping.amount:
        raw = df[mapping.amount].str.strip_chars()
        amount = raw.cast(pl.Float64, strict=False)
        a = amount.to_numpy()
        present = raw.is_not_null().to_numpy() & (raw.str.len_chars().fill_null(0).to_numpy() > 0)
        badnum = present & (np.isnan(a) | ~np.isfinite(np.nan_to_num(a, nan=0.0)) | (np.nan_to_num(a) < 0))
        flag(badnum, mapping.amount, "amount not a non-negative number")
    label = np.full(n, -1, dtype=np.int8)
    if mapping.label:
        lv = df[mapping.label].str.strip_chars()
        pos = lv.is_in(mapping.positive).fill_null(False).to_numpy()
        if mapping.negative is None:
            neg = ~pos & lv.is_not_null().to_numpy()
        else:
            neg = lv.is_in(mapping.negative).fill_null(False).to_numpy()
        label[pos] = 1
        label[neg] = 0
    if bad and on_error == "refuse":
        shown = "; ".join(f"line {b['line']} {b['column']}={b['value']!r}: {b['problem']}" for b in bad[:5])
        raise ImportError_(f"{path}: {len(bad)} bad row(s), import refused: {shown}", bad)
    keep = ~bad_mask
    cols: dict[str, Any] = {
        "line": line[keep],
        "ts": ts.to_numpy()[keep].astype(np.int64),
        "account": acct.filter(pl.Series(keep)),
    }
    if mapping.event_id:
        cols["event_id"] = df[mapping.event_id].filter(pl.Series(keep))
    else:
        cols["event_id"] = pl.Series([f"{path.stem}:{i}" for i in line[keep].tolist()])
    for name in ("device", "ip"):
        column = getattr(mapping, name)
        if column:
            cols[name] = df[column].str.strip_chars().filter(pl.Series(keep))
    if amount is not None:
        cols["amount"] = amount.filter(pl.Series(keep))
    cols["label"] = label[keep]
    for c in mapping.entities:
        cols[f"x_{c}"] = df[c].str.strip_chars().filter(pl.Series(keep))
    for c in mapping.categories:
        cols[f"c_{c}"] = df[c].str.strip_chars().filter(pl.Series(keep))
    out = pl.DataFrame(cols).with_row_index("_i").sort(["ts", "_i"]).drop("_i")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_parquet(out_dir / "events.parquet")
    if bad:
        with (out_dir / "bad_rows.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["line", "column", "value", "problem"])
            w.writeheader()
            w.writerows(bad)
    labels = out["label"].to_numpy()
    summary = {
        "source": str(path), "rows": n, "imported": int(out.height), "bad_rows": len(bad),
        "bad_shown": bad[:MAX_BAD_SHOWN], "on_error": on_error,
        "labelled": int((labels >= 0).sum()), "positives": int((labels == 1).sum()),
        "first_ts": int(out["ts"].min()) if out.height else None,
        "last_ts": int(out["ts"].max()) if out.height else None,
        "mapping": mapping.to_dict(),
        "windows": [w.name for w in import_windows(mapping)[0]] + [s.name for s in import_windows(mapping)[1]],
    }
    (out_dir / "import.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), "utf-8")
    return summary


# -- windows of an imported log ----------------------------------------------------------------------


class ImportWindow(Window):
    """A :class:`Window` over entities named by the import (``x_<column>``), not the engine's fixed list."""

    __slots__ = ()

    def __post_init__(self) -> None:
        if (self.op is WindowOp.DISTINCT) != (self.member is not None):
            raise ValueError(f"window {self.name}: 'member' is required for distinct and only for it")
        if self.window_s <= 0:
            raise ValueError(f"window {self.name}: window_s must be positive")


@dataclass(frozen=True)
class SumWindow:
    """Sum of the amounts of one entity's events within the last ``window_s`` (the current one included)."""

    name: str
    key: str
    window_s: int


class SumWindows:
    """Amount sums per key over sliding windows; same conventions as ``MemoryState`` counts (an entry leaves
    when its age reaches the window; the current event is included)."""

    def __init__(self, windows: list[SumWindow]):
        self.windows = windows
        self._state: list[dict[str, list[Any]]] = [{} for _ in windows]

    def observe(self, ts_ms: int, entities: MappingT[str, str | None], amount: float) -> list[float]:
        out = []
        for w, state in zip(self.windows, self._state, strict=True):
            key = entities.get(w.key)
            if key is None:
                out.append(0.0)
                continue
            rec = state.get(key)
            if rec is None:
                rec = state[key] = [deque(), 0.0]
            q = rec[0]
            q.append((ts_ms, amount))
            rec[1] += amount
            cutoff = ts_ms - w.window_s * 1000
            while q and q[0][0] <= cutoff:
                rec[1] -= q.popleft()[1]
            if len(q) == 1:  # re-anchor the running sum: no drift from float subtraction
                rec[1] = amount
            out.append(round(rec[1], 6))
        return out


def _span_name(s: int, order: bool) -> str:
    if order:
        return f"{s}n"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def spans_of(mapping: Mapping) -> list[int]:
    return list(mapping.spans or DEFAULT_SPANS["order" if mapping.time_format == "order" else "time"])


def label_delay_ms(mapping: Mapping) -> int:
    """The label delay in ms: ``label_delay`` or the third span (the longest when fewer)."""
    spans = sorted(spans_of(mapping))
    d = mapping.label_delay if mapping.label_delay is not None else spans[min(2, len(spans) - 1)]
    return int(d) * 1000


def feedback_half_lives(mapping: Mapping) -> tuple[list[int], list[str]]:
    """Half-lives (ms) of the decayed label feedback: the two longest spans, and their names."""
    spans = sorted(spans_of(mapping))[-2:]
    order = mapping.time_format == "order"
    return [s * 1000 for s in spans], [_span_name(s, order) for s in spans]


def import_windows(mapping: Mapping) -> tuple[tuple[Window, ...], list[SumWindow]]:
    """The window catalogue of an import: for each entity, counts, amount sums and distinct counts of each other
    entity over the spans, the time since it was first seen and the regularity of its gaps; plus counts of each
    (account, extra entity) pair."""
    order = mapping.time_format == "order"
    spans = spans_of(mapping)
    ents = mapping.entity_names()
    longest = max(spans)
    windows: list[Window] = []
    sums: list[SumWindow] = []
    for e in ents:
        for s in spans:
            windows.append(ImportWindow(f"{e}_n_{_span_name(s, order)}", WindowOp.COUNT, (e,), s))
            if mapping.amount:
                sums.append(SumWindow(f"{e}_sum_{_span_name(s, order)}", e, s))
        for m in ents:
            if m != e:
                for s in (spans[1], longest):
                    windows.append(ImportWindow(f"{e}_{m}s_{_span_name(s, order)}", WindowOp.DISTINCT, (e,), s, m))
        windows.append(ImportWindow(f"{e}_seen", WindowOp.FIRST_SEEN, (e,), longest * 10))
        windows.append(ImportWindow(f"{e}_gap_cv", WindowOp.GAPS, (e,), longest))
    for e in ents[1:]:
        for s in (spans[1], longest):
            windows.append(ImportWindow(f"account+{e}_n_{_span_name(s, order)}", WindowOp.COUNT, ("account", e), s))
    return tuple(windows), sums


@dataclass
class ImportedFeatures:
    x: np.ndarray
    spec: FeatureSpec
    label: np.ndarray
    ts: np.ndarray
    event_id: list[str]
    amount: np.ndarray
    line: np.ndarray
    #: entity / high-cardinality category name -> one key per row, for label feedback (``model.feedback``).
    keys: dict[str, list[Any]] = field(default_factory=dict)


def load_import(data_dir: str | Path) -> tuple[pl.DataFrame, Mapping, dict[str, Any]]:
    d = Path(data_dir)
    meta_path = d / "import.json"
    if not meta_path.is_file():
        raise ImportError_(f"{d}: no import.json (run woolguard import first)")
    meta = json.loads(meta_path.read_text("utf-8"))
    return pl.read_parquet(d / "events.parquet"), Mapping.from_dict(meta["mapping"]), meta


def imported_features(df: pl.DataFrame, mapping: Mapping) -> ImportedFeatures:
    """Replay an imported log (time order) through its window catalogue; one feature row per event.

    Features: every window; per entity the time since its previous event (seconds or units; NaN for its first);
    the amount and its ratio to the entity's mean amount over the longest span; each category column with at most
    :data:`MAX_RAW_CATEGORIES` values as a categorical input (vocabulary: every value in the log, sorted). Label
    feedback is added by training (it depends on which labels the split lets the rows see): its keys are the
    entities and the larger category columns, in ``keys``."""
    windows, sum_windows = import_windows(mapping)
    state = MemoryState(windows)
    sums = SumWindows(sum_windows)
    kind = EventKind(mapping.kind)
    ents = mapping.entity_names()
    src = {"account": "account", "device": "device", "ip": "ip"}
    ent_cols = [df[src.get(e, e)].to_list() for e in ents]
    has_amount = "amount" in df.columns
    amounts = df["amount"].fill_null(float("nan")).to_numpy() if has_amount else np.zeros(df.height)
    n = df.height
    nw = len(windows)
    ns = len(sum_windows)
    ne = len(ents)
    win = np.empty((n, nw), dtype=np.float64)
    sm = np.empty((n, ns), dtype=np.float64)
    since = np.full((n, ne), np.nan)
    last: list[dict[str, int]] = [{} for _ in ents]
    ts = df["ts"].to_numpy()
    observe = state.observe
    for i in range(n):
        entities = {e: col[i] for e, col in zip(ents, ent_cols, strict=True)}
        t = int(ts[i])
        win[i] = observe(t, kind, entities)
        if ns:
            a = amounts[i]
            sm[i] = sums.observe(t, entities, 0.0 if math.isnan(a) else float(a))
        for q, col in enumerate(ent_cols):
            k = col[i]
            if k is not None:
                prev = last[q].get(k)
                if prev is not None:
                    since[i, q] = (t - prev) / 1000.0
                last[q][k] = t
    names = [w.name for w in windows] + [s.name for s in sum_windows] + [f"{e}_since_last" for e in ents]
    blocks = [win, sm, since]
    if has_amount:
        names.append("amount")
        blocks.append(amounts.reshape(-1, 1))
        long = _span_name(max(spans_of(mapping)), mapping.time_format == "order")
        for e in ents:
            cnt = win[:, names.index(f"{e}_n_{long}")]
            tot = sm[:, [s.name for s in sum_windows].index(f"{e}_sum_{long}")]
            names.append(f"amount_vs_{e}_mean")
            with np.errstate(divide="ignore", invalid="ignore"):
                blocks.append((amounts / np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)).reshape(-1, 1))
    cats: dict[str, dict[str, int]] = {}
    keys: dict[str, list[Any]] = dict(zip(ents, ent_cols, strict=True))
    for c in mapping.categories:
        col = df[f"c_{c}"]
        values = sorted(v for v in col.unique().to_list() if v is not None)
        if len(values) > MAX_RAW_CATEGORIES:
            if f"x_{c}" not in keys:
                keys[f"c_{c}"] = col.to_list()
            continue
        vocab = {v: i for i, v in enumerate(values)}
        cats[f"cat_{c}"] = vocab
        names.append(f"cat_{c}")
        codes = col.replace_strict(vocab, default=None, return_dtype=pl.Float64).fill_null(float("nan")).to_numpy()
        blocks.append(codes.reshape(-1, 1))
    x = np.hstack(blocks) if blocks else np.zeros((n, 0))
    return ImportedFeatures(x, FeatureSpec(names, cats), df["label"].to_numpy().astype(np.int64), ts,
                            df["event_id"].to_list(), amounts, df["line"].to_numpy(), keys)
