"""Campaign rules, scans, coupons, challenges, reviews and the savings report on SQLite (and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from woolguard.campaigns import CampaignError, CodeSigner, RulesError
from woolguard.campaigns import service as S
from woolguard.campaigns.ledger import audit, ledger_rows
from woolguard.campaigns.report import pressure, savings, totals
from woolguard.events import Account, Challenge, Decision, Device, Event, EventKind, Geo, Outcome
from woolguard.storage import open_database
from woolguard.storage.labels import add_label
from woolguard.storage.schema import coupons

T0 = 1_750_000_000_000
DAY = 86_400_000
SIGNER = CodeSigner.for_tenant(b"s", "t")


def rules(**over):
    r = {"kind": "scan", "start_ms": T0, "end_ms": T0 + 10 * DAY, "budget_fen": 10_000,
         "tiers": [{"id": "a", "amount_fen": 300, "count": 10, "probability": 0.5},
                   {"id": "b", "amount_fen": 100, "count": 100, "probability": 0.5}]}
    r.update(over)
    return r


def dec(eid: str, outcome: Outcome = Outcome.PASS, challenge: Challenge | None = None) -> Decision:
    return Decision(decision_id="d_" + eid, event_id=eid, level=0, outcome=outcome, score=0, reasons=[],
                    challenge=challenge)


def scan_ev(eid: str, code: str, account: str = "u1", ts: int = T0 + 1, device: str | None = "dv", **kw) -> Event:
    return Event(event_id=eid, kind=EventKind.SCAN, ts=ts, account=Account(id=account), code_id=code,
                 campaign_id="c", device=Device(id=device) if device else None, **kw)


@pytest.fixture(params=["sqlite", "postgresql"])
def conn(request, tmp_path: Path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'wg.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    db = open_database(url)
    with db.connect() as c:
        yield c
    db.close()


@pytest.fixture
def lite(tmp_path: Path):
    db = open_database(f"sqlite:///{tmp_path / 'wg.db'}")
    with db.connect() as c:
        yield c
    db.close()


def codes(conn, n: int = 20, campaign: str = "c") -> list[str]:
    b = S.create_batch(conn, "t", campaign, n, product="p", line="L")
    return [c for _, c in SIGNER.batch(b, n)]


def test_rules_are_checked_and_name_the_field() -> None:
    from woolguard.campaigns import parse_rules

    with pytest.raises(RulesError) as e:
        parse_rules(rules(end_ms=T0))
    assert e.value.field == "$.end_ms"
    with pytest.raises(RulesError) as e:
        parse_rules(rules(tiers=[{"id": "a", "amount_fen": 1, "count": 1, "probability": 0.7},
                                 {"id": "b", "amount_fen": 1, "count": 1, "probability": 0.7}]))
    assert e.value.field == "$.tiers"
    with pytest.raises(RulesError) as e:
        parse_rules(rules(budget_fen=-1))
    assert e.value.field == "$.budget_fen"
    with pytest.raises(RulesError) as e:
        parse_rules({**rules(), "colour": 1})
    assert "colour" in e.value.message


def test_versions_change_rules_but_never_below_what_was_given(conn) -> None:
    S.create_campaign(conn, "t", "c", rules())
    with pytest.raises(CampaignError):
        S.create_campaign(conn, "t", "c", rules())
    cs = codes(conn)
    won = [S.scan(conn, "t", scan_ev(f"e{i}", cs[i], account=f"u{i}"), dec(f"e{i}"), SIGNER) for i in range(8)]
    given_a = sum(1 for r in won if r.tier_id == "a" and r.status == "won")
    assert given_a > 0
    with pytest.raises(RulesError):
        S.new_version(conn, "t", "c", rules(tiers=[{"id": "a", "amount_fen": 300, "count": given_a - 1,
                                                     "probability": 0.5}]))
    with pytest.raises(RulesError):
        S.new_version(conn, "t", "c", rules(budget_fen=1))
    S.new_version(conn, "t", "c", rules(tiers=[{"id": "a", "amount_fen": 300, "count": given_a, "probability": 0.9}]),
                  note="only a")
    state = S.campaign_state(conn, "t", "c")
    assert state["version"] == 2 and [v["version"] for v in state["versions"]] == [1, 2]
    tiers = {t["tier_id"]: t for t in state["tiers"]}
    assert tiers["a"]["remaining"] == 0 and tiers["b"]["remaining"] == 0
    r = S.scan(conn, "t", scan_ev("late", cs[10], account="zz"), dec("late"), SIGNER)
    assert r.status in ("exhausted", "lost")
    assert audit(conn, "t")["overspent"] == 0


def test_scan_statuses(conn) -> None:
    S.create_campaign(conn, "t", "c", rules(regions=["Zhejiang"], limits={"account_day": 1}))
    cs = codes(conn)
    zj = Geo(region="Zhejiang")
    assert S.scan(conn, "t", scan_ev("x", cs[0][:-1] + ("0" if cs[0][-1] != "0" else "1")), dec("x"),
                  SIGNER).status == "invalid_code"
    other = CodeSigner.for_tenant(b"s", "t").make(999, 0)  # genuine signature, unknown batch
    assert S.scan(conn, "t", scan_ev("y", other), dec("y"), SIGNER).status == "invalid_code"
    assert S.scan(conn, "t", scan_ev("early", cs[0], ts=T0 - 1, geo=zj), dec("early"), SIGNER).status == "not_running"
    assert S.scan(conn, "t", scan_ev("far", cs[0]), dec("far"), SIGNER).status == "ineligible"
    first = S.scan(conn, "t", scan_ev("e1", cs[0], geo=zj), dec("e1"), SIGNER)
    assert first.status in ("won", "lost")
    again = S.scan(conn, "t", scan_ev("e1", cs[0], geo=zj), dec("e1"), SIGNER)
    assert again.replayed and again.status == first.status and again.amount_fen == first.amount_fen
    used = S.scan(conn, "t", scan_ev("e2", cs[0], account="thief", geo=zj), dec("e2"), SIGNER)
    assert (used.status, used.used_by, used.used_at) == ("used", "u1", T0 + 1)
    limited = S.scan(conn, "t", scan_ev("e3", cs[1], geo=zj), dec("e3"), SIGNER)
    assert limited.status == "limited" and "account_day" in limited.message
    nextday = S.scan(conn, "t", scan_ev("e4", cs[2], ts=T0 + DAY, geo=zj), dec("e4"), SIGNER)
    assert nextday.status in ("won", "lost")
    rej = S.scan(conn, "t", scan_ev("e5", cs[3], account="bad", geo=zj), dec("e5", Outcome.REJECT), SIGNER)
    assert rej.status == "refused" and rej.amount_fen > 0
    rows = ledger_rows(conn, "t", "c", "refused")
    assert rows[0]["decision_id"] == "d_e5" and rows[0]["amount_fen"] == rej.amount_fen


def test_challenges_deadlines_and_reviews(conn) -> None:
    S.create_campaign(conn, "t", "c", rules(challenge_deadline_s=60))
    cs = codes(conn)
    v = S.scan(conn, "t", scan_ev("v1", cs[0]), dec("v1", Outcome.VERIFY, Challenge.FACE), SIGNER)
    assert (v.status, v.challenge, v.deadline_ms) == ("challenge", "face", T0 + 1 + 60_000)
    done = S.challenge_result(conn, "t", v.challenge_id, True, ts=T0 + 30_000)
    assert done.status in ("won", "lost") and done.decision_id == "d_v1"
    assert S.challenge_result(conn, "t", v.challenge_id, True, ts=T0 + 31_000).replayed
    # the retried scan now reports the final result
    assert S.scan(conn, "t", scan_ev("v1", cs[0]), dec("v1"), SIGNER).status == done.status
    late = S.scan(conn, "t", scan_ev("v2", cs[1]), dec("v2", Outcome.VERIFY, Challenge.SMS), SIGNER)
    assert S.challenge_result(conn, "t", late.challenge_id, True, ts=T0 + 120_000).status == "refused"
    failed = S.scan(conn, "t", scan_ev("v3", cs[2]), dec("v3", Outcome.VERIFY, Challenge.SMS), SIGNER)
    assert S.challenge_result(conn, "t", failed.challenge_id, False, ts=T0 + 2).status == "refused"
    stale = S.scan(conn, "t", scan_ev("v4", cs[3]), dec("v4", Outcome.VERIFY, Challenge.SMS), SIGNER)
    assert S.expire_challenges(conn, "t", ts=T0 + 10 * 60_000) == 1
    assert [c["id"] for c in S.list_challenges(conn, "t", status="expired")] == ["ch_v2", stale.challenge_id]
    rv = S.scan(conn, "t", scan_ev("r1", cs[4]), dec("r1", Outcome.REVIEW), SIGNER)
    assert rv.status == "review"
    with pytest.raises(CampaignError):
        S.challenge_result(conn, "t", rv.challenge_id, True)
    ok = S.review_verdict(conn, "t", rv.challenge_id, True, "ana", ts=T0 + 5)
    assert ok.status in ("won", "lost")
    kinds = [r["kind"] for r in ledger_rows(conn, "t", "c")]
    assert kinds.count("held") == 5 and kinds.count("refused") == 3
    assert audit(conn, "t") == {"overspent": 0, "paid_twice": 0, "details": []}


def test_coupon_claim_redeem_refund(conn) -> None:
    S.create_campaign(conn, "t", "cp", rules(kind="coupon", budget_fen=1_000, tiers=[
        {"id": "c3", "amount_fen": 300, "count": 5, "min_order_fen": 1_000, "valid_days": 1}],
        limits={"account_campaign": 1}))

    def ev(eid, account):
        return Event(event_id=eid, kind=EventKind.CLAIM, ts=T0 + 1, account=Account(id=account), campaign_id="cp")

    got = [S.claim(conn, "t", ev(f"k{i}", f"u{i}"), dec(f"k{i}")) for i in range(5)]
    assert [g.status for g in got] == ["won", "won", "won", "exhausted", "exhausted"]  # budget 1,000 = 3 coupons
    assert S.claim(conn, "t", ev("k0", "u0"), dec("k0")).replayed
    assert S.claim(conn, "t", ev("k9", "u0"), dec("k9")).status == "limited"
    cid = got[0].coupon_id
    assert S.redeem(conn, "t", cid, "o1", 500, ts=T0 + 2).message.startswith("order below")
    r = S.redeem(conn, "t", cid, "o1", 2_000, ts=T0 + 2)
    assert (r.status, r.amount_fen) == ("redeemed", 300)
    assert S.redeem(conn, "t", cid, "o1", 2_000, ts=T0 + 2).replayed
    assert S.redeem(conn, "t", cid, "o2", 2_000, ts=T0 + 2).status == "refused"
    assert S.refund(conn, "t", cid, "o1", ts=T0 + 3).amount_fen == 300
    assert S.refund(conn, "t", cid, "o1", ts=T0 + 3).replayed
    assert S.redeem(conn, "t", cid, "o2", 2_000, ts=T0 + 4).status == "redeemed"
    assert S.redeem(conn, "t", got[1].coupon_id, "o3", 2_000, ts=T0 + 2 * DAY).message == "coupon expired"
    refused = S.claim(conn, "t", ev("bad", "gang1"), dec("bad", Outcome.REJECT))
    assert refused.status == "refused"
    rows = savings(conn, "t", "cp")
    assert totals(rows)["paid_fen"] == 300 and totals(rows)["issued_fen"] == 900
    assert totals(rows)["refused_fen"] == 300
    assert audit(conn, "t")["paid_twice"] == 0


def test_savings_report_splits_by_labels_and_estimates_genuine_refusals(lite) -> None:
    S.create_campaign(lite, "t", "c", rules(tiers=[{"id": "a", "amount_fen": 100, "count": 100, "probability": 1}]))
    cs = codes(lite)
    for i, (acct, out) in enumerate([("g1", Outcome.PASS), ("f1", Outcome.PASS), ("r1", Outcome.REJECT),
                                     ("r2", Outcome.REJECT), ("r3", Outcome.REJECT), ("r4", Outcome.REJECT)]):
        S.scan(lite, "t", scan_ev(f"e{i}", cs[i], account=acct, device=None), dec(f"e{i}", out), SIGNER)
    db = open_database(str(lite.engine.url))
    add_label(db, "account", "f1", "fraud", tenant="t")
    add_label(db, "account", "r1", "genuine", tenant="t")
    add_label(db, "account", "r2", "fraud", tenant="t")
    rows = savings(lite, "t", "c")
    assert len(rows) == 1
    r = rows[0]
    assert (r["paid_fen"], r["paid_fraud_fen"], r["paid_genuine_fen"]) == (200, 100, 100)
    assert r["paid_gang_fen"] in (None, 0)
    assert (r["refused_fen"], r["refused_count"], r["refused_genuine_labelled_fen"]) == (400, 4, 100)
    # two unlabelled refusals, half the labelled ones were genuine: 100 + 200 * 1/2
    assert r["refused_unknown_fen"] == 200 and r["refused_genuine_est_fen"] == 200 and r["saved_net_fen"] == 200
    p = pressure(lite)
    assert p["campaigns"][0]["campaign_id"] == "c" and p["campaigns"][0]["money_targeted_fen"] == 500
    db.close()




@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 29), st.integers(0, 5), st.sampled_from(list(Outcome)), st.booleans(),
                          st.integers(0, 3)), min_size=1, max_size=40),
       st.integers(0, 3_000), st.integers(0, 6))
def test_property_any_sequence_keeps_every_promise(lite, ops, budget, cap_units) -> None:
    cid = f"c{abs(hash((tuple(ops), budget, cap_units))) % 10**12}"
    S.create_campaign(lite, "t", cid, rules(budget_fen=budget, daily_cap_fen=min(budget, cap_units * 300),
                                            limits={"account_day": 2, "device_campaign": 3},
                                            tiers=[{"id": "a", "amount_fen": 300, "count": 3, "probability": 0.4},
                                                   {"id": "b", "amount_fen": 100, "count": 8, "probability": 0.4}]))
    b = S.create_batch(lite, "t", cid, 30)
    cs = [c for _, c in SIGNER.batch(b, 30)]
    for i, (code, acct, outcome, passed, day) in enumerate(ops):
        eid = f"{cid}-{i % 35}"  # some event ids repeat: retries
        ev = Event(event_id=eid, kind=EventKind.SCAN, ts=T0 + day * DAY + i, campaign_id=cid, code_id=cs[code],
                   account=Account(id=f"u{acct}"), device=Device(id=f"d{acct % 3}"))
        r = S.scan(lite, "t", ev, dec(eid, outcome, Challenge.SMS if outcome is Outcome.VERIFY else None), SIGNER)
        if r.challenge_id and not r.replayed:
            res = (S.challenge_result(lite, "t", r.challenge_id, passed, ts=ev.ts + 1) if r.status == "challenge"
                   else S.review_verdict(lite, "t", r.challenge_id, passed, ts=ev.ts + 1))
            assert res.status in ("won", "lost", "refused", "limited", "exhausted")
    found = audit(lite, "t")
    assert found["overspent"] == 0 and found["paid_twice"] == 0, found["details"]


# ---------------------------------------------------------------------------------------------------
# Coupons that expire unredeemed give their budget back


def coupon_campaign(conn, cid: str, budget: int, cap: int | None = None, count: int = 1000) -> None:
    r = {"kind": "coupon", "start_ms": T0, "end_ms": T0 + 30 * DAY, "budget_fen": budget,
         "tiers": [{"id": "k", "amount_fen": 100, "count": count, "valid_days": 1}]}
    if cap is not None:
        r["daily_cap_fen"] = cap
    S.create_campaign(conn, "t", cid, r)


def claim_ev(eid: str, account: str, ts: int, cid: str) -> Event:
    return Event(event_id=eid, kind=EventKind.CLAIM, ts=ts, account=Account(id=account), campaign_id=cid)


_expiry_runs = iter(range(10**6))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(["claim", "redeem", "refund", "expire"]), st.integers(0, 5),
                                st.integers(0, 3)), min_size=1, max_size=30))
def test_expired_coupons_release_their_budget_exactly(lite, steps) -> None:
    cid = f"x{next(_expiry_runs)}"
    coupon_campaign(lite, cid, budget=300, cap=200, count=3)
    ts = T0
    ids: list[str] = []
    released = 0
    for i, (action, who, hours) in enumerate(steps):
        ts += hours * 9 * 3_600_000  # 0..27 h later: coupons (valid one day) expire along the way
        if action == "claim":
            res = S.claim(lite, "t", claim_ev(f"{cid}-{i}", f"u{who}", ts, cid), dec(f"{cid}-{i}"))
            if res.status == "won":
                ids.append(res.coupon_id)
        elif action in ("redeem", "refund") and ids:
            cp = ids[who % len(ids)]
            if action == "redeem":
                S.redeem(lite, "t", cp, f"o{who}", 500, ts=ts)
            else:
                S.refund(lite, "t", cp, f"o{who}", ts=ts)
        elif action == "expire":
            released += S.expire_coupons(lite, "t", ts=ts)
    released += S.expire_coupons(lite, "t", ts=ts + 2 * DAY)
    rows = ledger_rows(lite, "t", cid)
    issued = [r for r in rows if r["kind"] == "issued"]
    gone = [r for r in rows if r["kind"] == "released"]
    assert len(gone) == released and all(r["amount_fen"] == -100 for r in gone)
    # every coupon not redeemed at the end released exactly once; redeemed ones never
    redeemed_now = {c for c in ids if lite.execute(select(coupons.c.status).where(coupons.c.id == c)).scalar()
                    == "redeemed"}
    assert {r["coupon_id"] for r in gone} == {r["coupon_id"] for r in issued} - redeemed_now
    assert len({r["entry"] for r in gone}) == len(gone)
    state = S.campaign_state(lite, "t", cid)
    assert state["spent_fen"] == sum(r["amount_fen"] for r in issued + gone) == 100 * len(redeemed_now)
    assert state["tiers"][0]["remaining"] == 3 - len(redeemed_now)
    lite.commit()
    found = audit(lite, "t")
    assert (found["overspent"], found["paid_twice"]) == (0, 0), found["details"]
    lite.commit()


def test_a_released_coupon_frees_budget_for_new_claims_and_cannot_be_redeemed(lite) -> None:
    coupon_campaign(lite, "r", budget=100, cap=100)
    first = S.claim(lite, "t", claim_ev("r1", "u1", T0 + 1, "r"), dec("r1"))
    assert first.status == "won"
    assert S.claim(lite, "t", claim_ev("r2", "u2", T0 + 2, "r"), dec("r2")).status == "exhausted"
    assert S.expire_coupons(lite, "t", ts=T0 + DAY) == 0  # not yet expired (valid until T0 + 1 + DAY)
    assert S.expire_coupons(lite, "t", ts=T0 + DAY + 1) == 1
    assert S.expire_coupons(lite, "t", ts=T0 + DAY + 5) == 0  # released once
    late = S.redeem(lite, "t", first.coupon_id, "o1", 500, ts=T0 + 3)  # even with a clock that says it's early
    assert late.status == "refused" and "expired" in late.message
    # the day's cap and the budget are free again (a claim on the same calendar day fits)
    assert S.claim(lite, "t", claim_ev("r3", "u3", T0 + 3, "r"), dec("r3")).status == "won"
    assert audit(lite, "t")["overspent"] == 0
