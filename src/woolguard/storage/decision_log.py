"""The decision log: every decision with its event, reasons and features, appended in batches.

:class:`DecisionLog` buffers ``append(event, decision)`` calls and writes them ``batch_size`` at a time,
one multi-row insert per transaction. A second decision for the same ``(tenant, event_id)`` is ignored
(``INSERT ... ON CONFLICT DO NOTHING``), so replaying a stream is idempotent.

Nothing is dropped silently. When a write fails because the database is unreachable, the rows wait in
memory (up to ``max_pending``), then in ``woolguard-spill-*.jsonl`` files in ``spill_dir``, and the next
flush writes them first. A row the database refuses outright (a NUL character on PostgreSQL, say) is
written to ``woolguard-rejected-*.jsonl`` with the error and logged, and does not hold back the others.

Two JSON columns are stored compactly and given back whole by every reader. ``features`` is
``[feature set id, value, ...]`` (:func:`compact_features`). Each of ``reasons`` leaves out ``category``,
``text_en`` and ``text_zh`` when all three are what the taxonomy (:data:`woolguard.reasons.CODES`) gives
for its code (:func:`compact_reasons`); a reason whose category or texts differ (an unknown code, a custom
text) is stored whole. A stored reason without ``category`` is a compact one: the readers put the
taxonomy's category and texts back (:func:`expand_reasons`). Spill and rejected files hold whole rows.

The readers (:func:`get_decision`, :func:`list_decisions`, :func:`iter_decisions`) return plain dicts
whose keys are the ``decisions`` columns.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
from sqlalchemy import Insert, and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from woolguard.events import Decision, Event, Reason
from woolguard.reasons import CODES
from woolguard.storage.database import Database, json_dumps, json_encoder
from woolguard.storage.schema import DEFAULT_TENANT, decisions, feature_sets

log = logging.getLogger("woolguard.storage")

SPILL_GLOB = "woolguard-spill-*.jsonl"
REJECTED_PREFIX = "woolguard-rejected-"
_BACKOFF_MAX_S = 30.0


def decision_row(event: Event, decision: Decision, tenant: str = DEFAULT_TENANT) -> dict[str, Any]:
    """The ``decisions`` row for one decided event (JSON columns still as structs / dicts)."""
    device = event.device
    truth = event.truth
    if event.phone is not None or truth is not None:
        # The stored event never holds a clear number; the ground truth has its own column.
        event = msgspec.structs.replace(event, phone=None, truth=None)
    return {
        "id": decision.decision_id,
        "tenant_id": tenant,
        "event_id": event.event_id,
        "ts": event.ts,
        "kind": str(event.kind),
        "campaign_id": event.campaign_id,
        "account_id": event.account.id,
        "device_id": device.id if device is not None else None,
        "ip": event.ip,
        "level": decision.level,
        "outcome": str(decision.outcome),
        "challenge": str(decision.challenge) if decision.challenge is not None else None,
        "score": decision.score,
        "policy": decision.policy,
        "degraded": decision.degraded,
        "reasons": decision.reasons,
        "features": decision.features,
        "event": event,
        "truth": truth,
    }


_COPY_COLUMNS = ("id", "tenant_id", "event_id", "ts", "kind", "campaign_id", "account_id", "device_id", "ip", "level",
                 "outcome", "challenge", "score", "policy", "degraded", "reasons", "features", "event", "truth")
_COPY_SQL = f"COPY decisions ({', '.join(_COPY_COLUMNS)}) FROM STDIN"

#: A decision waiting to be written: (normalised event, decision, tenant). The row is built when the batch
#: is written (by the writer thread, off the request path); rows read back from spill files are dicts.
Item = tuple[Event, Decision, str]

# COPY's text format: columns split by tabs, rows by newlines, NULL is \N, and a backslash, tab, newline or
# carriage return inside a value is written as a backslash escape.
_SPECIAL = re.compile(r"[\\\t\n\r]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_encode_json = json_encoder().encode


def _text(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    value = str(value)
    return value.translate(_ESCAPES) if _SPECIAL.search(value) else value


def _json_field(value: Any) -> bytes:
    data = _encode_json(value)
    # JSON has no raw tab or newline. (Not ``b"\\" in data``: bytes.__contains__ first tries the operand as an int and
    # raises and clears a TypeError, ~2k instructions a call; replace() returns the same object when nothing matches.)
    return data.replace(b"\\", b"\\\\")


#: feature-set id -> names, and names -> id (content-addressed: an id never names other names)
_SET_NAMES: dict[str, tuple[str, ...]] = {}
_SET_IDS: dict[tuple[str, ...], str] = {}


def feature_set_id(names: tuple[str, ...]) -> str:
    """The id of a list of feature names: 16 hex digits of its BLAKE2b (cached)."""
    sid = _SET_IDS.get(names)
    if sid is None:
        sid = hashlib.blake2b("\x1f".join(names).encode(), digest_size=8).hexdigest()
        if len(_SET_IDS) > 10_000:  # engines with ever-changing feature lists: stay bounded
            _SET_IDS.clear()
        _SET_IDS[names] = sid
        _SET_NAMES[sid] = names
    return sid


def compact_features(features: Any, sets: set[str]) -> Any:
    """``{name: value, ...}`` as stored: ``[set id, value, ...]`` (the set's id added to ``sets``)."""
    if not isinstance(features, dict) or not features:
        return features
    sid = feature_set_id(tuple(features))
    sets.add(sid)
    return [sid, *features.values()]


def expand_features(value: Any, conn: Any = None) -> Any:
    """A stored ``features`` value as ``{name: value}``: compact rows through their set's names (read from
    ``feature_sets`` with ``conn`` when this process has not seen the set), old rows as they are."""
    if isinstance(value, str):
        value = orjson.loads(value)
    if not isinstance(value, list) or not value or not isinstance(value[0], str):
        return value
    sid = value[0]
    names = _SET_NAMES.get(sid)
    if names is None and conn is not None:
        found = conn.execute(select(feature_sets.c.names).where(feature_sets.c.id == sid)).scalar()
        if found is not None:
            names = _SET_NAMES[sid] = tuple(orjson.loads(found) if isinstance(found, str) else found)
    if names is None or len(names) != len(value) - 1:
        raise ValueError(f"decision log: features of unknown feature set {sid!r}")
    return dict(zip(names, value[1:], strict=True))


class StoredReason(msgspec.Struct, omit_defaults=True, gc=False):
    """A :class:`~woolguard.events.Reason` as stored when its category and texts are the taxonomy's for its
    code: the same fields, in the same order, less ``category``, ``text_en`` and ``text_zh``. (Made and
    encoded by the writer, never kept: ``gc=False`` spares the collector the thousands made a second.)"""

    code: str
    rule: str
    score: int = 0
    level: int = 0
    values: dict[str, Any] = {}
    shadow: bool = False


#: code -> (category, text_en, text_zh) as the taxonomy gives them: what a compact reason leaves out
_TAXONOMY: dict[str, tuple[str, str, str]] = {c.code: (c.category.value, c.en, c.zh) for c in CODES.values()}
_taxonomy_of = _TAXONOMY.get
_LEFT_OUT = frozenset(("category", "text_en", "text_zh"))


def _compact_reason(r: Any) -> Any:
    if isinstance(r, Reason):
        if isinstance(r.code, str) and (r.category, r.text_en, r.text_zh) == _taxonomy_of(r.code):
            return StoredReason(r.code, r.rule, r.score, r.level, r.values, r.shadow)
    elif isinstance(r, dict) and "category" in r:  # a row read back from a spill file
        code = r.get("code")
        if (isinstance(code, str)
                and (r["category"], r.get("text_en", ""), r.get("text_zh", "")) == _taxonomy_of(code)):
            return {k: v for k, v in r.items() if k not in _LEFT_OUT}
    return r


def compact_reasons(reasons: Any) -> Any:
    """Reasons as stored: each whose category and both texts are the taxonomy's for its code without those
    three (a :class:`StoredReason`, or a dict for a row read back from a spill file); any other as it is."""
    if not reasons:
        return reasons
    try:
        # The hot path (a decision's Reason structs) in one comprehension: one dict lookup by code and a tuple
        # compare (the engine's reasons hold the taxonomy's own strings: identity), then, for a taxonomy reason
        # (nearly all), a struct. No match (an unknown code: None) keeps the reason whole.
        return [StoredReason(r.code, r.rule, r.score, r.level, r.values, r.shadow)
                if (r.category, r.text_en, r.text_zh) == _taxonomy_of(r.code) else r for r in reasons]
    except (AttributeError, TypeError):  # dicts (a row from a spill file), or a mix
        return [_compact_reason(r) for r in reasons]


def _expand_reason(r: Any) -> Any:
    if not isinstance(r, dict) or "category" in r:
        return r  # stored whole (or written before compact reasons): as it is
    code = r.get("code")
    t = _TAXONOMY.get(code) if isinstance(code, str) else None
    if t is None:  # a code this taxonomy no longer has: its category is the code's first part, no texts
        t = (code.partition(".")[0] if isinstance(code, str) else "", "", "")
    out = {"code": code, "category": t[0]}  # Reason's field order, as a whole reason reads back
    for k, v in r.items():
        if k != "code" and k != "shadow":
            out[k] = v
    if t[1]:
        out["text_en"] = t[1]
    if t[2]:
        out["text_zh"] = t[2]
    if "shadow" in r:
        out["shadow"] = r["shadow"]
    return out


def expand_reasons(value: Any) -> Any:
    """Stored ``reasons`` as :class:`~woolguard.events.Reason` dicts: compact ones (no ``category``) with the
    taxonomy's category and texts put back, whole ones (and rows written before) as they are."""
    if isinstance(value, str | bytes):
        value = orjson.loads(value)
    if not isinstance(value, list):
        return value
    return [_expand_reason(r) for r in value]


def _copy_line_of_row(row: dict[str, Any], sets: set[str]) -> bytes:
    """A ``COPY`` text line from a row dict (a row read back from a spill file)."""
    head = "\t".join(_text(row.get(c)) for c in _COPY_COLUMNS[:15])
    features = compact_features(row["features"], sets)
    return b"\t".join((head.encode(), _json_field(compact_reasons(row["reasons"])), _json_field(features),
                       _json_field(row["event"]), _text(row.get("truth")).encode())) + b"\n"


def _copy_line(item: Item | dict[str, Any], sets: set[str]) -> bytes:
    """One ``COPY`` text line for a decision, in :data:`_COPY_COLUMNS` order: what :func:`decision_row`
    holds, formatted directly (a fraction of the CPU of building the dict and letting the driver format it)."""
    if isinstance(item, dict):
        return _copy_line_of_row(item, sets)
    event, decision, tenant = item
    device_id = event.device.id if event.device is not None else None
    truth = event.truth
    texts = (decision.decision_id, tenant, event.event_id, event.campaign_id or "", event.account.id,
             device_id or "", event.ip or "", decision.policy, decision.degraded or "", truth or "")
    if _SPECIAL.search("".join(texts)):  # a value with a backslash, tab or newline: escape it the slow way
        return _copy_line_of_row(decision_row(event, decision, tenant), sets)
    if event.phone is not None or truth is not None:
        event = msgspec.structs.replace(event, phone=None, truth=None)
    challenge = decision.challenge
    head = "\t".join((decision.decision_id, tenant, event.event_id, str(event.ts), event.kind.value,
                      "\\N" if event.campaign_id is None else event.campaign_id, event.account.id,
                      "\\N" if device_id is None else device_id, "\\N" if event.ip is None else event.ip,
                      str(decision.level), decision.outcome.value, "\\N" if challenge is None else challenge.value,
                      str(decision.score), decision.policy,
                      "\\N" if decision.degraded is None else decision.degraded))
    features = _json_field(compact_features(decision.features, sets))
    return b"".join((head.encode(), b"\t", _json_field(compact_reasons(decision.reasons)), b"\t", features,
                     b"\t", _json_field(event), b"\t", b"\\N" if truth is None else truth.encode(), b"\n"))


def _as_row(item: Item | dict[str, Any]) -> dict[str, Any]:
    return item if isinstance(item, dict) else decision_row(item[0], item[1], item[2])


def _stored_row(item: Item | dict[str, Any], sets: set[str]) -> dict[str, Any]:
    """The row as inserted: reasons and features compact (the features' set id added to ``sets``)."""
    row = dict(_as_row(item))
    row["reasons"] = compact_reasons(row["reasons"])
    row["features"] = compact_features(row["features"], sets)
    return row


def _insert_ignoring_duplicates(dialect: str) -> Insert:
    if dialect == "postgresql":
        return postgresql.insert(decisions).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(decisions).on_conflict_do_nothing()
    raise ValueError(f"unsupported database dialect {dialect!r} (woolguard supports sqlite and postgresql)")


def _is_transient(exc: BaseException) -> bool:
    """True when the database (not the row) is the problem: unreachable, locked, read-only, full."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    return isinstance(exc, OSError | TimeoutError)


class DecisionLog:
    """Batched, idempotent, loss-free writer of the decision log (and a reader of it).

    ``with DecisionLog(db) as dlog: dlog.append(event, decision)``. Thread-safe: the API server appends
    from many threads and flushes from :meth:`start_background`'s thread.
    """

    def __init__(self, db: Database, tenant: str = DEFAULT_TENANT, batch_size: int = 500, *,
                 max_pending: int = 100_000, spill_dir: str | os.PathLike[str] | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.db = db
        self.tenant = tenant
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.spill_dir = Path(spill_dir if spill_dir is not None
                              else os.environ.get("WOOLGUARD_SPILL_DIR", "."))
        #: Rows committed by this log (duplicates ignored by the database included).
        self.written = 0
        #: The last write error, or None after a successful flush.
        self.last_error: BaseException | None = None
        self._buffer: list[Item] = []
        self._retry: list[Item | dict[str, Any]] = []  # rows whose write failed, oldest first
        self._lock = threading.Lock()  # guards _buffer
        self._flush_lock = threading.RLock()  # one writer at a time; guards _retry
        self._statements: dict[str, Insert] = {}
        self._set_statements: dict[str, Insert] = {}
        self._known_sets: set[str] = set()  # feature sets committed to this database by this log
        self._retry_at = 0.0
        self._backoff = 0.5
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    # -- writing -------------------------------------------------------------------------------------

    def append(self, event: Event, decision: Decision, tenant: str | None = None) -> None:
        """Queue one decision; writes a batch when ``batch_size`` are waiting."""
        item = (event, decision, tenant or self.tenant)
        with self._lock:
            self._buffer.append(item)
            full = len(self._buffer) >= self.batch_size
        if full:
            if self._thread is not None:
                self._wake.set()
            elif time.monotonic() >= self._retry_at:
                self.flush()

    def flush(self) -> int:
        """Write everything waiting: spilled files first, then failed rows, then the buffer.

        Returns the number of rows written. A database error does not raise: the rows stay pending
        (see :meth:`pending` and :attr:`last_error`) and the next flush tries again.
        """
        with self._flush_lock:
            with self._lock:
                rows, self._buffer = self._buffer, []
            self._retry.extend(rows)
            try:
                written = self._write_spilled()
                while self._retry:
                    chunk = self._retry[: self.batch_size]
                    self._write(chunk)
                    del self._retry[: len(chunk)]
                    written += len(chunk)
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                self._failed(exc)
                return 0
            self.last_error = None
            self._backoff = 0.5
            self._retry_at = 0.0
            return written

    def pending(self) -> int:
        """Rows not yet in the database: buffered, waiting for a retry, or in spill files."""
        with self._lock:
            n = len(self._buffer)
        with self._flush_lock:
            n += len(self._retry)
            for path in self._spill_files():
                try:
                    with path.open("rb") as f:
                        n += sum(1 for line in f if line.strip())
                except FileNotFoundError:
                    pass
        return n

    def start_background(self, interval_s: float = 1.0) -> None:
        """Flush from a daemon thread every ``interval_s`` (sooner when a batch fills)."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                self._wake.wait(interval_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                if time.monotonic() < self._retry_at:
                    continue
                try:
                    self.flush()
                except Exception:  # a bug, not an outage: keep the thread alive, say what happened
                    log.exception("decision log: background flush failed")

        self._thread = threading.Thread(target=loop, name="woolguard-decision-log", daemon=True)
        self._thread.start()

    def stop_background(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join()

    def close(self) -> None:
        """Stop the background thread, flush, and spill to disk whatever could still not be written."""
        self.stop_background()
        self.flush()
        with self._flush_lock:
            with self._lock:
                self._retry.extend(self._buffer)
                self._buffer = []
            if self._retry:
                self._spill(self._retry)
                self._retry = []

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------

    def _statement(self) -> Insert:
        dialect = self.db.dialect
        stmt = self._statements.get(dialect)
        if stmt is None:
            stmt = self._statements[dialect] = _insert_ignoring_duplicates(dialect)
        return stmt

    def _write(self, rows: Sequence[Item | dict[str, Any]]) -> None:
        """One transaction; rows the database refuses are set aside when the batch as a whole fails.

        On PostgreSQL a batch goes in by ``COPY`` (a fraction of the CPU of a multi-row ``INSERT``, on both
        sides); a batch that ``COPY`` cannot take (a duplicate event, a value the server refuses) is written
        again by ``INSERT ... ON CONFLICT DO NOTHING``, which ignores duplicates, then row by row."""
        try:
            if self.db.dialect == "postgresql" and self._copy(rows):
                self.written += len(rows)
                return
            sets: set[str] = set()
            stored = [_stored_row(r, sets) for r in rows]
            with self.db.begin() as conn:
                self._register_sets(conn, sets)
                conn.execute(self._statement(), stored)
            self._known_sets |= sets
        except Exception as exc:
            if _is_transient(exc):
                raise
            self._write_one_by_one([_as_row(r) for r in rows])
        self.written += len(rows)

    def _copy(self, rows: Sequence[Item | dict[str, Any]]) -> bool:
        """``COPY`` the batch in one transaction; False when the server refused it (nothing was written)."""
        import psycopg

        sets: set[str] = set()
        data = b"".join([_copy_line(r, sets) for r in rows])
        with self.db.begin() as conn:
            self._register_sets(conn, sets)  # in the same transaction: no row names a set that is not there
            raw = conn.connection.driver_connection
            try:
                with raw.cursor() as cur, cur.copy(_COPY_SQL) as copy:
                    copy.write(data)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                conn.invalidate()
                raise OperationalError("COPY decisions", None, exc) from exc
            except psycopg.Error:
                conn.rollback()
                return False
        self._known_sets |= sets
        return True

    def _register_sets(self, conn: Any, sets: set[str]) -> None:
        """Insert the feature sets this process has not stored yet (another process may have: ignored)."""
        new = sets - self._known_sets
        if not new:
            return
        stmt = self._set_statements.get(self.db.dialect)
        if stmt is None:
            dialect = self.db.dialect
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            stmt = self._set_statements[dialect] = insert(feature_sets).on_conflict_do_nothing()
        conn.execute(stmt, [{"id": sid, "names": list(_SET_NAMES[sid])} for sid in sorted(new)])

    def _write_one_by_one(self, rows: Sequence[dict[str, Any]]) -> None:
        rejected: list[dict[str, Any]] = []
        for row in rows:
            try:
                sets: set[str] = set()
                stored = _stored_row(row, sets)
                with self.db.begin() as conn:
                    self._register_sets(conn, sets)
                    conn.execute(self._statement(), [stored])
                self._known_sets |= sets
            except Exception as exc:
                if _is_transient(exc):
                    raise
                rejected.append({"error": f"{type(exc).__name__}: {exc}".splitlines()[0], "row": row})
        if rejected:
            path = self._write_jsonl(REJECTED_PREFIX, rejected)
            log.error("decision log: the database refused %d row(s); they are in %s (first error: %s)",
                      len(rejected), path, rejected[0]["error"])

    def _failed(self, exc: BaseException) -> None:
        self.last_error = exc
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX_S)
        overflow = len(self._retry) - self.max_pending
        if overflow > 0:
            self._spill(self._retry[:overflow])
            del self._retry[:overflow]
        log.warning("decision log: write failed, %d row(s) kept for retry: %s",
                    self.pending(), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def _spill_files(self) -> list[Path]:
        return sorted(self.spill_dir.glob(SPILL_GLOB)) if self.spill_dir.is_dir() else []

    def _write_jsonl(self, prefix: str, rows: Sequence[Any]) -> Path:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        name = f"{prefix}{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        path = self.spill_dir / name
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json_dumps(row))
                f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # complete files only: a reader never sees half a spill
        return path

    def _spill(self, rows: Sequence[Item | dict[str, Any]]) -> None:
        path = self._write_jsonl("woolguard-spill-", [_as_row(r) for r in rows])
        log.warning("decision log: %d row(s) spilled to %s until the database is back", len(rows), path)

    def _write_spilled(self) -> int:
        """Write spill files (this process's or a crashed one's) and delete each once it is in."""
        written = 0
        for path in self._spill_files():
            try:
                with path.open("rb") as f:
                    rows = [orjson.loads(line) for line in f if line.strip()]
            except FileNotFoundError:  # another process took it
                continue
            except ValueError as exc:  # not ours or edited by hand: keep it aside, say so, go on
                aside = path.with_name(path.name + ".corrupt")
                os.replace(path, aside)
                log.error("decision log: spill file %s is not valid JSONL (%s); moved to %s",
                          path, exc, aside)
                continue
            for start in range(0, len(rows), self.batch_size):
                self._write(rows[start: start + self.batch_size])  # duplicates are ignored: re-runs are safe
            path.unlink(missing_ok=True)
            written += len(rows)
        return written

    # -- reading (for the log's own tenant unless one is named) -------------------------------------

    def get_decision(self, tenant: str | None, decision_id_or_event_id: str) -> dict[str, Any] | None:
        return get_decision(self.db, tenant or self.tenant, decision_id_or_event_id)

    def list_decisions(self, tenant: str | None = None, **filters: Any) -> DecisionPage:
        return list_decisions(self.db, tenant or self.tenant, **filters)

    def iter_decisions(self, tenant: str | None = None, since: int | None = None,
                       until: int | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return iter_decisions(self.db, tenant or self.tenant, since, until, **kwargs)


# ---------------------------------------------------------------------------------------------------
# Readers


@dataclass(frozen=True)
class DecisionPage:
    """One page of :func:`list_decisions`, newest first; pass ``next_cursor`` back for the next."""

    items: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


def _row_dict(row: Any, conn: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    if "reasons" in out:
        out["reasons"] = expand_reasons(out["reasons"])
    if "features" in out:
        out["features"] = expand_features(out["features"], conn)
    return out


def get_decision(db: Database, tenant: str, decision_id_or_event_id: str) -> dict[str, Any] | None:
    """The decision with this decision id or, failing that, for this event id."""
    key = decision_id_or_event_id
    with db.connect() as conn:
        for col in (decisions.c.id, decisions.c.event_id):
            row = conn.execute(select(decisions).where(decisions.c.tenant_id == tenant, col == key)).first()
            if row is not None:
                return _row_dict(row, conn)
    return None


def _encode_cursor(ts: int, decision_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([ts, decision_id])).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        ts, decision_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(ts), str(decision_id)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc


def _filters(tenant: str, since: int | None, until: int | None, outcome: str | Sequence[str] | None,
             account: str | None, campaign: str | None, kind: str | Sequence[str] | None) -> list[Any]:
    c = decisions.c
    where: list[Any] = [c.tenant_id == tenant]
    if since is not None:
        where.append(c.ts >= since)
    if until is not None:
        where.append(c.ts < until)
    for col, value in ((c.outcome, outcome), (c.kind, kind)):
        if isinstance(value, str):
            where.append(col == value)
        elif value is not None:
            where.append(col.in_([str(v) for v in value]))
    if account is not None:
        where.append(c.account_id == account)
    if campaign is not None:
        where.append(c.campaign_id == campaign)
    return where


def list_decisions(db: Database, tenant: str = DEFAULT_TENANT, *, since: int | None = None,
                   until: int | None = None, outcome: str | Sequence[str] | None = None,
                   account: str | None = None, campaign: str | None = None,
                   kind: str | Sequence[str] | None = None, limit: int = 100,
                   cursor: str | None = None) -> DecisionPage:
    """Decisions matching the filters, newest first (``since`` inclusive, ``until`` exclusive, epoch ms)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    c = decisions.c
    where = _filters(tenant, since, until, outcome, account, campaign, kind)
    if cursor:
        ts, decision_id = _decode_cursor(cursor)
        where.append(or_(c.ts < ts, and_(c.ts == ts, c.id < decision_id)))
    query = select(decisions).where(*where).order_by(c.ts.desc(), c.id.desc()).limit(limit + 1)
    with db.connect() as conn:
        rows = [_row_dict(r, conn) for r in conn.execute(query)]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1]["ts"], rows[-1]["id"])
    return DecisionPage(rows, next_cursor)


def iter_decisions(db: Database, tenant: str = DEFAULT_TENANT, since: int | None = None,
                   until: int | None = None, *, outcome: str | Sequence[str] | None = None,
                   kind: str | Sequence[str] | None = None, campaign: str | None = None,
                   yield_per: int = 2000) -> Iterator[dict[str, Any]]:
    """Stream decisions oldest first without loading them all (for gangs, training, backtests)."""
    c = decisions.c
    where = _filters(tenant, since, until, outcome, None, campaign, kind)
    query = select(decisions).where(*where).order_by(c.ts, c.id)
    with db.connect() as conn:
        result = conn.execution_options(yield_per=yield_per).execute(query)
        for row in result:
            out = dict(row._mapping)
            out["reasons"] = expand_reasons(out["reasons"])
            try:
                out["features"] = expand_features(out["features"])
            except ValueError:  # a set this process has not seen: read it on a connection of its own
                with db.connect() as other:
                    out["features"] = expand_features(out["features"], other)
            yield out
