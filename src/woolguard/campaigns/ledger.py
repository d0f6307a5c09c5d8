"""The budget ledger, read back: rows per campaign, and the audit that re-checks every promise from them.

Kinds of ledger rows (amounts in fen):

========== ==================================================================================
paid       a prize (red packet) paid to the scanner
issued     a coupon given out; its face value is committed against the budget
redeemed   a coupon used at checkout (核销): the discount actually spent
reversed   a refund or return reversing a redemption (negative amount)
refused    a payout the decision (or a failed / expired challenge, or an analyst) refused: the amount it
           would have cost, i.e. money saved
held       a payout waiting on a challenge or a review (informational; resolved by a paid or refused row)
released   a coupon that expired unredeemed gives its face value back to the budget (negative amount; its
           ``day`` is the claim's day, whose cap it frees)
========== ==================================================================================

:func:`audit` recomputes, from the ledger alone, what the counters promised: no tier gave more than its
count, no campaign more than its budget, no day more than its cap, no account / device / phone more
prizes than its limits allow, no code or event paid twice, no coupon redeemed twice without a refund in
between. ``bench/campaigns.py`` and the concurrency tests report its figures.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from typing import IO, Any

from sqlalchemy import Connection, case, func, select

from woolguard.campaigns.models import parse_rules
from woolguard.storage.schema import campaign_versions, campaigns_t, ledger, prize_tiers

#: Kinds that commit budget: a prize paid or a coupon issued, net of coupons released at expiry.
COMMIT_KINDS = ("paid", "issued", "released")
LEDGER_FIELDS = ("id", "campaign_id", "entry", "kind", "amount_fen", "tier_id", "day", "ts", "account_id",
                 "device_id", "phone", "code", "coupon_id", "event_id", "decision_id", "outcome", "reason")


def ledger_rows(conn: Connection, tenant: str, campaign_id: str | None = None, kind: str | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
    q = select(*[ledger.c[f] for f in LEDGER_FIELDS]).where(ledger.c.tenant_id == tenant)
    if campaign_id is not None:
        q = q.where(ledger.c.campaign_id == campaign_id)
    if kind is not None:
        q = q.where(ledger.c.kind == kind)
    q = q.order_by(ledger.c.id)
    if limit is not None:
        q = q.limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


def write_ledger_csv(out: IO[str], rows: list[dict[str, Any]]) -> None:
    w = csv.DictWriter(out, fieldnames=LEDGER_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)


def audit(conn: Connection, tenant: str | None = None) -> dict[str, Any]:
    """Violations found by re-reading the ledger: ``overspent`` and ``paid_twice`` must both be 0.

    ``details`` lists each violation; ``spent_mismatch`` counts campaigns whose ``spent_fen`` counter
    disagrees with the ledger's committed sum (a bookkeeping bug, counted in ``overspent``).
    """
    lw = [] if tenant is None else [ledger.c.tenant_id == tenant]
    cw = [] if tenant is None else [campaigns_t.c.tenant_id == tenant]
    details: list[str] = []
    overspent = 0
    paid_twice = 0
    camps = {(r.tenant_id, r.id): r for r in conn.execute(select(campaigns_t).where(*cw))}
    rules = {}
    for r in conn.execute(select(campaign_versions.c.tenant_id, campaign_versions.c.campaign_id,
                                 campaign_versions.c.version, campaign_versions.c.rules)):
        key = (r.tenant_id, r.campaign_id)
        if key in camps and r.version == camps[key].version:
            rules[key] = parse_rules(r.rules)
    tiers = {(r.tenant_id, r.campaign_id, r.tier_id): r.count for r in conn.execute(select(prize_tiers))}

    commit = [*lw, ledger.c.kind.in_(COMMIT_KINDS)]
    # budgets
    for t, cid, total in conn.execute(select(ledger.c.tenant_id, ledger.c.campaign_id, func.sum(ledger.c.amount_fen))
                                      .where(*commit).group_by(ledger.c.tenant_id, ledger.c.campaign_id)):
        camp = camps.get((t, cid))
        if camp is None:
            continue
        if total > camp.budget_fen:
            overspent += 1
            details.append(f"{t}/{cid}: committed {total} > budget {camp.budget_fen}")
        if total != camp.spent_fen:
            overspent += 1
            details.append(f"{t}/{cid}: spent_fen counter {camp.spent_fen} != ledger {total}")
    # tier counts
    net_one = case((ledger.c.kind == "released", -1), else_=1)
    for t, cid, tier, n in conn.execute(select(ledger.c.tenant_id, ledger.c.campaign_id, ledger.c.tier_id,
                                               func.sum(net_one))
                                        .where(*commit).group_by(ledger.c.tenant_id, ledger.c.campaign_id,
                                                                 ledger.c.tier_id)):
        cap = tiers.get((t, cid, tier))
        if cap is not None and n > cap:
            overspent += 1
            details.append(f"{t}/{cid}: tier {tier} gave {n} > count {cap}")
    # daily caps and per-entity limits (prizes given never exceed participations allowed)
    per_day: dict[tuple[str, str, int], int] = defaultdict(int)
    per_entity: Counter[tuple[str, str, str, str, int]] = Counter()
    for r in conn.execute(select(ledger.c.tenant_id, ledger.c.campaign_id, ledger.c.day, ledger.c.amount_fen,
                                 ledger.c.kind, ledger.c.account_id, ledger.c.device_id, ledger.c.phone)
                          .where(*commit)):
        per_day[(r.tenant_id, r.campaign_id, r.day)] += r.amount_fen
        if r.kind == "released":  # limits count participations: an expired coupon gives none back
            continue
        for entity, value in (("account", r.account_id), ("device", r.device_id), ("phone", r.phone)):
            if value is not None:
                per_entity[(r.tenant_id, r.campaign_id, entity, value, r.day)] += 1
                per_entity[(r.tenant_id, r.campaign_id, entity, value, 0)] += 1
    for (t, cid, day), total in per_day.items():
        rl = rules.get((t, cid))
        if rl is not None and rl.daily_cap_fen is not None and total > rl.daily_cap_fen:
            overspent += 1
            details.append(f"{t}/{cid}: day {day} committed {total} > daily cap {rl.daily_cap_fen}")
    for (t, cid, entity, value, day), n in per_entity.items():
        rl = rules.get((t, cid))
        if rl is None:
            continue
        limit = getattr(rl.limits, f"{entity}_{'day' if day else 'campaign'}")
        if limit is not None and n > limit:
            overspent += 1
            details.append(f"{t}/{cid}: {entity} {value} got {n} > limit {limit} ({day or 'campaign'})")
    # paid twice: a code, an event, a coupon redeemed twice with no refund between
    for key, n in conn.execute(select(ledger.c.code, func.count()).where(*lw, ledger.c.kind == "paid",
                                                                       ledger.c.code.is_not(None))
                               .group_by(ledger.c.tenant_id, ledger.c.code).having(func.count() > 1)):
        paid_twice += n - 1
        details.append(f"code {key} paid {n} times")
    for key, n in conn.execute(select(ledger.c.event_id, func.count()).where(*lw, ledger.c.kind.in_(("paid", "issued")),
                                                                        ledger.c.event_id.is_not(None))
                               .group_by(ledger.c.tenant_id, ledger.c.event_id).having(func.count() > 1)):
        paid_twice += n - 1
        details.append(f"event {key} paid {n} times")
    net: Counter[tuple[str, str]] = Counter()
    for r in conn.execute(select(ledger.c.tenant_id, ledger.c.coupon_id, ledger.c.kind)
                          .where(*lw, ledger.c.kind.in_(("redeemed", "reversed"))).order_by(ledger.c.id)):
        key = (r.tenant_id, r.coupon_id)
        net[key] += 1 if r.kind == "redeemed" else -1
        if net[key] > 1:
            paid_twice += 1
            details.append(f"coupon {r.coupon_id} redeemed twice without a refund")
    return {"overspent": overspent, "paid_twice": paid_twice, "details": details[:50]}
