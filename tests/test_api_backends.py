"""The service on real PostgreSQL and Redis: equivalence with the in-process engine through 1 and 4 workers,
idempotency across workers, and failure behaviour when Redis or PostgreSQL goes away and comes back.

Failure tests never stop the shared servers: Redis failures use a private ``redis-server`` on a free port,
PostgreSQL failures a TCP proxy between the service and the real server, which the test cuts and restores.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from test_api import CLOSED_POLICY, check_reasons_stored_compact_and_served_whole, settings_for
from woolguard.api import Settings, create_app
from woolguard.api.keys import create_key, create_tenant
from woolguard.api.testing import CuttableProxy, PrivateRedis, event, tenant_with_key
from woolguard.storage import open_database
from woolguard.storage.schema import decisions

N_EVENTS = 160


def _apps(n: int, settings: Settings) -> list[TestClient]:
    return [TestClient(create_app(Settings(**vars(settings)))) for _ in range(n)]


def _essence(d: dict) -> tuple:
    return (d["event_id"], d["level"], d["outcome"], d["score"], d.get("challenge"), d.get("degraded"),
            tuple((r["code"], r["rule"], tuple(sorted(r.get("values", {}).items()))) for r in d["reasons"]))


def _run(clients: list[TestClient], headers: dict[str, str], events: list[dict]) -> list[tuple]:
    out = []
    for i, ev in enumerate(events):
        r = clients[i % len(clients)].post("/v1/events", json=ev, headers=headers)
        assert r.status_code == 200, r.text
        out.append(_essence(r.json()))
    return out


@pytest.mark.postgres
@pytest.mark.redis
def test_same_decisions_in_process_and_on_redis_1_and_4_workers(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    events = [event(i) for i in range(N_EVENTS)]
    events += [event(i) for i in (3, 50, 77)]  # retries, in the middle of the windows' life
    mem = create_app(settings_for(tmp_path))
    with TestClient(mem) as c:
        reference = _run([c], tenant_with_key(mem.state.service.db, "acme"), events)
    settings = Settings(database_url=pg_url, redis_url=redis_url, spill_dir=str(tmp_path / "spill"),
                        reload_interval_s=0.2, log_flush_s=0.05, redis_timeout_s=1.0)
    db = open_database(pg_url)
    one_h = tenant_with_key(db, "one")
    four_h = tenant_with_key(db, "four")
    db.close()
    clients = _apps(4, settings)
    for c in clients:
        c.__enter__()
    try:
        assert _run(clients[:1], one_h, events) == reference
        assert _run(clients, four_h, events) == reference  # round robin over 4 workers
        svc = clients[0].app.state.service
        svc.dlog.flush()
        for c in clients:
            c.app.state.service.dlog.flush()
        with svc.db.connect() as conn:
            query = select(decisions.c.tenant_id, func.count()).group_by(decisions.c.tenant_id)
            counts = dict(conn.execute(query).all())
        assert counts == {"one": N_EVENTS, "four": N_EVENTS}  # retries logged once
    finally:
        for c in clients:
            c.__exit__(None, None, None)


@pytest.mark.postgres
def test_reasons_stored_compact_and_served_whole_on_postgres(tmp_path: Path, pg_url: str) -> None:
    app = create_app(settings_for(tmp_path, database_url=pg_url))
    with TestClient(app) as c:
        c.headers.update(tenant_with_key(app.state.service.db, "acme"))
        check_reasons_stored_compact_and_served_whole(c)


@pytest.mark.postgres
@pytest.mark.redis
def test_retry_on_another_worker_returns_first_decision_counted_once(tmp_path: Path, pg_url: str,
                                                                      redis_url: str) -> None:
    settings = Settings(database_url=pg_url, redis_url=redis_url, spill_dir=str(tmp_path), log_flush_s=0.05,
                        redis_timeout_s=1.0)
    a, b = _apps(2, settings)
    with a, b:
        h = tenant_with_key(a.app.state.service.db, "acme")
        first = a.post("/v1/events", json=event(1), headers=h).json()
        assert b.post("/v1/events", json=event(1), headers=h).json() == first
        assert a.post("/v1/events", json=event(1), headers=h).json() == first
        b.post("/v1/events", json=event(12), headers=h)  # same device as e1
        feats = b.get("/v1/decisions/e12", headers=h).json()["features"]
        assert feats["dev_payouts_10m"] == 2
        # a retry that races the first decision waits for it instead of deciding twice
        svc_b = b.app.state.service
        svc_b.redis.set(svc_b.idem_key("acme", "e500"), b"")
        r = b.post("/v1/events", json=event(500), headers=h)
        assert r.status_code == 409 and r.headers["Retry-After"]


def test_redis_down_fail_open_and_closed_then_recover(tmp_path: Path, private_redis: PrivateRedis) -> None:
    s = settings_for(tmp_path, redis_url=private_redis.url, breaker_s=0.3, redis_timeout_s=0.05)
    app = create_app(s)
    with TestClient(app) as c:
        db = app.state.service.db
        open_h, closed_h = tenant_with_key(db, "shop"), tenant_with_key(db, "bank")
        c.post("/v1/policies", json={"body": CLOSED_POLICY, "activate": True}, headers=closed_h)
        c.post("/v1/lists", json={"list": "block", "entity": "account", "value": "acct7"}, headers=open_h)
        assert c.post("/v1/events", json=event(1), headers=open_h).json().get("degraded") is None
        assert c.post("/v1/events", json=event(1), headers=closed_h).json().get("degraded") is None

        private_redis.stop()
        t0 = time.perf_counter()
        d = c.post("/v1/events", json=event(2), headers=open_h).json()
        assert time.perf_counter() - t0 < 0.5  # within the time budget
        assert d["degraded"].startswith("redis") and d["outcome"] == "pass" and d["level"] == 0
        assert d["reasons"][0]["code"] == "engine.degraded"
        d = c.post("/v1/events", json=event(3), headers=closed_h).json()
        assert d["degraded"] and d["outcome"] == "review" and d["level"] == 3
        d = c.post("/v1/events", json=event(7), headers=open_h).json()  # lists still apply
        assert d["degraded"] and d["outcome"] == "reject"
        for i in range(10, 40):  # many requests while down: each fast, the worker survives
            assert c.post("/v1/events", json=event(i), headers=open_h).status_code == 200
        again = c.post("/v1/events", json=event(2), headers=open_h).json()
        assert again["decision_id"] == event_decision_id(c, open_h, "e2") and again["degraded"]
        text = c.get("/metrics").text
        assert 'degraded="true"' in text and 'woolguard_dependency_failures_total{dependency="redis"}' in text
        assert c.get("/readyz").json()["redis"] == "down"
        logged = c.get("/v1/decisions/e3", headers=closed_h).json()
        assert logged["degraded"] and logged["outcome"] == "review"

        private_redis.start()  # same port: the service reconnects by itself
        deadline = time.monotonic() + 5
        i = 100
        while c.post("/v1/events", json=event(i), headers=open_h).json().get("degraded"):
            assert time.monotonic() < deadline, "never recovered"
            time.sleep(0.1)
            i += 1
        assert c.get("/readyz").json()["redis"] == "up"


def event_decision_id(c: TestClient, headers: dict[str, str], event_id: str) -> str:
    return c.get(f"/v1/decisions/{event_id}", headers=headers).json()["decision_id"]


@pytest.mark.postgres
def test_postgres_cut_off_keeps_deciding_and_loses_no_log_record(tmp_path: Path, pg_url: str) -> None:
    parts = urlsplit(pg_url)
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    via_proxy = pg_url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}")
    s = settings_for(tmp_path, database_url=via_proxy, key_cache_s=0.2, reload_interval_s=0.2)
    app = create_app(s)
    try:
        with TestClient(app) as c:
            svc = app.state.service
            h = tenant_with_key(svc.db, "acme")
            late_key = create_key(svc.db, "acme")  # never used before the cut: not cached
            for i in range(20):
                assert c.post("/v1/events", json=event(i), headers=h).status_code == 200
            proxy.cut()
            time.sleep(0.3)
            for i in range(20, 80):
                r = c.post("/v1/events", json=event(i), headers=h)
                assert r.status_code == 200 and r.json().get("degraded") is None  # decided in full
            assert c.get("/v1/decisions", headers=h).status_code == 503
            assert c.post("/v1/events", json=event(90), headers={"X-Api-Key": late_key}).status_code == 503
            deadline = time.monotonic() + 5
            while c.get("/readyz").json()["database"] != "down":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert svc.dlog.pending() > 0
            proxy.restore()
            deadline = time.monotonic() + 20
            while svc.dlog.pending() or c.get("/readyz").json()["database"] != "up":
                assert time.monotonic() < deadline, "decision log never caught up"
                time.sleep(0.2)
            assert c.post("/v1/events", json=event(90), headers={"X-Api-Key": late_key}).status_code == 200
        direct = open_database(pg_url)
        with direct.connect() as conn:
            n = conn.execute(select(func.count()).select_from(decisions)).scalar()
        direct.close()
        assert n == 81  # nothing lost, nothing doubled
    finally:
        proxy.close()


def test_unknown_tenant_db_down_is_503_not_500(tmp_path: Path) -> None:
    s = settings_for(tmp_path)
    app = create_app(s)
    with TestClient(app) as c:
        create_tenant(app.state.service.db, "acme")
        key = create_key(app.state.service.db, "acme")
        app.state.service.keys.db = open_database("postgresql://nobody@127.0.0.1:1/none", migrate=False)
        assert c.post("/v1/events", json=event(1), headers={"X-Api-Key": key}).status_code == 503


@pytest.mark.redis
@pytest.mark.parametrize("functions", [True, False])
def test_service_reloads_the_feature_code_mid_run_with_the_same_decisions(tmp_path: Path, functions: bool,
                                                                          request: pytest.FixtureRequest) -> None:
    """The hot path (the pipelined FCALL) after Redis lost the feature code mid-run (FUNCTION FLUSH; on a Redis
    without functions, EVALSHA and SCRIPT FLUSH): every decision is the in-process engine's, none degraded."""
    server = request.getfixturevalue("private_redis" if functions else "private_redis_without_functions")
    events = [event(i) for i in range(60)]
    (tmp_path / "mem").mkdir()
    (tmp_path / "red").mkdir()
    mem = create_app(settings_for(tmp_path / "mem"))
    with TestClient(mem) as c:
        reference = _run([c], tenant_with_key(mem.state.service.db, "acme"), events)
    app = create_app(settings_for(tmp_path / "red", redis_url=server.url, redis_timeout_s=1.0))
    admin = redis.Redis.from_url(server.url)
    flush = ("FUNCTION", "FLUSH") if functions else ("SCRIPT", "FLUSH")
    with TestClient(app) as c:
        h = tenant_with_key(app.state.service.db, "acme")
        got = []
        for i in range(0, len(events), 10):
            admin.execute_command(*flush)
            got += _run([c], h, events[i:i + 10])
    assert got == reference
    assert all(d[5] is None for d in got)  # not degraded
    stats = admin.info("commandstats")
    if functions:
        assert stats["cmdstat_function|load"]["calls"] == 6  # after each flush
        assert stats["cmdstat_fcall"]["calls"] == 60 + 6 and "cmdstat_evalsha" not in stats
    else:
        assert stats["cmdstat_script|load"]["calls"] == 6
        assert stats["cmdstat_evalsha"]["calls"] == 60 + 5  # the first call was an FCALL (refused)
