"""``/v1/gangs``: run over the tenant's decision log, read the table, list a gang; tenants never meet."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from fastapi.testclient import TestClient

from test_api import settings_for
from test_gangs_store import rack_events
from woolguard.api import create_app
from woolguard.api.testing import tenant_with_key

RACK = {f"r{u}" for u in range(12)}


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    app = create_app(settings_for(tmp_path))
    with TestClient(app) as c:
        db = app.state.service.db
        yield c, tenant_with_key(db, "acme"), tenant_with_key(db, "zeta")


def _post_traffic(c: TestClient, headers: dict[str, str]) -> int:
    events = [msgspec.to_builtins(e) for e in rack_events()]
    for i in range(0, len(events), 200):
        r = c.post("/v1/events/batch", json={"events": events[i:i + 200]}, headers=headers)
        assert r.status_code == 200, r.text
    return len(events)


def _features(c: TestClient, headers: dict[str, str], ev: dict) -> dict:
    d = c.post("/v1/events", json=ev, headers=headers).json()
    return {**c.get(f"/v1/decisions/{d['decision_id']}", headers=headers).json()["features"], "_outcome": d["outcome"]}


def _claim(i: int, account: str) -> dict:
    return {"event_id": f"next{i}", "kind": "claim", "ts": 1_800_100_000_000 + i, "value": 1.0,
            "account": {"id": account}, "device": {"id": f"fresh{i}", "model": "X1", "os": "android"}}


def test_run_list_show_list_members(two) -> None:
    c, a, _z = two
    assert c.get("/v1/gangs", headers=a).json() == {"run": None, "gangs": []}
    n = _post_traffic(c, a)
    r = c.post("/v1/gangs/run", json={}, headers=a)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["run"]["events"] == n and body["run"]["source"] == "api" and body["run"]["gangs"] == len(body["gangs"])
    gang = next(g for g in body["gangs"] if g["size"] >= 12)
    assert c.get("/v1/gangs", headers=a).json()["gangs"] == body["gangs"]
    assert c.get("/v1/gangs", params={"detector": "invite_hub"}, headers=a).json()["gangs"] == []
    assert c.get("/v1/gangs", params={"run_id": 999}, headers=a).status_code == 404
    detail = c.get(f"/v1/gangs/{gang['id']}", headers=a).json()
    assert {m["account_id"] for m in detail["members"]} >= RACK
    assert detail["timeline"] and detail["shared_attributes"] and detail["money"] >= 2.0 * 12
    assert c.get("/v1/gangs/99999", headers=a).status_code == 404

    # the new run is in force in this worker at once: a member's next event carries gang_score
    f = _features(c, a, _claim(1, "r3"))
    assert f["gang_score"] >= 50 and f["gang_size"] >= 12
    assert _features(c, a, _claim(2, "g7"))["gang_score"] == 0

    r = c.post(f"/v1/gangs/{gang['id']}/list", json={"list": "review", "ttl_s": 3600}, headers=a)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["accounts"] == gang["size"] and out["reason"] == f"gang {gang['id']}"
    assert abs(out["expires_at"] - (time.time() * 1000 + 3_600_000)) < 60_000
    r = c.post(f"/v1/gangs/{gang['id']}/list", json={"list": "block", "reason": "rack"}, headers=a)
    assert r.status_code == 201 and r.json()["expires_at"] is None
    blocked = c.get("/v1/lists", params={"list": "block"}, headers=a).json()
    assert {e["value"] for e in blocked} == {m["account_id"] for m in detail["members"]}
    assert {e["entity"] for e in blocked} == {"account"} and {e["reason"] for e in blocked} == {"rack"}
    assert c.post("/v1/events", json=_claim(3, "r5"), headers=a).json()["outcome"] == "reject"
    assert c.post("/v1/events", json=_claim(4, "g9"), headers=a).json()["outcome"] != "reject"
    assert c.post(f"/v1/gangs/{gang['id']}/list", json={"list": "allow"}, headers=a).status_code == 422
    assert c.post("/v1/gangs/run", json={"since": 1_800_000_000_000, "until": 1_700_000_000_000},
                  headers=a).status_code == 422


def test_gangs_are_private(two) -> None:
    c, a, z = two
    _post_traffic(c, a)
    gang = c.post("/v1/gangs/run", headers=a).json()["gangs"][0]
    assert c.get("/v1/gangs", headers=z).json() == {"run": None, "gangs": []}
    assert c.get(f"/v1/gangs/{gang['id']}", headers=z).status_code == 404
    assert c.get("/v1/gangs", params={"run_id": gang["run_id"]}, headers=z).status_code == 404
    assert c.post(f"/v1/gangs/{gang['id']}/list", json={"list": "block"}, headers=z).status_code == 404
    assert c.get("/v1/lists", headers=z).json() == []
    # zeta's run reads zeta's log only, and zeta's engine never sees acme's gangs
    zr = c.post("/v1/gangs/run", headers=z).json()
    assert zr["run"]["events"] == 0 and zr["gangs"] == []
    assert _features(c, z, _claim(1, "r3"))["gang_score"] == 0
    assert _features(c, a, _claim(1, "r3"))["gang_score"] >= 50
    assert c.get("/v1/gangs", headers=a).json()["gangs"][0]["id"] == gang["id"]  # acme's run still in force
    assert c.get("/v1/gangs", headers={"Authorization": "Bearer nope"}).status_code == 401
