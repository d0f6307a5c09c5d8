"""Payouts settled in batches (campaigns.batch): the same results and rows as the online path, exact
budgets and limits, idempotent re-runs, and exact alongside online writers on PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from woolguard.campaigns import service as S
from woolguard.campaigns.batch import Payout, PayoutBook, Settled
from woolguard.campaigns.ledger import audit
from woolguard.events import Account, Challenge, Decision, Device, Event, EventKind, Outcome
from woolguard.storage import open_database
from woolguard.storage.schema import ledger

T0 = 1_750_000_000_000
DAY = 86_400_000
TENANT = "t"


def coupon_rules(budget: int = 2_000, cap: int | None = 1_200, account_day: int | None = 2,
                 device_day: int | None = 3) -> dict:
    limits = {k: v for k, v in (("account_day", account_day), ("device_day", device_day)) if v is not None}
    r = {"kind": "coupon", "start_ms": T0, "end_ms": T0 + 3 * DAY, "budget_fen": budget,
         "tiers": [{"id": "a", "amount_fen": 300, "count": 4}, {"id": "b", "amount_fen": 100, "count": 50}],
         "limits": limits}
    if cap is not None:
        r["daily_cap_fen"] = cap
    return r


def dec(eid: str, outcome: Outcome) -> Decision:
    return Decision(decision_id="d_" + eid, event_id=eid, level=0, outcome=outcome, score=0, reasons=[],
                    challenge=Challenge.SMS if outcome is Outcome.VERIFY else None)


# one claim: (account, device, tier, outcome, passed, day)
claims = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.sampled_from(["a", "b"]),
                            st.sampled_from([Outcome.PASS, Outcome.PASS, Outcome.REJECT, Outcome.VERIFY,
                                             Outcome.REVIEW]),
                            st.booleans(), st.integers(0, 2)), min_size=1, max_size=40)


def _online(conn, tenant: str, items) -> list[tuple[str, int]]:
    out = []
    for i, (acct, dev, tier, outcome, passed, day) in enumerate(items):
        ts = T0 + day * DAY + i * 1000
        ev = Event(event_id=f"e{i}", kind=EventKind.CLAIM, ts=ts, account=Account(id=f"u{acct}"),
                   device=Device(id=f"d{dev}"), campaign_id="c")
        res = S.claim(conn, tenant, ev, dec(f"e{i}", outcome), tier_id=tier)
        if res.status == "challenge":
            res = S.challenge_result(conn, tenant, res.challenge_id, passed, ts=ts)
        elif res.status == "review":
            res = S.review_verdict(conn, tenant, res.challenge_id, passed, ts=ts)
        out.append((res.status, res.amount_fen if res.status in ("won", "refused") else 0))
    return out


def _payouts(items) -> list[Payout]:
    return [Payout(campaign_id="c", event_id=f"e{i}", account=f"u{acct}", device=f"d{dev}",
                   ts=T0 + day * DAY + i * 1000, tier_id=tier, outcome=outcome.value, decision_id=f"d_e{i}",
                   passed=passed, challenge="sms" if outcome is Outcome.VERIFY else None)
            for i, (acct, dev, tier, outcome, passed, day) in enumerate(items)]


def _ledger_view(conn, tenant: str) -> list[tuple]:
    rows = conn.execute(select(ledger.c.entry, ledger.c.kind, ledger.c.amount_fen, ledger.c.tier_id, ledger.c.day,
                               ledger.c.account_id, ledger.c.device_id, ledger.c.decision_id, ledger.c.outcome)
                        .where(ledger.c.tenant_id == tenant).order_by(ledger.c.entry)).all()
    conn.commit()
    return [tuple(r) for r in rows]


@pytest.fixture(scope="module")
def two_dbs(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("batch")
    online_db, batch_db = open_database(f"sqlite:///{tmp / 'on.db'}"), open_database(f"sqlite:///{tmp / 'b.db'}")
    with online_db.connect() as c1, batch_db.connect() as c2:
        yield c1, c2, itertools.count()
    online_db.close()
    batch_db.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=claims, batch=st.integers(1, 16))
def test_batches_settle_like_the_online_path(two_dbs, items, batch: int) -> None:
    c1, c2, n = two_dbs
    tenant = f"t{next(n)}"  # a fresh tenant (and campaign) per example
    S.create_campaign(c1, tenant, "c", coupon_rules())
    S.create_campaign(c2, tenant, "c", coupon_rules())
    want = _online(c1, tenant, items)
    got: list[tuple[str, int]] = []
    book = PayoutBook(c2, tenant, batch_size=batch,
                      on_settled=lambda p, r, ctx: got.append((r.status, r.amount_fen)))
    for p in _payouts(items):
        book.add(p)
    book.flush()
    assert got == want
    assert _ledger_view(c2, tenant) == _ledger_view(c1, tenant)
    for c in (c1, c2):
        found = audit(c, tenant)
        c.commit()
        assert (found["overspent"], found["paid_twice"]) == (0, 0), found["details"]
    assert S.get_campaign(c2, tenant, "c").spent_fen <= 2_000
    c2.commit()


def test_a_settled_batch_settled_again_pays_nothing_more(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'wg.db'}")
    with db.connect() as c:
        S.create_campaign(c, TENANT, "c", {**coupon_rules(budget=100_000, cap=None, account_day=None,
                                                          device_day=None),
                                           "tiers": [{"id": "a", "amount_fen": 300, "count": 1000}]})
        payouts = [Payout(campaign_id="c", event_id=f"e{i}", account=f"u{i}", ts=T0 + i, tier_id="a",
                          outcome="pass" if i % 3 else "reject", order_amount_fen=250 if i % 2 else None)
                   for i in range(30)]
        first: list[Settled] = []
        again: list[Settled] = []
        book = PayoutBook(c, TENANT, batch_size=7, on_settled=lambda p, r, ctx: first.append(r))
        for p in payouts:
            book.add(p)
        book.flush()
        n = c.execute(select(func.count()).select_from(ledger)).scalar_one()
        c.commit()
        book = PayoutBook(c, TENANT, batch_size=100, on_settled=lambda p, r, ctx: again.append(r))
        for p in [*payouts, payouts[0]]:  # the whole stream again, and one event twice in a batch
            book.add(p)
        book.flush()
        assert c.execute(select(func.count()).select_from(ledger)).scalar_one() == n
        assert all(r.replayed for r in again)
        assert [(r.status, r.amount_fen) for r in again[:-1]] == [(r.status, r.amount_fen) for r in first]
        # redeemed coupons: the discount min(face, order) is what was paid
        assert {(r.status, r.paid_fen) for r in first} == {("won", 250), ("won", 0), ("refused", 0)}
        assert {r.amount_fen for r in first} == {300}
        assert audit(c, TENANT)["paid_twice"] == 0
    db.close()


def test_a_code_pays_once_across_batches_and_with_the_online_path(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'wg.db'}")
    with db.connect() as c:
        S.create_campaign(c, TENANT, "s", {"kind": "scan", "start_ms": T0, "end_ms": T0 + DAY, "budget_fen": 10_000,
                                           "tiers": [{"id": "x", "amount_fen": 50, "count": 100,
                                                      "probability": 1.0}]})
        got: list[str] = []
        book = PayoutBook(c, TENANT, batch_size=2, on_settled=lambda p, r, ctx: got.append(r.status))
        for i, code in enumerate(["K1", "K2", "K1", "K3", "K2"]):
            book.add(Payout(campaign_id="s", event_id=f"e{i}", account=f"u{i}", ts=T0 + i, tier_id="x",
                            outcome="pass", code=code))
        book.flush()
        assert got == ["won", "won", "used", "won", "used"]
        assert c.execute(select(func.sum(ledger.c.amount_fen))).scalar_one() == 150
    db.close()


def test_batches_and_online_clients_together_stay_exact_on_postgresql(pg_url: str) -> None:
    db = open_database(pg_url, pool_size=12, max_overflow=4)
    budget = 3_000
    with db.connect() as c:
        S.create_campaign(c, TENANT, "c", {**coupon_rules(budget=budget, cap=None, account_day=3, device_day=None),
                                           "tiers": [{"id": "a", "amount_fen": 100, "count": 25}]})
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def batch_writer(w: int) -> None:
        try:
            with db.connect() as c:
                barrier.wait(30)
                book = PayoutBook(c, TENANT, batch_size=5)
                for i in range(20):
                    book.add(Payout(campaign_id="c", event_id=f"b{w}-{i}", account=f"u{i % 7}", ts=T0 + i,
                                    tier_id="a", outcome="pass"))
                book.flush()
        except BaseException as exc:
            errors.append(exc)

    def online_writer(w: int) -> None:
        try:
            with db.connect() as c:
                barrier.wait(30)
                for i in range(20):
                    ev = Event(event_id=f"o{w}-{i}", kind=EventKind.CLAIM, ts=T0 + i, account=Account(id=f"u{i % 7}"),
                               campaign_id="c")
                    S.claim(c, TENANT, ev, dec(ev.event_id, Outcome.PASS), tier_id="a")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=batch_writer if w % 2 else online_writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with db.connect() as c:
        found = audit(c, TENANT)
        assert (found["overspent"], found["paid_twice"]) == (0, 0), found["details"]
        issued = c.execute(select(func.count()).where(ledger.c.kind == "issued")).scalar_one()
        # 7 accounts x 3 a day = 21 participations allowed, 25 coupons: the limits bind, nothing more
        assert issued == 21
    db.close()
