"""Storage: migrations, the decision log (batches, idempotency, outages), lists, labels, policies."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
from pathlib import Path

import msgspec
import orjson
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, text

from woolguard.api.service import decision_from_row
from woolguard.events import Account, Challenge, Decision, Device, Event, EventKind, Outcome, Reason
from woolguard.reasons import CODES
from woolguard.storage import DecisionLog, lists, open_database, policies
from woolguard.storage import labels as labels_repo
from woolguard.storage.database import (
    DEFAULT_URL,
    Database,
    downgrade,
    head_revision,
    make_engine,
    normalise_url,
    upgrade,
)
from woolguard.storage.decision_log import (
    compact_reasons,
    expand_reasons,
    get_decision,
    iter_decisions,
    list_decisions,
)
from woolguard.storage.schema import decisions, metadata

T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z
TABLES = {"decisions", "labels", "list_entries", "policies", "tenants", "api_keys"}


def make_pair(i: int, *, event_id: str | None = None, decision_id: str | None = None,
              account: str | None = None, campaign: str = "c1",
              outcome: Outcome = Outcome.PASS) -> tuple[Event, Decision]:
    event = Event(event_id=event_id or f"e{i}", kind=EventKind.CLAIM if i % 2 else EventKind.LOGIN,
                  ts=T0 + i * 1000, account=Account(id=account or f"a{i % 7}", tier=1), campaign_id=campaign,
                  device=Device(id=f"d{i % 5}", emulator=i % 3 == 0), ip=f"10.0.0.{i % 250}",
                  phone="13800138000", phone_prefix="1380013", truth="genuine" if i % 4 else "farm")
    decision = Decision(decision_id=decision_id or f"dec{i}", event_id=event.event_id, level=i % 5,
                        outcome=outcome, score=i % 100, challenge=Challenge.SMS if i % 2 else None,
                        policy="default@3", degraded="redis" if i == 3 else None,
                        reasons=[Reason(code="device.emulator", category="device", rule="R_EMU", score=40,
                                        level=2, values={"emulator": True, "n": i},
                                        text_en="Runs on an emulator", text_zh="运行在模拟器上")],
                        features={"acct_claims_1h": i, "ip24_accounts_1h": 2.5, "first_seen": True})
    return event, decision


def taxonomy_reason(code: str, rule: str, **kw: object) -> Reason:
    """A reason as the engine makes it: category and texts from the taxonomy."""
    c = CODES[code]
    return Reason(code=code, category=c.category.value, rule=rule, text_en=c.en, text_zh=c.zh, **kw)


def reasons_pair(i: int, **kw: object) -> tuple[Event, Decision]:
    """make_pair with taxonomy reasons (stored compact) and three that are stored whole."""
    event, decision = make_pair(i, **kw)
    reasons = [
        taxonomy_reason("device.emulator", "R_EMU", score=40, level=2, values={"emulator": True, "n": i}),
        taxonomy_reason("behaviour.velocity.ip", "R_VEL", values={"ip_payouts_1h": i}, shadow=True),
        taxonomy_reason("gang.member", "R_GANG"),
        # an unknown code, a known code with another text, a known code without texts: stored as they are
        Reason(code="brand.watch", category="brand", rule="R_BRAND", score=5, text_en="Brand's own",
               text_zh="品牌自定义"),
        Reason(code="device.rooted", category="device", rule="R_ROOT", text_en="Rooted (edited)",
               text_zh=CODES["device.rooted"].zh),
        Reason(code="device.hooked", category="device", rule="R_HOOK"),
    ]
    return event, msgspec.structs.replace(decision, reasons=reasons)


def compact_of(i: int) -> list[dict]:
    """What reasons_pair(i)'s reasons look like in the ``reasons`` column."""
    whole = msgspec.to_builtins(reasons_pair(i)[1].reasons[3:])
    return [{"code": "device.emulator", "rule": "R_EMU", "score": 40, "level": 2, "values": {"emulator": True, "n": i}},
            {"code": "behaviour.velocity.ip", "rule": "R_VEL", "values": {"ip_payouts_1h": i}, "shadow": True},
            {"code": "gang.member", "rule": "R_GANG"}, *whole]


def stored_reasons(db: Database) -> dict[str, list]:
    """decision id -> the ``reasons`` column as stored (no reader in between)."""
    with db.connect() as conn:
        rows = conn.execute(select(decisions.c.id, decisions.c.reasons)).all()
    return {i: (orjson.loads(r) if isinstance(r, str | bytes) else r) for i, r in rows}


def same_reasons(got: list[dict], decision: Decision) -> bool:
    """Equal to the decision's reasons as the readers gave them before compact reasons, key order included."""
    want = msgspec.to_builtins(decision.reasons)
    return got == want and [list(r) for r in got] == [list(r) for r in want]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'wg.db'}"


@pytest.fixture
def db(url: str):
    database = open_database(url)
    yield database
    database.close()


def count(db: Database, table=decisions) -> int:
    with db.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def unreachable(url: str, tmp_path: Path) -> Database:
    """A Database whose every connection fails, standing for a server that is down."""
    if url.startswith("sqlite"):
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        return Database(create_engine(f"sqlite:///{blocker / 'wg.db'}"), "sqlite:///down")
    return Database(make_engine("postgresql://postgres@127.0.0.1:1/test"), "postgresql://down")


# ---------------------------------------------------------------------------------------------------
# URLs and migrations


def test_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    monkeypatch.delenv("WOOLGUARD_DATABASE_URL", raising=False)
    assert normalise_url(None) == DEFAULT_URL == "sqlite:///woolguard.db"
    monkeypatch.setenv("WOOLGUARD_DATABASE_URL", "sqlite:///elsewhere.db")
    assert normalise_url(None) == "sqlite:///elsewhere.db"


def test_sqlite_settings(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'a.db'}")
    with db.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    db.close()


def test_open_creates_schema_at_head(db: Database) -> None:
    assert db.revision() == head_revision() is not None
    assert set(inspect(db.engine).get_table_names()) >= TABLES
    with db.connect() as conn:
        assert conn.execute(text("SELECT id FROM tenants")).scalars().all() == ["default"]


def test_models_match_the_migrations(db: Database) -> None:
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_upgrade_on_populated_db_keeps_rows_and_base_to_head_works(url: str, db: Database) -> None:
    with DecisionLog(db, batch_size=10) as dlog:
        for i in range(25):
            dlog.append(*make_pair(i))
    db2 = open_database(url)  # again: a no-op that keeps every row
    assert db2.revision() == head_revision()
    assert count(db2) == 25
    db2.close()
    db.close()
    # from an empty (base) database to head, through the same revisions a fresh install runs
    downgrade(db.engine, "base")
    assert db.revision() is None
    assert not TABLES & set(inspect(db.engine).get_table_names())
    upgrade(db.engine)
    assert db.revision() == head_revision()
    assert count(db) == 0


def _read_then_write(db: Database, worker: int, n: int, errors: list[BaseException]) -> None:
    from woolguard.storage.schema import tenants

    for i in range(n):
        try:
            with db.begin() as conn:
                conn.execute(select(func.count()).select_from(tenants)).scalar()  # a read first, then a write
                time.sleep(0.001)  # the other worker commits meanwhile
                conn.execute(tenants.insert().values(id=f"w{worker}-{i}", name=""))
        except Exception as exc:  # collected and asserted on
            errors.append(exc)


def test_sqlite_write_transactions_wait_for_each_other_instead_of_failing(tmp_path: Path) -> None:
    """Two workers' read-then-write transactions on one SQLite file: a deferred BEGIN would fail at once with
    'database is locked' (SQLITE_BUSY_SNAPSHOT) when the other committed between the read and the write."""
    import threading

    dbs = [open_database(f"sqlite:///{tmp_path / 'w.db'}") for _ in range(2)]
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_read_then_write, args=(dbs[k], k, 40, errors)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    from woolguard.storage.schema import tenants

    assert count(dbs[0], tenants) == 80 + 1  # and the default tenant
    for d in dbs:
        d.close()


def _open_and_report(url: str) -> str | None:
    database = open_database(url)
    try:
        return database.revision()
    finally:
        database.close()


def test_concurrent_open_of_a_new_database(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        revisions = list(pool.map(_open_and_report, [url] * 4))
    assert revisions == [head_revision()] * 4
    db = open_database(url)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM tenants")).scalar() == 1
    db.close()


# ---------------------------------------------------------------------------------------------------
# The decision log


def test_batched_append_reads_back_equal(db: Database, tmp_path: Path) -> None:
    pairs = [make_pair(i) for i in range(1234)]
    with DecisionLog(db, batch_size=100, spill_dir=tmp_path) as dlog:
        for event, decision in pairs[:250]:
            dlog.append(event, decision)
        assert count(db) == 200  # two full batches written, 50 buffered
        assert dlog.pending() == 50
        for event, decision in pairs[250:]:
            dlog.append(event, decision)
    assert count(db) == 1234 and dlog.pending() == 0

    event, decision = pairs[3]
    row = get_decision(db, "default", "e3")
    assert row == get_decision(db, "default", "dec3")
    assert row["id"] == "dec3" and row["event_id"] == "e3" and row["tenant_id"] == "default"
    assert (row["ts"], row["kind"], row["account_id"], row["device_id"], row["ip"], row["campaign_id"]) == (
        event.ts, "claim", "a3", "d3", "10.0.0.3", "c1")
    assert (row["level"], row["outcome"], row["score"], row["challenge"], row["policy"], row["degraded"]) == (
        3, "pass", 3, "sms", "default@3", "redis")
    assert row["reasons"] == msgspec.to_builtins(decision.reasons)
    assert row["features"] == decision.features
    assert row["truth"] == "genuine"
    # the stored event is the normalised one: no clear phone, no ground truth
    stored = msgspec.to_builtins(msgspec.structs.replace(event, phone=None, truth=None))
    assert row["event"] == stored and "phone" not in row["event"] and "truth" not in row["event"]
    assert row["created_at"] is not None
    assert get_decision(db, "other-tenant", "e3") is None
    assert get_decision(db, "default", "nope") is None


def test_features_are_stored_compact_with_their_names_once(db: Database, tmp_path: Path) -> None:
    """A row holds [feature set id, values...]; the names are in feature_sets once; old object rows still read."""
    from woolguard.storage import decision_log as dl
    from woolguard.storage.schema import feature_sets

    pairs = [make_pair(i) for i in range(30)]
    other = Decision(decision_id="dec-x", event_id="e-x", level=0, outcome=Outcome.PASS, score=0, reasons=[],
                     features={"b_first": 2, "a_then": True})  # another feature list: another set
    with DecisionLog(db, batch_size=7, spill_dir=tmp_path) as dlog:
        for event, decision in pairs:
            dlog.append(event, decision)
        dlog.append(msgspec.structs.replace(pairs[0][0], event_id="e-x"), other)
    with db.connect() as conn:
        stored = conn.execute(select(decisions.c.features).where(decisions.c.id == "dec3")).scalar()
        sets = dict(conn.execute(select(feature_sets.c.id, feature_sets.c.names)).all())
        # an analyst's row written before compact features: an object, read as it is
        conn.execute(decisions.update().where(decisions.c.id == "dec4").values(features={"old": 1}))
        conn.commit()
    assert isinstance(stored, list) and stored[1:] == list(pairs[3][1].features.values())
    assert len(sets) == 2 and sets[stored[0]] == list(pairs[3][1].features)
    dl._SET_NAMES.clear()  # another process: the names come from the database
    assert get_decision(db, "default", "dec3")["features"] == pairs[3][1].features
    assert get_decision(db, "default", "dec-x")["features"] == {"b_first": 2, "a_then": True}
    assert get_decision(db, "default", "dec4")["features"] == {"old": 1}
    dl._SET_NAMES.clear()
    assert [r["features"] for r in iter_decisions(db, "default") if r["id"] == "dec5"] == [pairs[5][1].features]


def test_reasons_are_stored_without_taxonomy_texts_and_read_back_whole(db: Database, tmp_path: Path) -> None:
    """A reason whose category and texts are the taxonomy's for its code is stored without them; every reader
    gives them back. On PostgreSQL this goes through COPY, COPY's slow line (a tab in a value) and the INSERT
    that takes a batch COPY refused (a duplicate event in it); on SQLite through INSERT."""
    pairs = [reasons_pair(i) for i in range(20)]
    pairs[5] = reasons_pair(5, account="tab\there")
    pairs[13] = reasons_pair(13, event_id="e12", decision_id="dec13")  # a duplicate: the batch is INSERTed
    with DecisionLog(db, batch_size=7, spill_dir=tmp_path) as dlog:
        for event, decision in pairs:
            dlog.append(event, decision)
    stored = stored_reasons(db)
    assert len(stored) == 19 and "dec13" not in stored
    for i in (0, 5, 12, 19):
        assert stored[f"dec{i}"] == compact_of(i)
    raw = orjson.dumps(stored["dec0"]).decode()
    assert raw.count("text_en") == 2 and raw.count('"category"') == 3  # only in the three stored whole
    assert CODES["device.emulator"].en not in raw and CODES["gang.member"].zh not in raw

    for i in (0, 5, 12, 19):
        decision = pairs[i][1]
        row = get_decision(db, "default", f"e{i}")
        assert same_reasons(row["reasons"], decision)
        assert decision_from_row(row).reasons == decision.reasons  # what the API answers
        assert same_reasons(DecisionLog(db).get_decision(None, f"dec{i}")["reasons"], decision)
    assert row["reasons"][0]["text_zh"] == CODES["device.emulator"].zh and row["reasons"][1]["shadow"] is True
    listed = list_decisions(db, "default", limit=100).items
    streamed = list(iter_decisions(db, "default", yield_per=3))
    assert len(listed) == len(streamed) == 19
    for row in (*listed, *streamed):
        assert same_reasons(row["reasons"], pairs[int(row["id"][3:])][1])


def test_reasons_written_before_compact_reasons_read_back_unchanged(db: Database, tmp_path: Path) -> None:
    """Rows of older versions hold whole reasons (texts, perhaps of an older taxonomy, or none): as they are."""
    with DecisionLog(db, spill_dir=tmp_path) as dlog:
        for i in range(3):
            dlog.append(*reasons_pair(i))
    old = [msgspec.to_builtins(reasons_pair(0)[1].reasons),
           [{"code": "device.emulator", "category": "device", "rule": "R_EMU", "score": 40,
             "text_en": "Emulator (as worded in 2024)", "text_zh": "模拟器（旧）"}],
           [{"code": "device.emulator", "category": "device", "rule": "R_EMU"}]]
    with db.begin() as conn:
        for i, reasons in enumerate(old):
            conn.execute(decisions.update().where(decisions.c.id == f"dec{i}").values(reasons=reasons))
    assert stored_reasons(db)["dec0"] == old[0]  # texts in the column, as before
    for i, reasons in enumerate(old):
        assert get_decision(db, "default", f"dec{i}")["reasons"] == reasons
        assert [r["reasons"] for r in iter_decisions(db) if r["id"] == f"dec{i}"] == [reasons]
    assert decision_from_row(get_decision(db, "default", "dec2")).reasons[0].text_en == ""


def test_spilled_rows_are_stored_compact(url: str, db: Database, tmp_path: Path) -> None:
    """Spill files hold whole reasons (readable without the taxonomy); written later, they are stored compact."""
    dlog = DecisionLog(unreachable(url, tmp_path), batch_size=1000, spill_dir=tmp_path)
    for i in range(12):
        dlog.append(*reasons_pair(i, account="tab\there" if i == 4 else None))
    dlog.close()
    (spill,) = tmp_path.glob("woolguard-spill-*.jsonl")
    first = orjson.loads(spill.read_bytes().splitlines()[0])
    assert first["reasons"] == msgspec.to_builtins(reasons_pair(0)[1].reasons)
    with DecisionLog(db, batch_size=5, spill_dir=tmp_path) as later:
        assert later.flush() == 12
    stored = stored_reasons(db)
    assert all(stored[f"dec{i}"] == compact_of(i) for i in range(12))
    assert all(same_reasons(get_decision(db, "default", f"e{i}")["reasons"], reasons_pair(i)[1]) for i in range(12))


def test_compact_and_expand_reasons() -> None:
    from woolguard.storage.decision_log import StoredReason

    # a field added to Reason must be added to StoredReason (same order, same default), or it would be lost
    kept = [f for f in msgspec.structs.fields(Reason) if f.name not in ("category", "text_en", "text_zh")]
    assert [(f.name, f.default) for f in kept] == [(f.name, f.default) for f in msgspec.structs.fields(StoredReason)]
    _, decision = reasons_pair(7)
    whole = msgspec.to_builtins(decision.reasons)
    compact = msgspec.to_builtins(compact_reasons(decision.reasons))
    assert compact == compact_of(7)
    assert compact_reasons(whole) == compact  # rows from spill files: dicts
    assert msgspec.to_builtins(compact_reasons([*decision.reasons[:2], whole[2]])) == compact[:3]  # a mix
    assert expand_reasons(compact) == whole and expand_reasons(orjson.dumps(compact).decode()) == whole
    assert expand_reasons(whole) == whole and expand_reasons(expand_reasons(compact)) == whole
    assert compact_reasons([]) == [] and expand_reasons([]) == [] and expand_reasons(None) is None
    # a compact reason whose code a later taxonomy dropped: its category is the code's first part, no texts
    assert expand_reasons([{"code": "device.gone", "rule": "R", "score": 3}]) == [
        {"code": "device.gone", "category": "device", "rule": "R", "score": 3}]
    assert msgspec.convert(expand_reasons([{"code": "device.gone", "rule": "R"}]), list[Reason])[0].text_en == ""


@pytest.mark.parametrize("nasty", ["tab\there", "new\nline\r\n", "back\\slash \\N", "引号\"'和 emoji 🐑", "\\."])
def test_values_with_copy_specials_read_back_equal(db: Database, tmp_path: Path, nasty: str) -> None:
    """PostgreSQL takes batches by COPY, whose text format gives tabs, newlines and backslashes a meaning:
    every text and JSON column must come back exactly as it went in, in a batch with ordinary rows."""
    event, decision = make_pair(7, event_id=f"e-{nasty}", account=f"a-{nasty}", campaign=nasty)
    event = msgspec.structs.replace(event, ip=nasty, device=Device(id=nasty, model=nasty))
    decision = msgspec.structs.replace(decision, policy=f"p-{nasty}", degraded=nasty,
                                       features={"f": nasty, nasty: 1}, decision_id=f"d-{nasty}")
    decision.reasons[0].values["x"] = nasty
    with DecisionLog(db, batch_size=10, spill_dir=tmp_path) as dlog:
        dlog.append(*make_pair(1))
        dlog.append(event, decision)
        dlog.append(*make_pair(2))
    assert count(db) == 3
    row = get_decision(db, "default", f"e-{nasty}")
    assert (row["id"], row["account_id"], row["campaign_id"], row["ip"], row["device_id"], row["policy"],
            row["degraded"]) == (f"d-{nasty}", f"a-{nasty}", nasty, nasty, nasty, f"p-{nasty}", nasty)
    assert row["features"] == {"f": nasty, nasty: 1}
    assert row["reasons"][0]["values"]["x"] == nasty
    assert row["event"]["device"]["model"] == nasty and row["event"]["event_id"] == f"e-{nasty}"
    assert get_decision(db, "default", "e2")["features"] == make_pair(2)[1].features


def test_duplicate_event_ids_are_stored_once(db: Database, tmp_path: Path) -> None:
    with DecisionLog(db, batch_size=10, spill_dir=tmp_path) as dlog:
        for i in range(30):
            dlog.append(*make_pair(i))
        # the same events decided again (new decision ids), in the same and in later batches
        for i in range(0, 30, 2):
            dlog.append(*make_pair(i, decision_id=f"again{i}"))
        dlog.append(*make_pair(5))  # and an exact replay
        dlog.append(*make_pair(99, event_id="e1", decision_id="again-in-batch"))
        dlog.append(*make_pair(100))
    assert count(db) == 31
    assert get_decision(db, "default", "e0")["id"] == "dec0"  # the first decision stays
    # another tenant may reuse an event id
    with DecisionLog(db, tenant="brand-b", spill_dir=tmp_path) as dlog:
        dlog.append(*make_pair(0, decision_id="b-dec0"))
    assert count(db) == 32
    assert get_decision(db, "brand-b", "e0")["id"] == "b-dec0"


def test_outage_keeps_records_until_the_database_is_back(url: str, db: Database, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    dlog = DecisionLog(db, batch_size=20, spill_dir=spill, max_pending=50)
    for i in range(10):
        dlog.append(*make_pair(i))
    assert dlog.flush() == 10
    dlog.db = unreachable(url, tmp_path)
    for i in range(10, 130):
        dlog.append(*make_pair(i))
    assert dlog.flush() == 0
    assert dlog.last_error is not None
    assert dlog.pending() == 120
    assert list(spill.glob("woolguard-spill-*.jsonl")), "beyond max_pending rows go to a spill file"
    assert count(db) == 10

    dlog.db = db  # the database is back
    assert dlog.flush() == 120
    assert dlog.pending() == 0 and dlog.last_error is None
    assert not list(spill.glob("woolguard-spill-*"))
    assert count(db) == 130
    assert get_decision(db, "default", "e129")["reasons"][0]["values"] == {"emulator": True, "n": 129}
    dlog.close()


def test_close_during_outage_spills_and_a_later_log_writes_it(url: str, db: Database, tmp_path: Path) -> None:
    dlog = DecisionLog(unreachable(url, tmp_path), batch_size=1000, spill_dir=tmp_path)
    for i in range(40):
        dlog.append(*make_pair(i))
    dlog.close()
    assert len(list(tmp_path.glob("woolguard-spill-*.jsonl"))) == 1
    assert count(db) == 0
    # a restarted process with the same spill directory delivers them
    with DecisionLog(db, spill_dir=tmp_path) as later:
        assert later.pending() == 40
        assert later.flush() == 40
    assert count(db) == 40
    row = get_decision(db, "default", "e8")
    assert row["features"] == make_pair(8)[1].features and row["truth"] == "farm"


def test_background_flushing(db: Database, tmp_path: Path) -> None:
    dlog = DecisionLog(db, batch_size=50, spill_dir=tmp_path)
    dlog.start_background(0.05)
    for i in range(120):
        dlog.append(*make_pair(i))
    deadline = time.monotonic() + 10
    while dlog.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dlog.pending() == 0
    assert count(db) == 120
    dlog.close()


@pytest.mark.postgres
def test_rows_postgres_refuses_are_set_aside_not_blocking(pg_url: str, tmp_path: Path) -> None:
    db = open_database(pg_url)
    with DecisionLog(db, batch_size=10, spill_dir=tmp_path) as dlog:
        for i in range(10):
            dlog.append(*reasons_pair(i, account="bad\x00id" if i == 4 else None))
    assert count(db) == 9
    assert stored_reasons(db)["dec3"] == compact_of(3)  # written row by row: compact too
    assert same_reasons(get_decision(db, "default", "e3")["reasons"], reasons_pair(3)[1])
    rejected = list(tmp_path.glob("woolguard-rejected-*.jsonl"))
    assert len(rejected) == 1 and '"e4"' in rejected[0].read_text()
    assert CODES["device.emulator"].en in rejected[0].read_text()  # set aside whole, texts and all
    assert dlog.pending() == 0
    db.close()


def test_list_and_iterate_decisions(db: Database, tmp_path: Path) -> None:
    with DecisionLog(db, batch_size=64, spill_dir=tmp_path) as dlog:
        for i in range(200):
            dlog.append(*make_pair(i, campaign="c2" if i % 10 == 0 else "c1",
                                   outcome=Outcome.REJECT if i % 4 == 0 else Outcome.PASS))
    page = list_decisions(db, "default", limit=30)
    assert [r["event_id"] for r in page.items] == [f"e{i}" for i in range(199, 169, -1)]
    seen, cursor = [], None
    while True:
        page = list_decisions(db, "default", outcome="reject", limit=7, cursor=cursor)
        seen += [r["event_id"] for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"e{i}" for i in range(196, -1, -4)]
    assert len(seen) == len(set(seen)) == 50
    rows = list_decisions(db, since=T0 + 10_000, until=T0 + 20_000, campaign="c1", kind="claim").items
    assert sorted(r["event_id"] for r in rows) == [f"e{i}" for i in (11, 13, 15, 17, 19)]
    assert {r["account_id"] for r in list_decisions(db, account="a3", limit=500).items} == {"a3"}
    assert list_decisions(db, "other").items == []
    with pytest.raises(ValueError, match="cursor"):
        list_decisions(db, cursor="garbage!")

    streamed = [r["event_id"] for r in iter_decisions(db, "default", T0 + 50_000, T0 + 150_000, yield_per=16)]
    assert streamed == [f"e{i}" for i in range(50, 150)]
    assert sum(1 for _ in DecisionLog(db).iter_decisions()) == 200


# ---------------------------------------------------------------------------------------------------
# Lists, labels, policies


def test_list_entries_expire(db: Database) -> None:
    now = T0
    lists.add_entry(db, "block", "device", "d1", reason="farm", ttl_ms=60_000, now_ms=now, created_by="ops")
    lists.add_entry(db, "block", "ip24", "10.0.0", campaign_id="c1", now_ms=now)
    lists.add_entry(db, "allow", "account", "vip1", expires_at=now + 10, now_ms=now)
    assert {e["value"] for e in lists.list_entries(db, now_ms=now)} == {"d1", "10.0.0", "vip1"}
    assert {e["value"] for e in lists.list_entries(db, now_ms=now + 30_000)} == {"d1", "10.0.0"}
    assert {e["value"] for e in lists.list_entries(db, now_ms=now + 60_000)} == {"10.0.0"}
    assert lists.lookup(db, "device", ["d1", "d2"], now_ms=now + 59_999)[0]["reason"] == "farm"
    assert lists.lookup(db, "device", ["d1"], now_ms=now + 60_000) == []
    # campaign scoping: a campaign sees global entries and its own
    assert lists.lookup(db, "ip24", ["10.0.0"], campaign_id="c1", now_ms=now)[0]["campaign_id"] == "c1"
    assert lists.lookup(db, "ip24", ["10.0.0"], campaign_id="c2", now_ms=now) == []
    assert lists.lookup(db, "ip24", ["10.0.0"], now_ms=now) == []
    # re-adding refreshes the expiry instead of duplicating
    first = lists.add_entry(db, "block", "device", "d1", ttl_ms=60_000, now_ms=now + 120_000)
    again = lists.add_entry(db, "block", "device", "d1", ttl_ms=60_000, now_ms=now + 120_000)
    assert first == again
    assert len(lists.list_entries(db, entity_type="device", now_ms=now + 150_000)) == 1
    assert lists.list_entries(db, tenant="other", now_ms=now) == []
    assert lists.purge_expired(db, now_ms=now + 10**9) == 2  # d1 and vip1
    assert lists.remove_entry(db, "block", "ip24", "10.0.0", campaign_id="c1")
    assert not lists.remove_entry(db, "block", "ip24", "10.0.0", campaign_id="c1")
    with pytest.raises(ValueError, match="list kind"):
        lists.add_entry(db, "deny", "ip", "1.2.3.4")


def test_labels(db: Database) -> None:
    labels_repo.add_label(db, "account", "a1", "fraud", source="review", note="farm", ts=T0)
    labels_repo.add_label(db, "account", "a1", "genuine", source="complaint", ts=T0 + 1)
    labels_repo.add_label(db, "event", "e9", "fraud", ts=T0 + 2)
    assert [r["label"] for r in labels_repo.list_labels(db, target_id="a1")] == ["fraud", "genuine"]
    assert labels_repo.latest_labels(db) == {"a1": "genuine"}
    assert len(labels_repo.list_labels(db, since=T0 + 1)) == 2
    with pytest.raises(ValueError, match="label"):
        labels_repo.add_label(db, "account", "a1", "maybe")


def test_policy_versions_activate_and_rollback(db: Database) -> None:
    v1 = policies.save_policy(db, "default", "rules: v1", activate=True)
    v2 = policies.save_policy(db, "default", "rules: v2")
    assert (v1.version, v2.version, v2.active) == (1, 2, False)
    assert policies.active_policy(db, "default").body == "rules: v1"
    v3 = policies.save_policy(db, "default", "rules: v3", activate=True)
    assert v3.ref == "default@3" and policies.active_policy(db, "default").version == 3
    assert [v.active for v in policies.list_versions(db, "default")] == [False, False, True]
    assert policies.rollback_policy(db, "default").version == 2
    assert policies.rollback_policy(db, "default").version == 1
    with pytest.raises(LookupError, match="first version"):
        policies.rollback_policy(db, "default")
    policies.activate_policy(db, "default", 3)
    assert policies.active_policy(db, "default").body == "rules: v3"
    assert sum(v.active for v in policies.list_versions(db)) == 1
    with pytest.raises(LookupError):
        policies.activate_policy(db, "default", 9)
    assert policies.active_policy(db, "default", tenant="other") is None
    assert policies.save_policy(db, "default", "x", tenant="other").version == 1
