"""The campaigns a brand would set up for the simulated traffic, and which of them pays each payout event.

The simulated campaign (``SimConfig.campaign_id``) pays four kinds of money; the demo registers one real
campaign (``woolguard.campaigns``) for each, with a budget, a daily cap, prize tiers with counts and
per-account / device limits, and settles every payout event through the campaigns ledger:

============================ ======= ===============================================================
``<id>``                     scan    red packets drawn by ``claim`` events (the new-user packet on an
                                     account's first claim), ``claims_per_day`` per account and day
``<id>.codes``               scan    one-item-one-code prizes (``scan`` events): each code pays once
``<id>.invite``              scan    invite rewards: ``accept_invite`` 1 yuan, ``assist`` 0.1, ``task`` 0.2
``<id>.coupons``             coupon  coupons used at checkout (``redeem`` events): issued and redeemed
============================ ======= ===============================================================

The simulator already drew each prize (``event.value``); the payout names the tier of that amount.
Budgets, daily caps and tier counts are the brand's forecast at the run's scale with headroom (they
bind only when fraud drains them); limits are the campaign's published rules.
"""

from __future__ import annotations

import math
from typing import Any

from woolguard.campaigns.batch import Payout
from woolguard.events import Decision, Event, EventKind, Outcome
from woolguard.sim.world import NEW_USER_TIERS, PRIZE_TIERS

#: Forecast at scale 1 (draws per campaign) and the headroom budgets and counts get over it.
FORECAST = {"claims": 100_000, "new_user": 12_000, "scans": 18_000, "accept": 2_500, "assist": 8_000,
            "task": 6_000, "redeem": 4_500}
HEADROOM = 1.5
BUDGET_HEADROOM = 1.25
COUPON_FACES = (3.0, 5.0, 10.0, 20.0)
INVITE = {EventKind.ACCEPT_INVITE: 1.0, EventKind.ASSIST: 0.1, EventKind.TASK: 0.2}


def fen(yuan: float) -> int:
    return round(yuan * 100)


def tier_id(amount_fen: int) -> str:
    return f"f{amount_fen}"


def _count(expected: float, scale: float) -> int:
    return max(1, math.ceil(expected * scale * HEADROOM))


def campaign_rules(info: dict[str, Any], scale: float = 1.0) -> dict[str, dict[str, Any]]:
    """``{campaign id: rules document}`` for the simulated campaign ``info`` (``sim.campaign_info``)."""
    cid, start, end = info["campaign_id"], int(info["start_ms"]), int(info["end_ms"])
    days = max(1, math.ceil((end - start) / 86_400_000))
    per_day = int(info.get("claims_per_day", 3))
    cum = [0.0, *NEW_USER_TIERS.cum]
    new_user = [(v, (cum[i + 1] - cum[i]) / NEW_USER_TIERS.total) for i, v in enumerate(NEW_USER_TIERS.items)]
    base = {"start_ms": start, "end_ms": end, "tz_offset_hours": 8}

    def budget(tiers: list[dict[str, Any]], daily: bool = True) -> dict[str, Any]:
        # tier counts carry HEADROOM over the forecast: the budget is the forecast's value with less
        total = math.ceil(sum(t["amount_fen"] * t["count"] for t in tiers) * BUDGET_HEADROOM / HEADROOM)
        out: dict[str, Any] = {"budget_fen": total}
        if daily:  # a day may take half the campaign's budget (the opening day is the busiest)
            out["daily_cap_fen"] = min(total, math.ceil(total * max(0.5, 1.0 / days)))
        return out

    draws = [{"id": tier_id(fen(v)), "amount_fen": fen(v), "count": _count(FORECAST["claims"] * p, scale),
              "probability": p} for v, p in PRIZE_TIERS]
    draws += [{"id": tier_id(fen(v)), "amount_fen": fen(v), "count": _count(FORECAST["new_user"] * p, scale)}
              for v, p in new_user]
    codes = [{"id": tier_id(fen(v)), "amount_fen": fen(v), "count": _count(FORECAST["scans"] * p, scale),
              "probability": p} for v, p in PRIZE_TIERS]
    invite = [{"id": tier_id(fen(v)), "amount_fen": fen(v), "count": _count(FORECAST[k], scale)}
              for k, v in (("accept", 1.0), ("assist", 0.1), ("task", 0.2))]
    coupons = [{"id": tier_id(fen(v)), "amount_fen": fen(v), "valid_days": 7,
                "count": _count(FORECAST["redeem"] / len(COUPON_FACES), scale)} for v in COUPON_FACES]
    return {
        cid: {**base, "kind": "scan", "name": "red packets", "tiers": draws, **budget(draws),
              "limits": {"account_day": per_day, "device_day": 2 * per_day}},
        f"{cid}.codes": {**base, "kind": "scan", "name": "one item one code", "tiers": codes, **budget(codes),
                         "limits": {"account_day": 10}},
        f"{cid}.invite": {**base, "kind": "scan", "name": "invite rewards", "tiers": invite, **budget(invite),
                          "limits": {"account_day": 10}},
        f"{cid}.coupons": {**base, "kind": "coupon", "name": "checkout coupons", "tiers": coupons,
                           **budget(coupons, daily=False), "limits": {"account_day": 2}},
    }


def payout_for(info: dict[str, Any], event: Event, decision: Decision, passed: bool) -> Payout | None:
    """The payout an event of the simulated campaign asks for (None: not a payout of these campaigns)."""
    cid = info["campaign_id"]
    if event.campaign_id not in (None, cid) or not event.value:
        return None
    kind = event.kind
    code = None
    order = None
    if kind is EventKind.CLAIM:
        target = cid
    elif kind is EventKind.SCAN:
        target, code = f"{cid}.codes", event.code_id
    elif kind in INVITE:
        target = f"{cid}.invite"
    elif kind is EventKind.REDEEM:
        target = f"{cid}.coupons"
        order = fen(event.amount) if event.amount is not None else None
    else:
        return None
    outcome = decision.outcome
    return Payout(
        campaign_id=target, event_id=event.event_id, account=event.account.id, ts=event.ts,
        tier_id=tier_id(fen(event.value)), outcome=outcome.value, decision_id=decision.decision_id, passed=passed,
        challenge=decision.challenge.value if (outcome is Outcome.VERIFY and decision.challenge) else None,
        reasons=",".join(r.code for r in decision.reasons if not r.shadow)[:200],
        device=event.device.id if event.device else None, phone=event.phone_hash, code=code,
        order_amount_fen=order)


DEMO_NOTE = "woolguard demo"


def setup_campaigns(conn: Any, tenant: str, info: dict[str, Any], scale: float = 1.0) -> list[str]:
    """Create the simulated campaign's payout campaigns (replacing those of an earlier demo run in this
    database); returns their ids. A campaign of the same id that the demo did not create is left alone and
    refused with :class:`~woolguard.campaigns.CampaignError`."""
    from sqlalchemy import delete, select

    from woolguard.campaigns import CampaignError
    from woolguard.campaigns import service as S
    from woolguard.storage.schema import (
        campaign_counters,
        campaign_versions,
        campaigns_t,
        challenges,
        code_batches,
        coupons,
        ledger,
        prize_tiers,
        used_codes,
    )

    rules = campaign_rules(info, scale)
    ids = list(rules)

    def reset(c: Any) -> None:
        cv = campaign_versions.c
        notes = dict(c.execute(select(cv.campaign_id, cv.note).where(cv.tenant_id == tenant, cv.version == 1,
                                                                     cv.campaign_id.in_(ids))).all())
        for cid, note in notes.items():
            if note != DEMO_NOTE:
                raise CampaignError(f"campaign {cid!r} exists in tenant {tenant!r} and was not made by the demo; "
                                    "use another database (--db)")
        for t in (ledger, coupons, challenges, used_codes, campaign_counters, prize_tiers, campaign_versions,
                  code_batches):
            c.execute(delete(t).where(t.c.tenant_id == tenant, t.c.campaign_id.in_(list(notes))))
        c.execute(delete(campaigns_t).where(campaigns_t.c.tenant_id == tenant, campaigns_t.c.id.in_(list(notes))))

    S.in_transaction(conn, reset)
    for cid, doc in rules.items():
        S.create_campaign(conn, tenant, cid, doc, note=DEMO_NOTE)
    return ids
