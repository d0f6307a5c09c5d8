"""Tenant isolation: no request reads or changes another tenant's data; no tenant's traffic moves another's
features. Every test here tries to reach across."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from test_api import CLOSED_POLICY, settings_for
from woolguard.api import create_app
from woolguard.api.testing import event, tenant_with_key


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    app = create_app(settings_for(tmp_path))
    with TestClient(app) as c:
        db = app.state.service.db
        yield c, tenant_with_key(db, "acme"), tenant_with_key(db, "zeta")


def test_same_event_id_is_two_decisions(two) -> None:
    c, a, z = two
    da = c.post("/v1/events", json=event(1), headers=a).json()
    dz = c.post("/v1/events", json=event(1), headers=z).json()
    assert da["decision_id"] != dz["decision_id"]  # not a retry: another brand's event
    assert c.get(f"/v1/decisions/{da['decision_id']}", headers=a).status_code == 200
    assert c.get(f"/v1/decisions/{da['decision_id']}", headers=z).status_code == 404
    assert c.get(f"/v1/decisions/{dz['decision_id']}", headers=z).json()["decision_id"] == dz["decision_id"]
    assert [d["decision_id"] for d in c.get("/v1/decisions", headers=z).json()["items"]] == [dz["decision_id"]]


def test_traffic_does_not_move_other_tenants_features(two) -> None:
    c, a, z = two
    for i in range(0, 40 * 11, 11):  # forty claims from dev0 at acme
        c.post("/v1/events", json=event(i, event_id=f"a{i}"), headers=a)
    c.post("/v1/events", json=event(0, event_id="z0"), headers=z)
    fa = c.get("/v1/decisions/a429", headers=a).json()["features"]
    fz = c.get("/v1/decisions/z0", headers=z).json()["features"]
    assert fa["dev_payouts_10m"] > 1
    assert fz["dev_payouts_10m"] == 1 and fz["acct_seen_s"] == 0


def test_lists_labels_policies_are_private(two) -> None:
    c, a, z = two
    entry = c.post("/v1/lists", json={"list": "block", "entity": "device", "value": "dev1"}, headers=a).json()
    assert c.get("/v1/lists", headers=z).json() == []
    assert c.delete(f"/v1/lists/{entry['id']}", headers=z).status_code == 404
    assert c.post("/v1/events", json=event(1), headers=z).json()["outcome"] != "reject"
    assert c.post("/v1/events", json=event(1), headers=a).json()["outcome"] == "reject"
    c.post("/v1/labels", json={"target_type": "account", "target_id": "acct1", "label": "fraud"}, headers=a)
    assert c.get("/v1/labels", headers=z).json() == []
    c.post("/v1/policies", json={"body": CLOSED_POLICY, "activate": True}, headers=a)
    assert c.get("/v1/policies", headers=z).json() == []
    assert c.get("/v1/policies/strict/versions/1", headers=z).status_code == 404
    assert c.post("/v1/policies/strict/versions/1/activate", headers=z).status_code == 404
    assert c.post("/v1/policies/strict/rollback", headers=z).status_code == 404
    assert c.post("/v1/events", json=event(2), headers=z).json()["policy"] == "default@1"
    assert c.post("/v1/events", json=event(2), headers=a).json()["policy"] == "strict@1"


def test_a_tenant_cannot_be_named_in_the_request(two) -> None:
    c, a, z = two
    c.post("/v1/events", json=event(1), headers=a)
    for params in ({"tenant": "acme"}, {"tenant_id": "acme"}):
        assert c.get("/v1/decisions", params=params, headers=z).json()["items"] == []
    r = c.post("/v1/events", json={**event(3), "tenant_id": "acme"}, headers=z)
    assert r.status_code == 422  # unknown field, not a way in
    r = c.post("/v1/lists", json={"list": "block", "entity": "device", "value": "x", "tenant_id": "acme"}, headers=z)
    assert r.status_code == 422
    both = {**a, "X-Api-Key": z["Authorization"].split()[1]}
    assert c.get("/v1/decisions", headers=both).json()["items"][0]["event_id"] == "e1"  # Bearer wins, one tenant
