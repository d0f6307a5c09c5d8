"""Exact money under concurrency on real PostgreSQL: 32+ clients, each with its own connection, scanning,
retrying, resolving challenges, claiming, redeeming and refunding at once; the ledger is then re-read."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from woolguard.campaigns import CodeSigner
from woolguard.campaigns import service as S
from woolguard.campaigns.ledger import audit
from woolguard.events import Account, Challenge, Decision, Device, Event, EventKind, Outcome
from woolguard.storage import open_database
from woolguard.storage.schema import campaigns_t, ledger, prize_tiers

CLIENTS = 32
T0 = 1_750_000_000_000
TENANT = "brand"


def run_clients(n: int, work: Callable[[int, object], None], db) -> list[BaseException]:
    """``work(i, conn)`` in ``n`` threads, each with its own connection, released together."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            with db.connect() as conn:
                barrier.wait(30)
                work(i, conn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def decision(event_id: str, outcome: Outcome) -> Decision:
    return Decision(decision_id="d_" + event_id, event_id=event_id, level=0, outcome=outcome, score=0,
                    reasons=[], challenge=Challenge.SMS if outcome is Outcome.VERIFY else None)


@pytest.fixture
def db(pg_url: str):
    database = open_database(pg_url, pool_size=CLIENTS + 4, max_overflow=8)
    yield database
    database.close()


def test_scan_to_win_is_exact_with_32_clients(db) -> None:
    rules = {"kind": "scan", "start_ms": T0, "end_ms": T0 + 10 * 86_400_000, "budget_fen": 9_000,
             "daily_cap_fen": 7_000,
             "tiers": [{"id": "gold", "amount_fen": 1_000, "count": 4, "probability": 0.10},
                       {"id": "red", "amount_fen": 100, "count": 60, "probability": 0.50}],
             "limits": {"account_day": 2, "device_campaign": 3}}
    signer = CodeSigner.for_tenant(b"test-secret", TENANT)
    with db.connect() as conn:
        S.create_campaign(conn, TENANT, "c", rules)
        batch = S.create_batch(conn, TENANT, "c", 5_000)
    per_client = 14
    codes = [code for _, code in signer.batch(batch, CLIENTS * per_client)]
    outcomes = [Outcome.PASS] * 6 + [Outcome.REJECT, Outcome.VERIFY, Outcome.REVIEW]
    results: list[S.ActionResult] = []
    lock = threading.Lock()

    def work(i: int, conn) -> None:
        rng = random.Random(i)
        for j in range(per_client):
            k = i * per_client + j
            # other clients' codes too: the same code is scanned by several clients at once
            code = codes[k] if rng.random() < 0.7 else codes[rng.randrange(len(codes))]
            eid = f"e{k}"
            ev = Event(event_id=eid, kind=EventKind.SCAN, ts=T0 + k, campaign_id="c", code_id=code,
                       account=Account(id=f"a{k % 40}"), device=Device(id=f"dev{k % 50}"))
            d = decision(eid, outcomes[k % len(outcomes)])
            r = S.scan(conn, TENANT, ev, d, signer)
            again = S.scan(conn, TENANT, ev, d, signer)  # a retried request
            assert again.status == r.status and again.amount_fen == r.amount_fen, (r, again)
            with lock:
                results.extend([r])

    assert run_clients(CLIENTS, work, db) == []
    # every challenge and review resolved by two clients at once (a double-submitted result)
    with db.connect() as conn:
        pending = S.list_challenges(conn, TENANT, status="pending", limit=10_000)
    assert pending

    def resolve(i: int, conn) -> None:
        for ch in pending[i // 2::CLIENTS // 2]:
            if ch["outcome"] == "verify":
                S.challenge_result(conn, TENANT, ch["id"], passed=ch["account_id"] != "a1", ts=T0 + 1000)
            else:
                S.review_verdict(conn, TENANT, ch["id"], approve=True, analyst="x", ts=T0 + 1000)

    assert run_clients(CLIENTS, resolve, db) == []
    with db.connect() as conn:
        found = audit(conn, TENANT)
        assert found["overspent"] == 0 and found["paid_twice"] == 0, found["details"]
        paid = conn.execute(select(ledger.c.tier_id, func.count(), func.sum(ledger.c.amount_fen))
                            .where(ledger.c.kind == "paid").group_by(ledger.c.tier_id)).all()
        by_tier = {t: (n, s) for t, n, s in paid}
        total = sum(s for _, s in by_tier.values())
        tiers = {r.tier_id: r for r in conn.execute(select(prize_tiers))}
        spent = conn.execute(select(campaigns_t.c.spent_fen)).scalar_one()
        # counters and ledger agree, exactly
        assert spent == total <= 7_000
        for tier_id, (n, _) in by_tier.items():
            assert tiers[tier_id].count - tiers[tier_id].remaining == n <= tiers[tier_id].count
        # each code paid at most once, each event at most once
        codes_paid = Counter(conn.execute(select(ledger.c.code).where(ledger.c.kind == "paid")).scalars())
        assert codes_paid and max(codes_paid.values()) == 1
        assert Counter(r.status for r in results)["used"] > 0
        # contention really happened: the daily cap (7,000) bound before the budget (9,000)
        assert total > 6_000


def test_coupons_are_exact_with_32_clients(db) -> None:
    rules = {"kind": "coupon", "start_ms": T0, "end_ms": T0 + 10 * 86_400_000, "budget_fen": 100_000,
             "tiers": [{"id": "c5", "amount_fen": 500, "count": 40, "min_order_fen": 1_000}],
             "limits": {"account_campaign": 1}}
    with db.connect() as conn:
        S.create_campaign(conn, TENANT, "cp", rules)
    issued: list[str] = []
    lock = threading.Lock()

    def claim(i: int, conn) -> None:
        for j in range(4):
            eid = f"claim{i}-{j % 3}"  # j=3 retries j=0
            ev = Event(event_id=eid, kind=EventKind.CLAIM, ts=T0 + i, campaign_id="cp",
                       account=Account(id=f"u{(i * 4 + j) % 70}"))
            r = S.claim(conn, TENANT, ev, decision(eid, Outcome.PASS))
            if r.status == "won" and not r.replayed:
                with lock:
                    issued.append(r.coupon_id)

    assert run_clients(CLIENTS, claim, db) == []
    assert len(issued) == len(set(issued)) == 40  # demand (70 accounts) > supply (40)

    def redeem(i: int, conn) -> None:  # two clients race on each coupon, with different orders
        coupon = issued[i % len(issued)] if i < 2 * len(issued) else issued[0]
        for _ in range(2):
            S.redeem(conn, TENANT, coupon, f"o{i}", 2_000, ts=T0 + 10)
        if i % 4 == 0:  # a return, sent twice
            S.refund(conn, TENANT, coupon, f"o{i}", ts=T0 + 20)
            S.refund(conn, TENANT, coupon, f"o{i}", ts=T0 + 20)

    assert run_clients(CLIENTS, redeem, db) == []
    with db.connect() as conn:
        found = audit(conn, TENANT)
        assert found["overspent"] == 0 and found["paid_twice"] == 0, found["details"]
        kinds = dict(conn.execute(select(ledger.c.kind, func.count()).group_by(ledger.c.kind)).all())
        assert kinds["issued"] == 40
        assert kinds["redeemed"] - kinds.get("reversed", 0) <= 32
        assert conn.execute(select(campaigns_t.c.spent_fen).where(campaigns_t.c.id == "cp")).scalar_one() == 40 * 500


def test_coupon_expiry_races_redemptions_exactly(db) -> None:
    rules = {"kind": "coupon", "start_ms": T0, "end_ms": T0 + 10 * 86_400_000, "budget_fen": 100_000,
             "daily_cap_fen": 100_000, "tiers": [{"id": "k", "amount_fen": 100, "count": 1000, "valid_days": 1}]}
    n = 60
    with db.connect() as conn:
        S.create_campaign(conn, TENANT, "exp", rules)
        ids = []
        for i in range(n):
            ev = Event(event_id=f"x{i}", kind=EventKind.CLAIM, ts=T0 + i, account=Account(id=f"u{i}"),
                       campaign_id="exp")
            ids.append(S.claim(conn, TENANT, ev, decision(f"x{i}", Outcome.PASS)).coupon_id)
    after = T0 + 2 * 86_400_000
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def work(i: int, conn) -> None:
        if i % 2:  # expirers
            S.expire_coupons(conn, TENANT, ts=after)
            return
        order = list(range(n)) if i % 4 else list(reversed(range(n)))
        for j in order:  # redeemers whose clock still says the coupon is valid
            res = S.redeem(conn, TENANT, ids[j], f"o{j}", 500, ts=T0 + j + 1)
            with lock:
                outcomes[res.status if not res.replayed else "replayed"] += 1

    assert not run_clients(CLIENTS, work, db)
    with db.connect() as conn:
        S.expire_coupons(conn, TENANT, ts=after)
        kinds = Counter(k for k, in conn.execute(select(ledger.c.kind).where(ledger.c.campaign_id == "exp")))
        redeemed, released = kinds["redeemed"], kinds["released"]
        assert kinds["issued"] == n and redeemed + released == n, kinds
        spent = conn.execute(select(campaigns_t.c.spent_fen).where(campaigns_t.c.id == "exp")).scalar_one()
        assert spent == 100 * redeemed
        found = audit(conn, TENANT)
        assert (found["overspent"], found["paid_twice"]) == (0, 0), found["details"]
