"""``/v1/models``: list, one version, activate, roll back, shadow; the active model is swapped into the running
engine (hot, per tenant) and decides with exactly the registry's scorer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from test_api import settings_for
from woolguard.api import create_app
from woolguard.api.testing import tenant_with_key
from woolguard.engine import Engine
from woolguard.model.features import FeatureSpec, spec_for_engine
from woolguard.model.registry import Registry
from woolguard.model.train import random_split, train


def _model(spec: FeatureSpec, flip: bool = False):
    """A small model on the engine's features: fraud when the device is an emulator (or, flipped, when not)."""
    rng = np.random.default_rng(5)
    n = 3000
    x = np.zeros((n, len(spec.names)))
    j = spec.names.index("dev_emulator")
    x[:, j] = rng.integers(0, 2, n)
    x[:, spec.names.index("acct_payouts_1d")] = rng.integers(0, 5, n)
    y = (x[:, j] == (0 if flip else 1)).astype(np.int64)
    y[rng.random(n) < 0.1] ^= 1
    return train(x, y, np.arange(n), spec, random_split(y, 0.3), threads=1, max_rounds=30)


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    spec = spec_for_engine([n for n in Engine().feature_names if n not in ("hour", "campaign_age_s")])
    reg = Registry(root / "acme")
    for flip in (False, True):
        r = _model(spec, flip)
        reg.save("claims", r.model_text, {**r.meta(), "source": {"kind": "test"}})
    imported = FeatureSpec(["account_n_10n", "amount"])
    reg.save("imported", "tree", {"features": imported.to_dict(), "calibration": {"a": 1.0, "b": 0.0},
                                  "levels": [0.5] * 4})
    return root


@pytest.fixture
def client(tmp_path: Path, registry_root: Path) -> Iterator[tuple[TestClient, dict, dict]]:
    for p in registry_root.glob("*/*/state.json"):
        p.unlink()
    app = create_app(settings_for(tmp_path, extra={"models_dir": str(registry_root)}))
    with TestClient(app) as c:
        db = app.state.service.db
        yield c, tenant_with_key(db, "acme"), tenant_with_key(db, "zeta")


def _claim(i: int, emulator: bool) -> dict:
    return {"event_id": f"m{i}", "kind": "claim", "ts": 1_800_100_000_000 + i * 1000, "value": 1.0,
            "account": {"id": f"a{i}"}, "device": {"id": f"d{i}", "model": "X1", "os": "android",
                                                  "emulator": emulator}}


def _score(c: TestClient, h: dict, i: int, emulator: bool) -> tuple[int, dict]:
    d = c.post("/v1/events", json=_claim(i, emulator), headers=h)
    assert d.status_code == 200, d.text
    f = c.get(f"/v1/decisions/{d.json()['decision_id']}", headers=h).json()["features"]
    return f["model_score"], f


def test_list_get_activate_rollback_shadow(client, registry_root) -> None:
    c, a, z = client
    rows = c.get("/v1/models", headers=a).json()
    assert [(r["name"], r["version"], r["active"]) for r in rows] == [
        ("claims", 1, False), ("claims", 2, False), ("imported", 1, False)]
    assert rows[0]["test_auroc"] > 0.8 and rows[0]["split"] == "random"
    assert c.get("/v1/models", headers=z).json() == []  # tenants never meet
    one = c.get("/v1/models/claims/versions/1", headers=a).json()
    assert one["metrics"]["test"]["auroc"] == rows[0]["test_auroc"] and "reference" not in one
    assert c.get("/v1/models/claims/versions/9", headers=a).status_code == 404
    assert c.get("/v1/models/nosuch", headers=a).status_code == 404
    assert c.get("/v1/models/claims/versions/1", headers=z).status_code == 404
    assert c.get("/v1/models/served", headers=a).json()["scorer"] is None

    s0, _ = _score(c, a, 0, True)
    assert s0 == 0  # no model yet
    r = c.post("/v1/models/claims/versions/1/activate", headers=a)
    assert r.status_code == 200 and r.json()["active"] == 1
    assert c.get("/v1/models/served", headers=a).json() == {"name": "claims", "active": 1, "shadow": None,
                                                            "scorer": "claims@v1"}
    s1, f1 = _score(c, a, 1, True)
    s2, _ = _score(c, a, 2, False)
    assert s1 > 70 and s2 < 30  # v1: emulators are fraud
    scorer = Registry(registry_root / "acme").scorer("claims", 1)
    assert round(scorer.score(f1)[0] * 100) == s1  # exactly the registry's scorer

    assert c.post("/v1/models/claims/versions/2/activate", headers=a).json()["active"] == 2
    assert _score(c, a, 3, True)[0] < 30  # v2 flipped
    back = c.post("/v1/models/claims/rollback", headers=a).json()
    assert back["active"] == 1 and [h["action"] for h in back["history"]] == ["activate", "activate", "rollback"]
    assert _score(c, a, 4, True)[0] > 70

    sh = c.post("/v1/models/claims/shadow", json={"version": 2}, headers=a).json()
    assert sh["active"] == 1 and sh["shadow"] == 2
    s5, f5 = _score(c, a, 5, True)
    assert s5 > 70 and f5["model_shadow_score"] < 30  # the shadow is logged, never acts
    assert c.post("/v1/models/claims/shadow", json={"version": None}, headers=a).json()["shadow"] is None
    # the other tenant's engine never got a model
    assert _score(c, z, 6, True)[0] == 0


def test_bad_requests_are_named(client) -> None:
    c, a, _z = client
    r = c.post("/v1/models/imported/versions/1/activate", headers=a)
    assert r.status_code == 422 and "does not produce" in r.json()["detail"][0]["msg"]
    assert c.post("/v1/models/claims/versions/7/activate", headers=a).status_code == 404
    assert c.post("/v1/models/claims/rollback", headers=a).status_code == 409  # nothing active yet
    r = c.post("/v1/models/claims/shadow", json={"version": 0}, headers=a)
    assert r.status_code == 422 and "version" in r.text
    assert c.post("/v1/models/claims/shadow", json={"versio": 1}, headers=a).status_code == 422
    assert c.get("/v1/models/bad name!/versions/1", headers=a).status_code in (404, 422)
    assert c.get("/v1/models", headers={"authorization": "Bearer nope"}).status_code == 401


def test_activation_elsewhere_is_picked_up_by_the_poller(client, registry_root) -> None:
    c, a, _z = client
    import time

    assert _score(c, a, 10, True)[0] == 0
    Registry(registry_root / "acme").activate("claims", 1)  # e.g. the CLI, or another worker
    deadline = time.time() + 5
    while time.time() < deadline and c.get("/v1/models/served", headers=a).json()["scorer"] != "claims@v1":
        time.sleep(0.1)
    assert _score(c, a, 11, True)[0] > 70
