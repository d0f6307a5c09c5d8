"""Campaigns over HTTP (SQLite, in-process state): create, version, codes export, scan, challenge, claim,
redeem, refund, review, report, pressure; tenants cannot see each other's campaigns."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from woolguard.api import Settings, create_app
from woolguard.api.testing import tenant_with_key

NOW = int(time.time() * 1000)
DAY = 86_400_000
RULES = {"kind": "scan", "start_ms": NOW - DAY, "end_ms": NOW + DAY, "budget_fen": 5_000,
         "tiers": [{"id": "a", "amount_fen": 100, "count": 50, "probability": 1.0}]}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    s = Settings(database_url=f"sqlite:///{tmp_path}/wg.db", spill_dir=str(tmp_path / "spill"), log_flush_s=0.05)
    app = create_app(s)
    with TestClient(app) as c:
        c.headers.update(tenant_with_key(app.state.service.db, "acme"))
        c.other = tenant_with_key(app.state.service.db, "globex")  # type: ignore[attr-defined]
        yield c


def scan(client: TestClient, eid: str, code: str, account: str = "u1", **kw) -> dict:
    body = {"event_id": eid, "kind": "scan", "ts": NOW, "account": {"id": account, "tier": 2},
            "device": {"id": "dev-" + account, "model": "Mi 11", "os": "android"}, "ip": "114.114.1.2",
            "campaign_id": "c", "code_id": code, **kw}
    r = client.post("/v1/scans", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_campaign_end_to_end(client: TestClient) -> None:
    r = client.post("/v1/campaigns", json={"id": "c", "rules": RULES})
    assert r.status_code == 201, r.text
    assert client.post("/v1/campaigns", json={"id": "c", "rules": RULES}).status_code == 409
    bad = client.post("/v1/campaigns", json={"id": "d", "rules": {**RULES, "end_ms": RULES["start_ms"]}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "end_ms"]
    assert client.get("/v1/campaigns/c", headers=client.other).status_code == 404  # type: ignore[attr-defined]
    b = client.post("/v1/campaigns/c/batches", json={"count": 10, "product": "cola", "line": "L1"}).json()
    text = client.get(f"/v1/campaigns/c/batches/{b['batch_id']}/codes.csv",
                      params={"url_template": "https://x.cn/s/{code}"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 10 and rows[0]["product"] == "cola" and rows[9]["serial"] == "9"
    won = scan(client, "s1", rows[0]["printed"])
    assert won["result"]["status"] == "won" and won["result"]["amount_fen"] == 100
    assert won["decision"]["decision_id"] == won["result"]["decision_id"]
    assert scan(client, "s1", rows[0]["code"])["result"]["replayed"] is True
    assert scan(client, "s2", rows[0]["code"], "u2")["result"]["status"] == "used"
    forged = rows[1]["code"][:-1] + ("A" if rows[1]["code"][-1] != "A" else "B")
    assert scan(client, "s3", forged)["result"]["status"] == "invalid_code"
    # another tenant's key does not make these codes valid
    r = client.post("/v1/scans", headers=client.other, json={  # type: ignore[attr-defined]
        "event_id": "z", "kind": "scan", "ts": NOW, "account": {"id": "u"}, "code_id": rows[2]["code"]})
    assert r.json()["result"]["status"] == "invalid_code"
    v = client.post("/v1/campaigns/c/versions", json={"rules": {**RULES, "budget_fen": 6_000}, "note": "more"})
    assert v.status_code == 201 and v.json()["version"] == 2
    rep = client.get("/v1/campaigns/c/report").json()
    assert rep["totals"]["paid_fen"] == 100
    assert client.get("/v1/campaigns/c/report", params={"format": "csv"}).text.startswith("campaign_id,day")
    assert client.get("/v1/campaigns/c/ledger").json()[0]["decision_id"] == won["result"]["decision_id"]
    p = client.get("/v1/pressure").json()
    assert p["campaigns"][0]["campaign_id"] == "c" and p["tenants"][0]["tenant_id"] == "acme"


def test_challenge_review_and_coupons(client: TestClient) -> None:
    client.post("/v1/campaigns", json={"id": "cp", "rules": {
        **RULES, "kind": "coupon", "tiers": [{"id": "c5", "amount_fen": 500, "count": 3}]}})
    body = {"kind": "claim", "ts": NOW, "account": {"id": "u9", "tier": 2}, "campaign_id": "cp",
            "device": {"id": "d9", "model": "Mi 11", "os": "android"}, "ip": "114.114.1.9"}
    r = client.post("/v1/claims", json={**body, "event_id": "k1"}).json()
    assert r["result"]["status"] == "won", r
    coupon = r["result"]["coupon_id"]
    red = client.post(f"/v1/coupons/{coupon}/redeem", json={"order_id": "o1", "order_amount_fen": 300})
    assert red.json()["amount_fen"] == 300
    back = client.post(f"/v1/coupons/{coupon}/refund", json={"order_id": "o1"}).json()
    assert back["status"] == "refunded"
    assert client.post("/v1/coupons/nope/redeem", json={"order_id": "o", "order_amount_fen": 1}).status_code == 404
    # an emulator gets a challenge or worse under the default policy
    emu = {**body, "event_id": "k2", "account": {"id": "bot"},
           "device": {"id": "emu", "emulator": True, "rooted": True, "hooked": True}}
    r2 = client.post("/v1/claims", json=emu).json()
    assert r2["decision"]["outcome"] != "pass"
    if r2["result"]["status"] == "challenge":
        done = client.post(f"/v1/challenges/{r2['result']['challenge_id']}/result", json={"passed": False}).json()
        assert done["status"] == "refused"
    if r2["result"]["status"] == "review":
        assert client.get("/v1/reviews").json()[0]["id"] == r2["result"]["challenge_id"]
        done = client.post(f"/v1/reviews/{r2['result']['challenge_id']}/verdict",
                           json={"approve": False, "analyst": "ana"}).json()
        assert done["status"] == "refused"
    assert client.post("/v1/challenges/ch_nope/result", json={"passed": True}).status_code == 404


STRICT_SCANS = """
id: cola-strict
outcomes: {0: pass, 1: pass, 2: pass, 3: pass, 4: reject}
rules:
  - id: every_scan
    when: kind == 'scan'
    score: 5
    level: 4
    reason: device.emulator
"""


def test_a_campaigns_own_policy_decides_its_events(client: TestClient) -> None:
    # a policy reference that names nothing stored is refused, naming the field
    bad = client.post("/v1/campaigns", json={"id": "c", "rules": {**RULES, "policy": "cola-strict@1"}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "policy", bad.text
    # stored, not activated: the tenant keeps its default policy; only campaign c is guarded by it
    assert client.post("/v1/policies", json={"body": STRICT_SCANS}).status_code == 201
    guarded_rules = {**RULES, "policy": "cola-strict@1"}
    assert client.post("/v1/campaigns", json={"id": "c", "rules": guarded_rules}).status_code == 201
    assert client.post("/v1/campaigns", json={"id": "d", "rules": RULES}).status_code == 201
    codes = {}
    for cid in ("c", "d"):
        b = client.post(f"/v1/campaigns/{cid}/batches", json={"count": 2}).json()
        text = client.get(f"/v1/campaigns/{cid}/batches/{b['batch_id']}/codes.csv").text
        codes[cid] = [r["code"] for r in csv.DictReader(io.StringIO(text))]
    guarded = scan(client, "p1", codes["c"][0])
    assert guarded["decision"]["outcome"] == "reject" and guarded["decision"]["policy"].startswith("cola-strict")
    assert guarded["result"]["status"] == "refused"
    free = scan(client, "p2", codes["d"][0], campaign_id="d")
    assert free["decision"]["outcome"] == "pass" and free["result"]["status"] == "won"
    # a new version without the policy: the campaign falls back to the tenant's policy at once
    assert client.post("/v1/campaigns/c/versions", json={"rules": RULES}).status_code == 201
    assert scan(client, "p3", codes["c"][1], account="u3")["decision"]["outcome"] == "pass"


def test_the_service_releases_expired_coupons_on_its_own(tmp_path: Path) -> None:
    s = Settings(database_url=f"sqlite:///{tmp_path}/wg.db", spill_dir=str(tmp_path / "spill"), coupon_expiry_s=3600)
    app = create_app(s)
    with TestClient(app) as c:
        c.headers.update(tenant_with_key(app.state.service.db, "acme"))
        c.post("/v1/campaigns", json={"id": "cp", "rules": {
            **RULES, "kind": "coupon", "tiers": [{"id": "c5", "amount_fen": 500, "count": 3}]}})
        body = {"event_id": "x1", "kind": "claim", "ts": NOW, "account": {"id": "u9", "tier": 2}, "campaign_id": "cp",
                "device": {"id": "d9", "model": "Mi 11", "os": "android"}, "ip": "114.114.1.9"}
        won = c.post("/v1/claims", json=body).json()
        assert won["result"]["status"] == "won", won
        service = app.state.service
        assert service.expire_coupons(now_ms=NOW + 1_000) == 0  # not due: the poller ran it when it started
        assert service.expire_coupons(now_ms=NOW + 1_000, force=True) == 0  # not expired yet
        assert service.expire_coupons(now_ms=NOW + 31 * DAY, force=True) == 1  # valid 30 days by default
        assert service.expire_coupons(now_ms=NOW + 31 * DAY, force=True) == 0  # released once
        coupon = won["result"]["coupon_id"]
        red = c.post(f"/v1/coupons/{coupon}/redeem", json={"order_id": "o1", "order_amount_fen": 900})
        assert red.status_code != 200 or red.json().get("amount_fen", 0) == 0, red.text
        ledger = c.get("/v1/campaigns/cp/ledger").text
        assert "released" in ledger and "-500" in ledger, ledger
