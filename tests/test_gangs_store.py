"""Gang runs in storage, the ``woolguard gangs`` commands on a simulated campaign, and the service's engines
picking up the newest run (gang_score / gang_size) and a gang put on the block list."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from test_api import settings_for
from woolguard.api.service import DecisionService
from woolguard.api.testing import event
from woolguard.cli import app
from woolguard.events import Account, Device, Event, EventKind, event_from_dict
from woolguard.gangs import LinkBuffer, detect_buffer
from woolguard.storage import open_database
from woolguard.storage.database import _alembic_config
from woolguard.storage.gangs import (
    account_gang_map,
    get_gang,
    latest_gangs,
    latest_run,
    latest_run_ids,
    list_gang_members,
    run_gangs,
    save_gang_run,
)
from woolguard.storage.lists import list_entries

T0 = 1_800_000_000_000
runner = CliRunner()


def rack_events(prefix: str = "r", n_rack: int = 12) -> list[Event]:
    """200 genuine users on their own phones, and a rack of identical phones claiming in the same minute."""
    out = []
    for u in range(200):
        for k in range(2):
            out.append(Event(event_id=f"g{u}-{k}", kind=EventKind.CLAIM, ts=T0 + u * 400_000 + k * 7_000, value=1.0,
                             account=Account(id=f"g{u}"),
                             device=Device(id=f"dg{u}", model=f"M{u % 30}", os="android", os_version="13")))
    for r in range(2):
        for u in range(n_rack):
            out.append(Event(event_id=f"{prefix}{r}-{u}", kind=EventKind.CLAIM,
                             ts=T0 + 40_000_000 + r * 3_600_000 + u * 1000, value=2.0,
                             account=Account(id=f"{prefix}{u}"),
                             device=Device(id=f"{prefix}d{u}", model="RACK1", os="android", os_version="9",
                                           app_version="1")))
    return sorted(out, key=lambda e: e.ts)


def rack_buffer(prefix: str = "r") -> LinkBuffer:
    return LinkBuffer().extend(rack_events(prefix))


def test_one_migration_head() -> None:
    assert len(ScriptDirectory.from_config(_alembic_config()).get_heads()) == 1


def test_save_read_isolate_and_newest_run_in_force(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'g.db'}")
    found = detect_buffer(rack_buffer())
    assert found.gangs
    run1 = save_gang_run(db, found, tenant="acme", events=1, source="test")
    gangs = latest_gangs(db, "acme")
    assert [g["run_id"] for g in gangs] == [run1] * len(found.gangs)
    top = gangs[0]
    assert top["rank"] == 0 and top["first_ts"] >= T0 and top["first_ts"] % 1000 == 0
    assert top["shared_attributes"][0]["members"] >= 2 and top["timeline"][0]["ts"] >= T0
    g = get_gang(db, "acme", top["id"])
    assert g is not None and {m["account_id"] for m in g["members"]} >= {f"r{u}" for u in range(12)}
    assert g["money"] == pytest.approx(2.0 * 24)
    amap = account_gang_map(db, "acme")
    assert amap == found.engine_map()
    assert amap["r0"][0] >= 50 and amap["r0"][1] >= 12
    # another tenant sees nothing of it
    assert get_gang(db, "zeta", top["id"]) is None
    assert latest_gangs(db, "zeta") == [] and account_gang_map(db, "zeta") == {}
    assert list_gang_members(db, "zeta", top["id"], "block") is None
    assert list_entries(db, "zeta") == []
    # a newer run is the one in force
    run2 = save_gang_run(db, detect_buffer(rack_buffer("s")), tenant="acme")
    assert latest_run(db, "acme")["id"] == run2 == latest_run_ids(db)["acme"]
    amap2 = account_gang_map(db, "acme")
    assert "s0" in amap2 and "r0" not in amap2
    assert account_gang_map(db, "acme", run1) == amap  # older runs stay readable
    with pytest.raises(ValueError):
        list_gang_members(db, "acme", top["id"], "allow")
    ids = list_gang_members(db, "acme", top["id"], "review", ttl_ms=3_600_000, now_ms=T0)
    rows = list_entries(db, "acme", list_kind="review", now_ms=T0)
    assert len(ids) == len(rows) == top["size"]
    assert {r["reason"] for r in rows} == {f"gang {top['id']}"} and {r["expires_at"] for r in rows} == {T0 + 3_600_000}
    db.close()


def test_run_gangs_reads_the_tenants_log_window(tmp_path: Path) -> None:
    from woolguard.engine import Engine
    from woolguard.storage import DecisionLog

    db = open_database(f"sqlite:///{tmp_path / 'g.db'}")
    engine = Engine(tenant="acme")
    with DecisionLog(db, tenant="acme") as dlog:
        for i, ev in enumerate(rack_events()):
            dlog.append(engine.normalise(ev), engine.decide(ev))
            assert i < 1000
    run = run_gangs(db, "acme", source="test")
    assert run["events"] == len(rack_events()) and run["gangs"] >= 1 and run["members"] >= 12
    assert "r0" in account_gang_map(db, "acme")
    assert run_gangs(db, "zeta")["events"] == 0  # another tenant's log is not read
    late = run_gangs(db, "acme", since_ms=T0 + 50_000_000)  # after the rack: nothing to find
    assert late["gangs"] == 0 and late["since_ms"] == T0 + 50_000_000
    assert account_gang_map(db, "acme") == {}
    db.close()


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    result = runner.invoke(app, ["demo", "--seed", "3", "--scale", "0.05", "--db", url])
    assert result.exit_code == 0, result.output
    return url


def test_cli_run_list_show_list_members_then_rejected(demo_url: str, tmp_path: Path) -> None:
    r = runner.invoke(app, ["gangs", "list", "--db", demo_url])
    assert r.exit_code == 1 and "no gang run yet" in r.output
    r = runner.invoke(app, ["gangs", "run", "--db", demo_url])
    assert r.exit_code == 0, r.output
    assert "gangs of run 1" in r.output and "lockstep" in r.output
    r = runner.invoke(app, ["gangs", "list", "--db", demo_url, "--json"])
    listed = json.loads(r.output)
    assert listed["run"]["id"] == 1 and listed["run"]["events"] > 5000
    gangs = listed["gangs"]
    assert len(gangs) >= 5 and {g["detector"] for g in gangs} >= {"lockstep", "invite_hub", "community"}
    top = gangs[0]
    # the simulator's labels: the strongest gangs are fraud rings, not genuine users
    db = open_database(demo_url)
    with db.connect() as conn:
        from sqlalchemy import text

        truth = dict(conn.execute(text("SELECT account_id, truth FROM decisions")).all())
    members = [m["account_id"] for m in get_gang(db, "default", top["id"])["members"]]
    assert sum(truth[m] != "genuine" for m in members) >= 0.9 * len(members)

    r = runner.invoke(app, ["gangs", "show", str(top["id"]), "--db", demo_url])
    assert r.exit_code == 0, r.output
    for word in ("shared attributes", "members", "timeline", members[0], "money"):
        assert word in r.output
    assert runner.invoke(app, ["gangs", "show", "99999", "--db", demo_url]).exit_code == 1
    assert runner.invoke(app, ["gangs", "show", str(top["id"]), "--db", demo_url, "--tenant", "zeta"]).exit_code == 1
    r = runner.invoke(app, ["gangs", "list-members", str(top["id"]), "--to", "allow", "--db", demo_url])
    assert r.exit_code == 2
    r = runner.invoke(app, ["gangs", "list-members", str(top["id"]), "--to", "block", "--ttl", "7d", "--db", demo_url])
    assert r.exit_code == 0, r.output
    assert f"{len(members)} account(s) of gang {top['id']} on the block list" in r.output
    now = int(time.time() * 1000)
    rows = list_entries(db, "default", list_kind="block")
    assert {r["value"] for r in rows} == set(members)
    assert {r["reason"] for r in rows} == {f"gang {top['id']}"}
    assert all(now + 7 * 86_400_000 - 60_000 < r["expires_at"] <= now + 7 * 86_400_000 for r in rows)
    db.close()

    # the service: the poll loads the newest run into the engine; a member's next event is rejected
    service = DecisionService(settings_for(tmp_path, database_url=demo_url))
    try:
        rt = service.runtime("default")
        assert rt.engine.gangs == {}
        service.poll_once()
        assert rt.gang_run == 1
        expected = {m["account_id"]: (m["gang_score"], m["gang_size"]) for m in listed_members(demo_url, top["id"])}
        assert {a: rt.engine.gangs[a] for a in expected} == expected
        assert rt.engine.gangs[members[0]][0] >= 50
        d = service.decide("default", event_from_dict(event(1, event_id="next-1", ts=now,
                                                            account={"id": members[0]})))
        assert d.outcome == "reject"
        assert any(x.code.startswith("list") or "list" in x.rule for x in d.reasons)
        genuine = next(a for a, t in truth.items() if t == "genuine" and a not in rt.engine.gangs)
        d2 = service.decide("default", event_from_dict(event(2, event_id="next-2", ts=now, account={"id": genuine})))
        assert d2.outcome != "reject"
        assert d.features["gang_score"] >= 50
    finally:
        service.close()


def listed_members(url: str, gang_id: int) -> list[dict]:
    db = open_database(url)
    try:
        return get_gang(db, "default", gang_id)["members"]
    finally:
        db.close()
