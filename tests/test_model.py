"""The learned model: training features equal the engine's online ones, scoring equals LightGBM, registry."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pytest

from woolguard.engine import Engine, default_policy_text
from woolguard.events import PAYOUT_KINDS, Account, Event, EventKind
from woolguard.model import metrics
from woolguard.model.features import FeatureSpec, context_features, replay_events, spec_for_engine
from woolguard.model.pipeline import ACTOR_REJECT_LEVEL, TIME_ONLY, policy_with_model, sim_engine
from woolguard.model.registry import Registry, RegistryError
from woolguard.model.scorer import Calibration, LightGBMScorer, ShadowScorer
from woolguard.model.train import random_split, time_split, train
from woolguard.report import GangSweep
from woolguard.sim import SimConfig, simulate

CFG = SimConfig(seed=3, scale=0.03, days=2)


@pytest.fixture(scope="module")
def table():
    engine = sim_engine(CFG)
    return engine.feature_names, replay_events(simulate(CFG), engine, sweep=False)


@pytest.fixture(scope="module")
def trained(table):
    names, tab = table
    spec = spec_for_engine([n for n in names if n not in TIME_ONLY])
    x = spec.matrix(tab.columns)
    y = tab.label.astype(np.int64)
    split = time_split(tab.ts, y, test_from_ms=CFG.start_ms + 86_400_000)
    return x, y, spec, train(x, y, tab.ts, spec, split, threads=1, max_rounds=60)


def test_training_features_equal_online_features(table):
    names, tab = table
    online = sim_engine(CFG)  # a fresh engine deciding event by event, as the API does
    rows = {}
    for ev in simulate(CFG):
        d = online.decide(online.normalise(ev))
        if ev.kind in PAYOUT_KINDS:
            rows[ev.event_id] = d.features
    assert len(rows) == len(tab) > 500
    for i, eid in enumerate(tab.event_id):
        f = rows[eid]
        for n in names:
            assert tab.columns[n][i] == f[n], (eid, n)


def test_training_features_equal_online_features_with_gang_sweep():
    """With the production-style gang sweep on (detection re-run on what was seen so far), the training rows'
    gang features and windows over known gang members equal what an engine deciding one event at a time, with
    the same sweep beside it, computed."""
    cfg = SimConfig(seed=3, scale=0.03, days=2)
    tab = replay_events(simulate(cfg), sim_engine(cfg), sweep=GangSweep(interval_s=1800, window_s=86_400))
    online = sim_engine(cfg)
    sweep = GangSweep(interval_s=1800, window_s=86_400)
    rows = {}
    for ev in simulate(cfg):
        sweep.before(online, ev.ts // 1000)
        norm = online.normalise(ev)
        d = online.decide(norm)
        sweep.after(norm)
        if ev.kind in PAYOUT_KINDS:
            rows[ev.event_id] = d.features
    assert sweep.sweeps > 10 and len(rows) == len(tab)
    for i, eid in enumerate(tab.event_id):
        f = rows[eid]
        for n in online.feature_names:
            assert tab.columns[n][i] == f[n], (eid, n)
    gang = np.asarray(tab.columns["gang_score"])
    active = np.asarray(tab.columns["camp_gang_accounts_10m"])
    assert (gang > 0).any() and (active > 0).any()
    assert np.all(active <= np.asarray(tab.columns["camp_accounts_10m"]))


def test_known_gang_members_active_window():
    """``camp_gang_accounts_10m`` counts accounts of the gang table in force (score >= 60) seen in the campaign in
    the last 10 minutes; every event reads it, only members' events add to it."""
    engine = Engine(gangs={"g1": (80, 6), "g2": (90, 6), "weak": (40, 6)})
    t0 = 1_800_000_000_000

    def decide(acct: str, dt_s: int) -> dict:
        ev = Event(event_id=f"{acct}-{dt_s}", kind=EventKind.CLAIM, ts=t0 + dt_s * 1000, campaign_id="c",
                   account=Account(id=acct))
        return engine.decide(ev).features

    assert decide("x", 0)["camp_gang_accounts_10m"] == 0
    assert decide("g1", 10)["camp_gang_accounts_10m"] == 1
    assert decide("weak", 20)["camp_gang_accounts_10m"] == 1
    assert decide("g2", 30)["camp_gang_accounts_10m"] == 2
    f = decide("y", 40)
    assert (f["camp_gang_accounts_10m"], f["camp_accounts_10m"]) == (2, 5)
    assert decide("z", 615)["camp_gang_accounts_10m"] == 1  # g1's entry expired after 10 minutes
    assert decide("z", 700)["camp_gang_accounts_10m"] == 0


def test_gang_link_entity_and_window():
    """``gang_link`` is the inviter of an accept_invite or assist event when the gang table in force holds the
    inviter as a member (score >= 60), else absent; ``acct_gang_links_7d`` counts those inviters for every later
    event of the account, for 7 days."""
    engine = Engine(gangs={"lead": (80, 6), "lead2": (95, 9), "weak": (40, 6)})
    t0 = 1_800_000_000_000

    def ev(acct: str, kind: EventKind, dt_s: int, inviter: str | None = None) -> Event:
        return Event(event_id=f"{acct}-{kind.value}-{dt_s}", kind=kind, ts=t0 + dt_s * 1000, campaign_id="c",
                     account=Account(id=acct), inviter=inviter)

    def links(e: Event) -> int:
        return engine.decide(e).features["acct_gang_links_7d"]

    accept, assist, claim = EventKind.ACCEPT_INVITE, EventKind.ASSIST, EventKind.CLAIM
    assert engine.entities(ev("r1", accept, 0, "lead"))[0]["gang_link"] == "lead"
    assert engine.entities(ev("r1", assist, 0, "lead2"))[0]["gang_link"] == "lead2"
    assert engine.entities(ev("r1", claim, 0, "lead"))[0]["gang_link"] is None  # not a linking kind
    assert engine.entities(ev("r1", EventKind.REGISTER, 0, "lead"))[0]["gang_link"] is None
    assert engine.entities(ev("r1", accept, 0, "weak"))[0]["gang_link"] is None  # below the member score
    assert engine.entities(ev("r1", accept, 0, "stranger"))[0]["gang_link"] is None
    assert engine.entities(ev("r1", accept, 0))[0]["gang_link"] is None
    assert Engine().entities(ev("r1", accept, 0, "lead"))[0]["gang_link"] is None  # no gang table

    assert links(ev("r1", claim, 0, "lead")) == 0  # a claim naming a member links nothing
    assert links(ev("r1", accept, 10, "lead")) == 1
    assert links(ev("r1", claim, 20)) == 1  # later events of the account read it
    assert links(ev("r1", claim, 30)) == 1
    assert links(ev("r1", accept, 40, "lead")) == 1  # distinct members
    assert links(ev("r1", assist, 50, "lead2")) == 2
    assert links(ev("r2", accept, 60, "weak")) == 0
    assert links(ev("r2", claim, 70)) == 0
    assert links(ev("r3", accept, 80, "stranger")) == 0
    assert links(ev("lead", claim, 90)) == 0  # the inviter's own events are not linked by its invitees
    assert links(ev("r1", claim, 40 + 7 * 86_400 - 1)) == 2
    assert links(ev("r1", claim, 40 + 7 * 86_400)) == 1  # lead's last link (t=40) expired, lead2's (t=50) not
    assert links(ev("r1", claim, 50 + 7 * 86_400)) == 0  # both expired after 7 days


def test_model_rules_treat_a_linked_account_like_a_member():
    """``model_gang_link`` rejects a non-member linked to a known member from model level 2, like
    ``model_gang_member``; below level 2, or without a link, it does not fire."""
    levels = [0.2, 0.4, 0.6, 0.8]
    engine = Engine()
    policy = engine.load_policy_text(policy_with_model(levels))
    base = engine.neutral_features()

    def fired(**kw) -> set[str]:
        rules, failed = policy.evaluate(EventKind.CLAIM, {**base, **kw})
        assert not failed
        return {r.id for r in rules}

    assert "model_gang_link" in fired(model_score=40, model_actor_score=40, acct_gang_links_7d=1)
    assert "model_gang_link" not in fired(model_score=39, model_actor_score=39, acct_gang_links_7d=1)
    assert "model_gang_link" not in fired(model_score=90, model_actor_score=90, acct_gang_links_7d=0)
    member = fired(model_score=40, model_actor_score=40, acct_gang_links_7d=1, gang_score=80)
    assert "model_gang_member" in member and "model_gang_link" not in member  # one reason: the stronger one
    # the link acts through rules only: engine models leave it out by default (monotone if one reads it)
    from woolguard.model.pipeline import MODEL_EXCLUDED
    from woolguard.model.train import monotone_increasing

    assert "acct_gang_links_7d" in MODEL_EXCLUDED and monotone_increasing("acct_gang_links_7d")
    # the shipped policy holds a linked non-member's payout for an analyst
    hold = engine.load_policy_text(default_policy_text())
    rules, _ = hold.evaluate(EventKind.CLAIM, {**base, "acct_gang_links_7d": 1})
    assert "gang_link_payout_hold" in {r.id for r in rules}
    rules, _ = hold.evaluate(EventKind.CLAIM, {**base, "acct_gang_links_7d": 0})
    assert "gang_link_payout_hold" not in {r.id for r in rules}


def test_scorer_equals_lightgbm_predict(trained, table):
    x, _y, spec, res = trained
    _, tab = table
    scorer = LightGBMScorer(res.model_text, spec, res.calibration, res.levels)
    booster = lgb.Booster(model_str=res.model_text)
    ref = booster.predict(x)
    for i in range(0, len(tab), max(1, len(tab) // 300)):
        feats = {n: tab.columns[n][i] for n in tab.columns}
        assert abs(scorer.raw_probability(feats) - ref[i]) <= 1e-6
        p, contrib = scorer.score(feats)
        assert abs(p - res.calibration(booster.predict(x[i:i + 1], raw_score=True)[0])) <= 1e-9
    # contributions: LightGBM's own, read lazily, largest first, all pushing towards fraud
    top = list(contrib)
    assert all(v > 0 for _, v in top) and top == sorted(top, key=lambda kv: -kv[1])


def test_actor_score_holds_the_moment_at_its_reference(trained, table):
    """The actor score is the same model with the features that describe the moment (the campaign's traffic) held
    at the genuine training rows' median: written into the features as ``model_actor_score``, equal to the batch form,
    equal to the score when the moment is the usual one or the model has no context; contributions stay those of
    the event's own vector."""
    x, y, spec, res = trained
    names, tab = table
    ctx = context_features(spec.names)
    assert "camp_accounts_1m" in ctx and "camp_gang_accounts_10m" in ctx and "camp_acct_payouts" not in ctx
    assert "acct_payouts_1d" not in ctx and context_features(names) == [n for n in names if n in set(
        context_features(names))]
    split = time_split(tab.ts, y, test_from_ms=CFG.start_ms + 86_400_000)
    res2 = train(x, y, tab.ts, spec, split, threads=1, max_rounds=20, context=ctx)
    assert set(res2.context) == set(ctx)
    j = spec.names.index("camp_accounts_1m")
    genuine = split.train[y[split.train] == 0]
    assert res2.context["camp_accounts_1m"] == float(np.median(x[genuine, j]))
    assert res2.meta()["context_reference"] == res2.context
    scorer = LightGBMScorer(res.model_text, spec, res.calibration, (), context={"camp_accounts_1m": 3.0})
    plain = LightGBMScorer(res.model_text, spec, res.calibration, res.levels)
    xa = x.copy()
    xa[:, j] = 3.0
    ref = plain.probabilities(xa)
    differs = 0
    for i in range(0, len(tab), max(1, len(tab) // 200)):
        feats = {n: tab.columns[n][i] for n in tab.columns}
        p, contrib = scorer.score(feats)
        assert abs(p - plain.score(dict(feats))[0]) <= 1e-12  # the score itself is unchanged
        assert abs(scorer.actor_probability(feats) - ref[i]) <= 1e-9
        assert feats["model_actor_score"] == round(scorer.actor_probability(feats) * 100)
        assert list(contrib) == plain.contributions(x[i])  # from the event's own vector
        differs += feats["model_actor_score"] != round(p * 100)
        if tab.columns["camp_accounts_1m"][i] == 3:
            assert feats["model_actor_score"] == round(p * 100)
        other = dict(feats)
        plain.score(other)
        assert other["model_actor_score"] == round(plain.score(dict(feats))[0] * 100)  # no context: the score
    assert differs > 0
    assert np.allclose(scorer.actor_probabilities(x), ref, atol=1e-12)
    # with levels, only scores near the top level (one score point below it or more) get the second pass
    p = plain.probabilities(x)
    levels = [0.01, 0.02, 0.03, float(np.quantile(p, 0.9))]
    top = LightGBMScorer(res.model_text, spec, res.calibration, levels, context={"camp_accounts_1m": 3.0})
    assert top.actor_from == levels[3] - 0.01
    assert (p >= top.actor_from).any() and (p < top.actor_from).any()
    assert np.allclose(top.actor_probabilities(x), np.where(p < top.actor_from, p, ref), atol=1e-12)
    for i in range(0, len(tab), max(1, len(tab) // 200)):
        feats = {n: tab.columns[n][i] for n in tab.columns}
        top.score(feats)
        assert feats["model_actor_score"] == round((p[i] if p[i] < top.actor_from else ref[i]) * 100)


def test_model_metrics_on_later_day(trained):
    _, _, _, res = trained
    assert res.split["train"]["last_ts"] < res.split["test"]["first_ts"]
    assert res.metrics["test"]["auroc"] > 0.9
    assert len(res.levels) == 4 and res.levels == sorted(res.levels)
    assert "score_psi" in res.drift and res.drift["alert_threshold"] == metrics.PSI_ALERT


def test_engine_uses_model_and_names_contributions(trained, table):
    _, _, spec, res = trained
    _, _tab = table
    scorer = LightGBMScorer(res.model_text, spec, res.calibration, res.levels)
    engine = sim_engine(CFG, model=scorer, policy_text=policy_with_model(res.levels))
    seen = 0
    for ev in simulate(CFG):
        d = engine.decide(engine.normalise(ev))
        for r in d.reasons:
            if r.rule == "model":
                assert r.values["model_score"] >= 40
                assert len(r.values) >= 2  # the score and at least one contributing feature
                seen += 1
    assert seen > 0


def test_registry_activate_rollback_shadow(tmp_path, trained):
    _, _, spec, res = trained
    reg = Registry(tmp_path)
    meta = {"features": spec.to_dict(), "calibration": res.calibration.to_dict(), "levels": res.levels}
    v1 = reg.save("m", res.model_text, meta)
    v2 = reg.save("m", res.model_text, meta)
    assert (v1, v2) == (1, 2)
    assert reg.engine_scorer("m") is None
    reg.activate("m", 1)
    reg.activate("m", 2)
    assert reg.rollback("m")["active"] == 1
    reg.shadow("m", 2)
    sc = reg.engine_scorer("m")
    assert isinstance(sc, ShadowScorer)
    feats = dict.fromkeys(spec.names, 0)
    feats["kind"] = "claim"
    p, _ = sc.score(feats)
    assert 0 <= p <= 1 and 0 <= feats["model_shadow_score"] <= 100
    with pytest.raises(RegistryError):
        reg.activate("m", 9)
    with pytest.raises(RegistryError):
        reg.save("bad name", "", {})


def test_metrics_against_brute_force():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = rng.random(300) + y * 0.3
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (pos.size * neg.size)
    assert math.isclose(metrics.auroc(y, s), brute, rel_tol=1e-9)
    assert 0 < metrics.auprc(y, s) <= 1
    assert metrics.recall_at_fpr(y, s, 1.0) == 1.0
    assert metrics.psi([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_splits():
    y = np.array([0] * 80 + [1] * 20 + [-1] * 10)
    ts = np.arange(y.size)
    r = random_split(y, 0.4, 0.2, seed=1)
    assert r.test.size == 40 and y[r.test].sum() == 8
    assert not set(r.train) & set(r.test) and not set(r.valid) & set(r.test)
    t = time_split(ts, y, 0.3, 0.2)
    assert ts[t.train].max() < ts[t.valid].min() <= ts[t.valid].max() < ts[t.test].min()
    assert -1 not in set(y[np.concatenate([t.train, t.valid, t.test])])


def test_spec_vector_and_matrix_agree():
    spec = FeatureSpec(["a", "kind", "b"], {"kind": {"claim": 3}})
    cols = {"a": [1, 2], "kind": ["claim", "odd"], "b": [True, False]}
    m = spec.matrix(cols)
    v = spec.vector_into({"a": 1, "kind": "claim", "b": True}, np.zeros(3))
    assert np.array_equal(m[0], v) and math.isnan(m[1, 1])
    fill = spec.filler()  # the scorer's planned form: missing, None and unknown categories are NaN
    w = fill({"kind": "odd", "b": None}, np.zeros(3))
    assert all(math.isnan(c) for c in w)
    assert np.array_equal(fill({"a": 2.5, "kind": 3, "b": False}, np.zeros(3)), [2.5, np.nan, 0.0], equal_nan=True)
    assert Calibration(1, 0)(0.0) == 0.5
    assert Engine().feature_names  # the engine exposes its feature names for the spec


class _ValueScorer:
    """A stand-in model whose probability is the claim's value in yuan / 100 (so a test sets it per event)."""

    def score(self, features):
        return features["value_fen"] / 10_000, []


class _ActorScorer(_ValueScorer):
    """The same, writing the actor score from the order amount in yuan (0-100), as the LightGBM scorer writes its
    own."""

    def score(self, features):
        features["model_actor_score"] = round(features["amount_fen"] / 100)
        return super().score(features)


def test_model_rules_for_paid_crowds():
    """The model's gang rules: a known member at model level >= 2 is rejected; a payout at model level >= 2 while a
    detected crowd (>= 5 known members, >= 10 % of the campaign's active accounts in 10 min) is active is held for
    an analyst; the same payout without the crowd only gets the level-2 step-up."""
    levels = [0.1, 0.3, 0.6, 0.9]  # model_score thresholds 10 / 30 / 60 / 90
    members = {f"g{i}": (70, 6) for i in range(5)}
    engine = Engine(gangs=members, model=_ValueScorer())
    engine.set_policy(engine.load_policy_text(policy_with_model(levels)))
    t0 = 1_800_000_000_000
    n = 0

    def claim(acct: str, campaign: str, p: float, dt_s: int = 0):
        nonlocal n
        n += 1
        ev = Event(event_id=f"e{n}", kind=EventKind.CLAIM, ts=t0 + dt_s * 1000, campaign_id=campaign,
                   account=Account(id=acct), value=p * 100)
        d = engine.decide(ev)
        return d.outcome.value, {r.rule for r in d.reasons}

    for i in range(5):  # the crowd's known members arrive: held (the default policy), not rejected
        out, rules = claim(f"g{i}", "crowd", 0.05)
        assert out == "review" and "gang_member_payout_hold" in rules and "model_gang_member" not in rules
    out, rules = claim("g0", "crowd", 0.65, 5)
    assert out == "reject" and "model_gang_member" in rules
    out, rules = claim("g1", "crowd", 0.4, 5)  # a member at model level 2: rejected too
    assert out == "reject" and "model_gang_member" in rules
    out, rules = claim("g2", "crowd", 0.2, 5)  # a member below model level 2: only held
    assert out == "review" and "model_gang_member" not in rules
    out, rules = claim("recruit", "crowd", 0.4, 10)  # unknown account, model level 2, crowd active
    assert out == "review" and "model_crowd_hold" in rules
    out, rules = claim("shopper", "crowd", 0.2, 10)  # below model level 2: no hold
    assert out == "pass" and "model_crowd_hold" not in rules
    out, rules = claim("other", "quiet", 0.4, 10)  # model level 2 without a crowd: the step-up
    assert out == "verify" and "model_crowd_hold" not in rules
    # the same 5 members in a busy campaign (5 of 56 active accounts, under 10 %) are no crowd
    for i in range(5):
        claim(f"g{i}", "busy", 0.05, 20)
    for i in range(50):
        claim(f"u{i}", "busy", 0.05, 20)
    out, rules = claim("late", "busy", 0.4, 30)
    assert out == "verify" and "model_crowd_hold" not in rules
    # ten minutes later the crowd's members have left the window: no hold
    out, rules = claim("later", "crowd", 0.4, 700)
    assert out == "verify" and "model_crowd_hold" not in rules


def test_model_top_level_rejects_only_on_the_claimants_own_evidence():
    """``model_high`` rejects when the actor score (the campaign's traffic at its usual value) is at level
    ``ACTOR_REJECT_LEVEL`` (2) or above too; a top score reached only through the moment waits for an analyst
    (``model_high_context``). A scorer that writes no actor score acts as before (actor = score)."""
    levels = [0.1, 0.3, 0.6, 0.9]  # model_score thresholds 10 / 30 / 60 / 90
    members = {f"g{i}": (70, 6) for i in range(5)}
    engine = Engine(gangs=members, model=_ActorScorer())
    engine.set_policy(engine.load_policy_text(policy_with_model(levels)))
    t0 = 1_800_000_000_000
    n = 0

    def claim(acct: str, campaign: str, p: float, actor: int, dt_s: int = 0):
        nonlocal n
        n += 1
        ev = Event(event_id=f"e{n}", kind=EventKind.CLAIM, ts=t0 + dt_s * 1000, campaign_id=campaign,
                   account=Account(id=acct), value=p * 100, amount=float(actor))
        d = engine.decide(ev)
        assert d.features["model_actor_score"] == actor
        return d.outcome.value, {r.rule for r in d.reasons}

    assert ACTOR_REJECT_LEVEL == 2
    out, rules = claim("a", "quiet", 0.95, 30)
    assert out == "reject" and "model_high" in rules and "model_high_context" not in rules
    out, rules = claim("b", "quiet", 0.95, 29)  # the moment made the difference: an analyst decides
    assert out == "review" and "model_high_context" in rules and "model_high" not in rules
    out, rules = claim("b2", "quiet", 0.7, 20)  # level 3 on the model: the face check as before
    assert out == "verify" and "model_elevated" in rules
    for i in range(5):
        claim(f"g{i}", "crowd", 0.05, 5)
    out, rules = claim("c", "crowd", 0.95, 10)  # the same while a crowd is active
    assert out == "review" and {"model_high_context", "model_crowd_hold"} <= rules
    out, rules = claim("d", "crowd", 0.95, 60)
    assert out == "reject" and "model_high" in rules
    plain = Engine(model=_ValueScorer())
    plain.set_policy(plain.load_policy_text(policy_with_model(levels)))
    d = plain.decide(Event(event_id="p1", kind=EventKind.CLAIM, ts=t0, campaign_id="quiet", account=Account(id="x"),
                           value=95.0))
    assert d.outcome.value == "reject" and d.features["model_actor_score"] == d.features["model_score"] == 95
