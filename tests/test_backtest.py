"""Backtest: the vectorised policy over stored feature rows gives the engine's own decisions."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import yaml
from typer.testing import CliRunner

from woolguard.cli import app
from woolguard.engine import default_policy_text
from woolguard.model.features import replay_events
from woolguard.model.pipeline import policy_with_model, sim_engine
from woolguard.rules.backtest import backtest, decide_rows, frame_from_table
from woolguard.sim import SimConfig, simulate

CFG = SimConfig(seed=5, scale=0.03, days=1)
CODES = {"pass": 0, "verify": 1, "review": 2, "reject": 3}


def _frame():
    engine = sim_engine(CFG)
    tab = replay_events(simulate(CFG), engine, sweep=False, keep=lambda ev: True)
    return engine, tab, frame_from_table(tab, engine.feature_names)


def test_active_policy_reproduces_engine_decisions():
    engine, tab, df = _frame()
    res = decide_rows(df, engine.policy)
    assert np.array_equal(res["level"], np.array(tab.decisions["level"]))
    assert np.array_equal(res["outcome"], np.array([CODES[o] for o in tab.decisions["outcome"]]))
    shadow = {r.id for r in engine.policy.rules if r.shadow}
    fired = {rid for rid, m in res["masks"].items() if m.any() and rid not in shadow}
    logged = {r for rs in tab.decisions["reasons"] for r in rs}
    assert fired == logged  # every rule the engine reported, and no other


def test_candidate_changes_are_reported(tmp_path):
    engine, _tab, df = _frame()
    doc = yaml.safe_load(default_policy_text())
    doc["version"] = 2
    doc["rules"] = [r for r in doc["rules"] if r["id"] != "emulator"]
    doc["rules"].append({"id": "any_claim", "when": "kind == 'claim' && acct_payouts_1d >= 2", "score": 80,
                         "reason": "behaviour.velocity.device"})
    cand = engine.load_policy_text(yaml.safe_dump(doc))
    out = backtest(df, engine.policy, cand)
    assert out["active"]["policy"] == "default@1" and out["candidate"]["policy"] == "default@2"
    rules = {r["rule"]: r for r in out["by_rule"]}
    assert rules["emulator"]["candidate"] is None and rules["any_claim"]["active"] is None
    assert out["changed_outcomes"]
    assert out["delta"]["gang_rejected"] == out["candidate"]["gang_rejected"] - out["active"]["gang_rejected"]
    # through the CLI, from a Parquet file of feature rows
    df.write_parquet(tmp_path / "f.parquet")
    (tmp_path / "cand.yaml").write_text(yaml.safe_dump(doc))
    r = CliRunner().invoke(app, ["backtest", "--features", str(tmp_path / "f.parquet"), "--candidate-policy",
                                 str(tmp_path / "cand.yaml"), "--json", str(tmp_path / "bt.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "bt.json").read_text())["changed_outcomes"] == out["changed_outcomes"]


def test_multi_feature_rules_and_kinds():
    engine, _, _ = _frame()
    doc = {"id": "t", "rules": [
        {"id": "pair", "when": "dev_accounts_1d >= 2 && ip_accounts_1h >= 2", "score": 90,
         "reason": "device.multi_account"},
        {"id": "scan_only", "when": "tier == 0", "score": 10, "kinds": ["scan"], "reason": "account.fresh"}]}
    pol = engine.load_policy_text(json.dumps(doc))
    df = pl.DataFrame({"dev_accounts_1d": [1, 2, 3, 2], "ip_accounts_1h": [5, 2, 1, 3], "tier": [0, 0, 0, 1],
                       "kind": ["claim", "scan", "claim", "claim"]})
    res = decide_rows(df, pol)
    assert res["masks"]["pair"].tolist() == [False, True, False, True]
    assert res["masks"]["scan_only"].tolist() == [False, True, False, False]
    assert res["score"].tolist() == [0, 100, 0, 90]


def test_review_rules_hold_like_the_engine():
    """A rule with ``review: true`` turns a pass or a step-up into a review, never a reject (as the engine does)."""
    engine, _, _ = _frame()
    doc = {"id": "t", "rules": [
        {"id": "hold", "when": "gang_score >= 60", "review": True, "reason": "gang.member"},
        {"id": "step", "when": "tier == 1", "score": 40, "reason": "account.fresh"},
        {"id": "block", "when": "tier == 2", "score": 90, "reason": "account.fresh"}]}
    pol = engine.load_policy_text(json.dumps(doc))
    df = pl.DataFrame({"gang_score": [0, 70, 70, 70, 0], "tier": [0, 0, 1, 2, 1],
                       "kind": ["claim"] * 5})
    res = decide_rows(df, pol)
    assert res["outcome"].tolist() == [CODES[o] for o in ("pass", "review", "review", "reject", "verify")]


def test_candidate_model_actor_score():
    """The model's rules read ``model_actor_score``: a candidate model's actor scores are used when given, else its
    scores; rows logged before the actor score existed read their ``model_score``."""
    engine, _, _ = _frame()
    levels = [0.1, 0.3, 0.6, 0.9]  # model_score thresholds 10 / 30 / 60 / 90
    cand = engine.load_policy_text(policy_with_model(levels))
    rows = {"model_score": [95, 95, 95, 20], "tier": [0] * 4, "kind": ["claim"] * 4, "label": [1, 0, 1, 0],
            "value": [1.0] * 4, "acct_gap_cv": [-1] * 4, "dev_gap_cv": [-1] * 4}  # (-1: too few gaps known)
    df = pl.DataFrame({**{n: [v] * 4 for n, v in engine.neutral_features().items() if n not in rows}, **rows})
    old = backtest(df.drop("model_actor_score"), engine.policy, cand)  # the score stands in for the actor score
    assert (old["candidate"]["gang_rejected"], old["candidate"]["genuine_rejected"]) == (2, 1)
    out = backtest(df, engine.policy, cand, candidate_model_score=np.array([95, 95, 95, 20]),
                   candidate_actor_score=np.array([70, 20, 95, 20]))
    assert (out["candidate"]["gang_rejected"], out["candidate"]["genuine_rejected"]) == (2, 0)
    assert out["candidate"]["genuine_challenged"] == 1  # the moment made the top score: held for an analyst
    same = backtest(df, engine.policy, cand, candidate_model_score=np.array([95, 95, 95, 20]))
    assert same["candidate"]["genuine_rejected"] == 1  # no actor scores given: the candidate's scores
    c = decide_rows(df.with_columns(pl.Series("model_actor_score", [70, 20, 95, 20])), cand)
    assert c["outcome"].tolist() == [CODES[o] for o in ("reject", "review", "reject", "pass")]
    assert c["masks"]["model_high_context"].tolist() == [False, True, False, False]
