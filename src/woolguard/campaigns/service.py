"""Campaign actions: create / version, scan a code, claim / redeem / refund a coupon, challenge results and
review verdicts. Pure functions over a SQLAlchemy :class:`~sqlalchemy.Connection`, so the API and the CLI
are thin.

Every action that moves money runs in one transaction of its own (the functions begin and commit it:
hand them a connection with no transaction open), and is exact under concurrency on PostgreSQL at READ
COMMITTED without SERIALIZABLE retries:

- counters change only by conditional statements that re-check their condition on the locked row
  (``UPDATE prize_tiers SET remaining = remaining - 1 WHERE remaining >= 1``, ``UPDATE campaigns SET
  spent_fen = spent_fen + :a WHERE spent_fen + :a <= budget_fen``, and ``INSERT .. ON CONFLICT DO UPDATE
  .. WHERE used + :n <= :limit`` for daily caps and per-entity limits), each ``RETURNING`` whether it won;
- a code is claimed by inserting its ``used_codes`` row (primary key (tenant, code)): a second scan of the
  code, at once or later, finds the first one's row;
- every ledger row has a unique ``entry`` per tenant (``scan:<event id>``...), and a retried request (same
  event id) reads back its first result instead of acting again;
- rows are always locked in one order (code, limits account → device → phone, tier, campaign budget,
  daily budget), so concurrent actions cannot deadlock each other.

A decision gates each payout: ``reject`` → refused (a ``refused`` ledger row with the money it would have
cost); ``verify`` → a pending challenge with a deadline (``challenge_result``); ``review`` → held for an
analyst (``review_verdict``); ``pass`` → limits, the prize draw and the budgets.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.exc import DBAPIError

from woolguard.campaigns.codes import CodeSigner
from woolguard.campaigns.models import PPM, PrizeTier, Rules, RulesError, parse_rules, rules_to_dict
from woolguard.campaigns.policies import check_ref
from woolguard.events import Decision, Event, Outcome
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

T = TypeVar("T")


class CampaignError(LookupError):
    """Something named does not exist or cannot be done (campaign, batch, coupon, challenge)."""


@dataclass(slots=True)
class Campaign:
    tenant: str
    id: str
    version: int
    rules: Rules
    spent_fen: int
    paused: bool


@dataclass(slots=True)
class ActionResult:
    """What a scan, claim, challenge result or verdict came to. ``status`` is one of:

    ``won`` (prize paid / coupon issued), ``lost`` (the draw gave nothing), ``exhausted`` (the tier, the
    budget or the daily cap ran out), ``limited`` (a per-account / device / phone limit), ``refused`` (the
    decision, a failed or expired challenge, or an analyst refused it), ``challenge`` (pass the named
    challenge before ``deadline_ms``), ``review`` (held for an analyst), ``used`` (the code was scanned
    before: ``used_by``, ``used_at``), ``invalid_code`` (forged, altered, mistyped or unknown batch),
    ``not_running`` (outside the window or paused), ``ineligible`` (outside the campaign's regions).
    """

    status: str
    campaign_id: str | None = None
    event_id: str | None = None
    decision_id: str | None = None
    outcome: str | None = None
    tier_id: str | None = None
    amount_fen: int = 0
    code: str | None = None
    coupon_id: str | None = None
    challenge_id: str | None = None
    challenge: str | None = None
    deadline_ms: int | None = None
    used_by: str | None = None
    used_at: int | None = None
    message: str = ""
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------------
# Transactions


def _retryable(exc: DBAPIError) -> bool:
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return code in ("40001", "40P01") or "database is locked" in str(exc)


def in_transaction(conn: Connection, fn: Callable[[Connection], T], attempts: int = 5) -> T:
    """``fn(conn)`` in a transaction, committed; retried on serialization failures and deadlocks.

    A transaction already open on ``conn`` (SQLAlchemy begins one on the first read) is committed first."""
    if conn.in_transaction():
        conn.commit()
    for attempt in range(attempts):
        try:
            with conn.begin():
                return fn(conn)
        except DBAPIError as exc:
            if attempt + 1 < attempts and _retryable(exc):
                time.sleep(0.005 * (attempt + 1))
                continue
            raise
    raise AssertionError("unreachable")


def _upsert(conn: Connection):  # an INSERT with ON CONFLICT for this backend
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


# ---------------------------------------------------------------------------------------------------
# Campaigns and versions

#: Immutable things read on every scan (a rules version, a batch), cached per database engine.
_caches: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _cache(conn: Connection) -> dict[tuple[Any, ...], Any]:
    cache = _caches.get(conn.engine)
    if cache is None:
        with _cache_lock:
            cache = _caches.setdefault(conn.engine, {})
    return cache


def create_campaign(conn: Connection, tenant: str, campaign_id: str, rules: Rules | dict[str, Any],
                    note: str = "") -> Campaign:
    """Create a campaign at version 1; raises :class:`CampaignError` if the id is taken in this tenant."""
    if not isinstance(rules, Rules):
        rules = parse_rules(rules)

    def tx(c: Connection) -> Campaign:
        if c.execute(select(campaigns_t.c.id).where(campaigns_t.c.tenant_id == tenant,
                                                     campaigns_t.c.id == campaign_id)).first():
            raise CampaignError(f"campaign {campaign_id!r} already exists")
        check_ref(c, tenant, rules.policy)
        c.execute(insert(campaigns_t).values(tenant_id=tenant, id=campaign_id, kind=rules.kind, name=rules.name,
                                             version=1, start_ms=rules.start_ms, end_ms=rules.end_ms,
                                             budget_fen=rules.budget_fen, spent_fen=0, paused=False))
        c.execute(insert(campaign_versions).values(tenant_id=tenant, campaign_id=campaign_id, version=1,
                                                   rules=rules_to_dict(rules), note=note))
        for t in rules.tiers:
            c.execute(insert(prize_tiers).values(tenant_id=tenant, campaign_id=campaign_id, tier_id=t.id,
                                                 amount_fen=t.amount_fen, count=t.count, remaining=t.count))
        return Campaign(tenant, campaign_id, 1, rules, 0, False)

    return in_transaction(conn, tx)


def new_version(conn: Connection, tenant: str, campaign_id: str, rules: Rules | dict[str, Any],
                note: str = "") -> Campaign:
    """Save a new version of the rules and make it current. Counts and budgets may not go below what has
    already been given; a tier left out keeps what it gave and gives no more; the kind cannot change."""
    if not isinstance(rules, Rules):
        rules = parse_rules(rules)

    def tx(c: Connection) -> Campaign:
        row = c.execute(select(campaigns_t).where(campaigns_t.c.tenant_id == tenant, campaigns_t.c.id == campaign_id)
                        .with_for_update()).mappings().first()
        if row is None:
            raise CampaignError(f"no campaign {campaign_id!r}")
        if rules.kind != row["kind"]:
            raise RulesError(f"a {row['kind']} campaign cannot become a {rules.kind} campaign", "$.kind")
        check_ref(c, tenant, rules.policy)
        if rules.budget_fen < row["spent_fen"]:
            raise RulesError(f"budget_fen {rules.budget_fen} is below what is already committed "
                             f"({row['spent_fen']})", "$.budget_fen")
        tiers = {r["tier_id"]: r for r in c.execute(select(prize_tiers).where(
            prize_tiers.c.tenant_id == tenant, prize_tiers.c.campaign_id == campaign_id).with_for_update()).mappings()}
        for i, t in enumerate(rules.tiers):
            old = tiers.get(t.id)
            if old is None:
                c.execute(insert(prize_tiers).values(tenant_id=tenant, campaign_id=campaign_id, tier_id=t.id,
                                                     amount_fen=t.amount_fen, count=t.count, remaining=t.count))
                continue
            given = old["count"] - old["remaining"]
            if t.count < given:
                raise RulesError(f"tier {t.id!r}: count {t.count} is below the {given} already given",
                                 f"$.tiers[{i}].count")
            c.execute(update(prize_tiers).where(prize_tiers.c.tenant_id == tenant,
                                                prize_tiers.c.campaign_id == campaign_id,
                                                prize_tiers.c.tier_id == t.id)
                      .values(amount_fen=t.amount_fen, count=t.count, remaining=t.count - given))
        for tier_id, old in tiers.items():
            if rules.tier(tier_id) is None:
                c.execute(update(prize_tiers).where(prize_tiers.c.tenant_id == tenant,
                                                    prize_tiers.c.campaign_id == campaign_id,
                                                    prize_tiers.c.tier_id == tier_id)
                          .values(count=old["count"] - old["remaining"], remaining=0))
        version = row["version"] + 1
        c.execute(insert(campaign_versions).values(tenant_id=tenant, campaign_id=campaign_id, version=version,
                                                   rules=rules_to_dict(rules), note=note))
        c.execute(update(campaigns_t).where(campaigns_t.c.tenant_id == tenant, campaigns_t.c.id == campaign_id)
                  .values(version=version, name=rules.name, start_ms=rules.start_ms, end_ms=rules.end_ms,
                          budget_fen=rules.budget_fen))
        return Campaign(tenant, campaign_id, version, rules, row["spent_fen"], row["paused"])

    return in_transaction(conn, tx)


def set_paused(conn: Connection, tenant: str, campaign_id: str, paused: bool) -> None:
    def tx(c: Connection) -> None:
        n = c.execute(update(campaigns_t).where(campaigns_t.c.tenant_id == tenant, campaigns_t.c.id == campaign_id)
                      .values(paused=paused)).rowcount
        if not n:
            raise CampaignError(f"no campaign {campaign_id!r}")

    in_transaction(conn, tx)


def _rules(conn: Connection, tenant: str, campaign_id: str, version: int) -> Rules:
    cache = _cache(conn)
    key = ("rules", tenant, campaign_id, version)
    rules = cache.get(key)
    if rules is None:
        doc = conn.execute(select(campaign_versions.c.rules).where(
            campaign_versions.c.tenant_id == tenant, campaign_versions.c.campaign_id == campaign_id,
            campaign_versions.c.version == version)).scalar_one()
        rules = parse_rules(doc)
        if len(cache) > 100_000:
            cache.clear()
        cache[key] = rules
    return rules


def get_campaign(conn: Connection, tenant: str, campaign_id: str) -> Campaign:
    row = conn.execute(select(campaigns_t.c.version, campaigns_t.c.spent_fen, campaigns_t.c.paused).where(
        campaigns_t.c.tenant_id == tenant, campaigns_t.c.id == campaign_id)).first()
    if row is None:
        raise CampaignError(f"no campaign {campaign_id!r}")
    return Campaign(tenant, campaign_id, row.version, _rules(conn, tenant, campaign_id, row.version),
                    row.spent_fen, row.paused)


def list_campaigns(conn: Connection, tenant: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(campaigns_t).where(campaigns_t.c.tenant_id == tenant)
                        .order_by(campaigns_t.c.created_at, campaigns_t.c.id)).mappings().all()
    return [dict(r) for r in rows]


def campaign_state(conn: Connection, tenant: str, campaign_id: str) -> dict[str, Any]:
    """The campaign row, its current rules, every version's number and each tier's count and remaining."""
    camp = get_campaign(conn, tenant, campaign_id)
    row = conn.execute(select(campaigns_t).where(campaigns_t.c.tenant_id == tenant,
                                                 campaigns_t.c.id == campaign_id)).mappings().one()
    tiers = conn.execute(select(prize_tiers).where(prize_tiers.c.tenant_id == tenant,
                                                   prize_tiers.c.campaign_id == campaign_id)
                         .order_by(prize_tiers.c.tier_id)).mappings().all()
    versions = conn.execute(select(campaign_versions.c.version, campaign_versions.c.note,
                                   campaign_versions.c.created_at)
                            .where(campaign_versions.c.tenant_id == tenant,
                                   campaign_versions.c.campaign_id == campaign_id)
                            .order_by(campaign_versions.c.version)).mappings().all()
    return {"id": campaign_id, "kind": row["kind"], "name": row["name"], "version": camp.version,
            "paused": row["paused"], "budget_fen": row["budget_fen"], "spent_fen": row["spent_fen"],
            "rules": rules_to_dict(camp.rules),
            "tiers": [{k: t[k] for k in ("tier_id", "amount_fen", "count", "remaining")} for t in tiers],
            "versions": [dict(v) for v in versions]}


# ---------------------------------------------------------------------------------------------------
# Code batches


def create_batch(conn: Connection, tenant: str, campaign_id: str, count: int, product: str = "",
                 line: str = "") -> int:
    """Register a batch of ``count`` codes for ``campaign_id``; returns its batch id (codes: codes.py)."""
    from woolguard.campaigns.codes import MAX_BATCH, MAX_SERIAL

    if not 1 <= count <= MAX_SERIAL + 1:
        raise ValueError(f"a batch holds 1..{MAX_SERIAL + 1} codes, not {count}")

    def tx(c: Connection) -> int:
        get_campaign(c, tenant, campaign_id)
        if c.dialect.name == "postgresql":  # two batches created at once must not take the same id
            c.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"wg-batch:{tenant}",))
        last = c.execute(select(code_batches.c.batch_id).where(code_batches.c.tenant_id == tenant)
                         .order_by(code_batches.c.batch_id.desc()).limit(1)).scalar()
        batch_id = 1 if last is None else last + 1
        if batch_id > MAX_BATCH:
            raise CampaignError(f"tenant {tenant!r} has used all {MAX_BATCH} batch ids")
        c.execute(insert(code_batches).values(tenant_id=tenant, batch_id=batch_id, campaign_id=campaign_id,
                                              product=product, line=line, count=count))
        return batch_id

    return in_transaction(conn, tx)


def get_batch(conn: Connection, tenant: str, batch_id: int) -> dict[str, Any] | None:
    cache = _cache(conn)
    key = ("batch", tenant, batch_id)
    row = cache.get(key)
    if row is None:
        found = conn.execute(select(code_batches).where(code_batches.c.tenant_id == tenant,
                                                        code_batches.c.batch_id == batch_id)).mappings().first()
        if found is None:
            return None
        row = dict(found)
        if len(cache) > 100_000:
            cache.clear()
        cache[key] = row
    return row


def list_batches(conn: Connection, tenant: str, campaign_id: str | None = None) -> list[dict[str, Any]]:
    q = select(code_batches).where(code_batches.c.tenant_id == tenant)
    if campaign_id is not None:
        q = q.where(code_batches.c.campaign_id == campaign_id)
    return [dict(r) for r in conn.execute(q.order_by(code_batches.c.batch_id)).mappings()]


# ---------------------------------------------------------------------------------------------------
# The draw, limits and budgets


def draw_point(tenant: str, campaign_id: str, event_id: str) -> int:
    """A uniform integer in [0, 10^6) fixed by the event: a retried or re-run draw gives the same tier."""
    digest = hashlib.blake2b(f"{tenant}\x00{campaign_id}\x00{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % PPM


def draw_tier(rules: Rules, point: int) -> PrizeTier | None:
    acc = 0
    for t in rules.tiers:
        acc += t.ppm
        if point < acc:
            return t
    return None


def _entities(event: Event) -> dict[str, str | None]:
    return {"account": event.account.id, "device": event.device.id if event.device else None,
            "phone": event.phone_hash}


def _take_limits(c: Connection, camp: Campaign, req: dict[str, Any], day: int) -> str | None:
    """Count one participation against each limit; the name of the limit that is full, else None."""
    ins = _upsert(c)
    cc = campaign_counters.c
    for entity, per_day, limit in camp.rules.limits.items():
        key = req.get(entity)
        if key is None:
            continue
        if limit < 1:
            return f"{entity}_{'day' if per_day else 'campaign'}"
        stmt = ins(campaign_counters).values(tenant_id=camp.tenant, campaign_id=camp.id, scope=entity, key=key,
                                             day=day if per_day else 0, used=1)
        stmt = stmt.on_conflict_do_update(index_elements=[cc.tenant_id, cc.campaign_id, cc.scope, cc.key, cc.day],
                                          set_={"used": campaign_counters.c.used + 1},
                                          where=campaign_counters.c.used + 1 <= limit).returning(cc.used)
        if c.execute(stmt).first() is None:
            return f"{entity}_{'day' if per_day else 'campaign'}"
    return None


def _take_prize(c: Connection, camp: Campaign, tier: PrizeTier, day: int) -> str | None:
    """Take one of ``tier`` and its amount from the budget and the day's cap; what ran out, else None."""
    pt = prize_tiers.c
    got = c.execute(update(prize_tiers).where(pt.tenant_id == camp.tenant, pt.campaign_id == camp.id,
                                              pt.tier_id == tier.id, pt.remaining >= 1)
                    .values(remaining=pt.remaining - 1).returning(pt.amount_fen)).first()
    if got is None:
        return f"tier {tier.id} exhausted"
    amount = tier.amount_fen
    if amount == 0:
        return None
    ct = campaigns_t.c
    if c.execute(update(campaigns_t).where(ct.tenant_id == camp.tenant, ct.id == camp.id,
                                           ct.spent_fen + amount <= ct.budget_fen)
                 .values(spent_fen=ct.spent_fen + amount).returning(ct.spent_fen)).first() is None:
        return "budget exhausted"
    cap = camp.rules.daily_cap_fen
    if cap is not None:
        cc = campaign_counters.c
        if amount > cap:
            return "daily cap reached"
        stmt = _upsert(c)(campaign_counters).values(tenant_id=camp.tenant, campaign_id=camp.id, scope="budget",
                                                    key="", day=day, used=amount)
        stmt = stmt.on_conflict_do_update(index_elements=[cc.tenant_id, cc.campaign_id, cc.scope, cc.key, cc.day],
                                          set_={"used": campaign_counters.c.used + amount},
                                          where=campaign_counters.c.used + amount <= cap).returning(cc.used)
        if c.execute(stmt).first() is None:
            return "daily cap reached"
    return None


def _ledger(c: Connection, camp: Campaign, entry: str, kind: str, amount: int, ts: int, req: dict[str, Any],
            tier_id: str | None = None, outcome: str | None = None, reason: str = "",
            coupon_id: str | None = None, decision_id: str | None = None) -> None:
    c.execute(insert(ledger).values(
        tenant_id=camp.tenant, campaign_id=camp.id, entry=entry, kind=kind, amount_fen=amount, tier_id=tier_id,
        day=camp.rules.day(ts), ts=ts, account_id=req.get("account"), device_id=req.get("device"),
        phone=req.get("phone"), code=req.get("code"), coupon_id=coupon_id, event_id=req.get("event_id"),
        decision_id=decision_id or req.get("decision_id"), outcome=outcome, reason=reason[:200]))


def _grant(c: Connection, camp: Campaign, req: dict[str, Any], ts: int, action: str) -> ActionResult:
    """Limits, then the prize (scan: the draw; claim: the named coupon tier), budgets, ledger, coupon row."""
    day = camp.rules.day(ts)
    base = ActionResult("won", campaign_id=camp.id, event_id=req["event_id"], decision_id=req.get("decision_id"),
                        outcome=req.get("outcome"), code=req.get("code"))
    with c.begin_nested() as sp:
        full = _take_limits(c, camp, req, day)
        if full is not None:
            sp.rollback()
            base.status, base.message = "limited", f"limit {full} reached"
            return base
    if action == "scan":
        tier = draw_tier(camp.rules, draw_point(camp.tenant, camp.id, req["event_id"]))
        if tier is None:
            base.status, base.message = "lost", "no prize this time"
            return base
    else:
        tier = camp.rules.tier(req["tier_id"])
        if tier is None:
            base.status, base.message = "exhausted", f"no coupon tier {req['tier_id']!r}"
            return base
    base.tier_id = tier.id
    with c.begin_nested() as sp:
        short = _take_prize(c, camp, tier, day)
        if short is not None:
            sp.rollback()
            base.status, base.message = "exhausted", short
            return base
    base.amount_fen = tier.amount_fen
    if action == "scan":
        _ledger(c, camp, f"scan:{req['event_id']}", "paid", tier.amount_fen, ts, req, tier.id, req.get("outcome"))
    else:
        coupon_id = "cp_" + hashlib.blake2b(f"{camp.tenant}\x00{req['event_id']}".encode(),
                                            digest_size=10).hexdigest()
        c.execute(insert(coupons).values(
            tenant_id=camp.tenant, id=coupon_id, campaign_id=camp.id, tier_id=tier.id, account_id=req["account"],
            event_id=req["event_id"], decision_id=req.get("decision_id"), face_fen=tier.amount_fen,
            min_order_fen=tier.min_order_fen, claimed_ts=ts, expires_ms=ts + tier.valid_days * 86_400_000,
            status="issued", discount_fen=0, redemptions=0))
        _ledger(c, camp, f"claim:{req['event_id']}", "issued", tier.amount_fen, ts, req, tier.id,
                req.get("outcome"), coupon_id=coupon_id)
        base.coupon_id = coupon_id
    return base


def _would_cost(camp: Campaign, req: dict[str, Any], action: str) -> tuple[str | None, int]:
    """What a refused payout would have cost: the tier this event's draw gives (or the coupon's face value)."""
    if action == "scan":
        tier = draw_tier(camp.rules, draw_point(camp.tenant, camp.id, req["event_id"]))
    else:
        tier = camp.rules.tier(req["tier_id"])
    return (tier.id, tier.amount_fen) if tier is not None else (None, 0)


def _gate(c: Connection, camp: Campaign, req: dict[str, Any], decision: Decision, ts: int,
          action: str) -> ActionResult:
    """The decision decides what happens to the payout."""
    outcome = decision.outcome
    req["decision_id"] = decision.decision_id
    req["outcome"] = outcome.value
    if outcome is Outcome.PASS:
        return _grant(c, camp, req, ts, action)
    tier_id, amount = _would_cost(camp, req, action)
    res = ActionResult("refused", campaign_id=camp.id, event_id=req["event_id"], decision_id=decision.decision_id,
                       outcome=outcome.value, tier_id=tier_id, code=req.get("code"))
    if outcome is Outcome.REJECT:
        reasons = ",".join(r.code for r in decision.reasons if not r.shadow)[:200]
        _ledger(c, camp, f"{action}:{req['event_id']}", "refused", amount, ts, req, tier_id, outcome.value,
                reasons or "reject")
        res.amount_fen = amount
        res.message = "refused by the risk decision"
        return res
    verify = outcome is Outcome.VERIFY
    challenge_id = "ch_" + decision.decision_id.removeprefix("d_")
    deadline = ts + camp.rules.challenge_deadline_s * 1000 if verify else None
    kind = (decision.challenge.value if decision.challenge else "captcha") if verify else None
    c.execute(insert(challenges).values(
        tenant_id=camp.tenant, id=challenge_id, campaign_id=camp.id, action=action, outcome=outcome.value,
        challenge=kind, event_id=req["event_id"], decision_id=decision.decision_id, account_id=req["account"],
        request=req, ts=ts, deadline_ms=deadline, status="pending"))
    _ledger(c, camp, f"hold:{req['event_id']}", "held", amount, ts, req, tier_id, outcome.value,
            "challenge " + kind if kind else "review")
    res.status = "challenge" if verify else "review"
    res.challenge_id, res.challenge, res.deadline_ms = challenge_id, kind, deadline
    res.amount_fen = 0
    res.message = f"pass the {kind} challenge to complete the claim" if verify else "held for an analyst"
    return res


def _running(camp: Campaign, ts: int) -> str | None:
    r = camp.rules
    if camp.paused:
        return "campaign is paused"
    if ts < r.start_ms:
        return "campaign has not started"
    if ts >= r.end_ms:
        return "campaign has ended"
    return None


def _region_ok(rules: Rules, event: Event) -> bool:
    if not rules.regions:
        return True
    g = event.geo
    return g is not None and (g.region in rules.regions or g.city in rules.regions)


# ---------------------------------------------------------------------------------------------------
# Scan to win


def _used_result(row: Any, replayed: bool) -> ActionResult:
    status = {"paid": "won"}.get(row.status, row.status)
    return ActionResult(status, campaign_id=row.campaign_id, event_id=row.event_id, decision_id=row.decision_id,
                        tier_id=row.tier_id, amount_fen=row.amount_fen, code=row.code, replayed=replayed)


def scan(conn: Connection, tenant: str, event: Event, decision: Decision, signer: CodeSigner,
         ts: int | None = None) -> ActionResult:
    """A one-item-one-code scan: the code's signature (no database), first use, the decision, the draw."""
    ts = event.ts if ts is None else ts
    info = signer.check(event.code_id or "")
    if info is None:
        return ActionResult("invalid_code", campaign_id=event.campaign_id, event_id=event.event_id,
                            decision_id=decision.decision_id, message="code is not genuine")

    def tx(c: Connection) -> ActionResult:
        batch = get_batch(c, tenant, info.batch_id)
        if batch is None or info.serial >= batch["count"] or (
                event.campaign_id is not None and event.campaign_id != batch["campaign_id"]):
            return ActionResult("invalid_code", campaign_id=event.campaign_id, event_id=event.event_id,
                                decision_id=decision.decision_id, code=info.code,
                                message="code belongs to no batch of this campaign")
        camp = get_campaign(c, tenant, batch["campaign_id"])
        uc = used_codes.c
        prior = c.execute(select(used_codes).where(uc.tenant_id == tenant, uc.event_id == event.event_id)).first()
        if prior is not None:  # a retried request
            return _challenge_aware(c, tenant, prior)
        why = _running(camp, ts)
        if why is not None:
            return ActionResult("not_running", campaign_id=camp.id, event_id=event.event_id, code=info.code,
                                decision_id=decision.decision_id, message=why)
        if not _region_ok(camp.rules, event):
            return ActionResult("ineligible", campaign_id=camp.id, event_id=event.event_id, code=info.code,
                                decision_id=decision.decision_id, message="outside the campaign's regions")
        stmt = _upsert(c)(used_codes).values(
            tenant_id=tenant, code=info.code, batch_id=info.batch_id, serial=info.serial, campaign_id=camp.id,
            account_id=event.account.id, event_id=event.event_id, decision_id=decision.decision_id, ts=ts,
            status="pending", amount_fen=0).on_conflict_do_nothing(index_elements=[uc.tenant_id, uc.code])
        if c.execute(stmt.returning(uc.code)).first() is None:
            row = c.execute(select(used_codes).where(uc.tenant_id == tenant, uc.code == info.code)).first()
            if row.event_id == event.event_id:
                return _challenge_aware(c, tenant, row)
            return ActionResult("used", campaign_id=camp.id, event_id=event.event_id,
                                decision_id=decision.decision_id, code=info.code, used_by=row.account_id,
                                used_at=row.ts, message="code was scanned before")
        req = {"event_id": event.event_id, "code": info.code, **_entities(event)}
        res = _gate(c, camp, req, decision, ts, "scan")
        _set_code(c, tenant, info.code, res)
        return res

    return in_transaction(conn, tx)


def _set_code(c: Connection, tenant: str, code: str, res: ActionResult) -> None:
    c.execute(update(used_codes).where(used_codes.c.tenant_id == tenant, used_codes.c.code == code)
              .values(status=res.status, tier_id=res.tier_id, amount_fen=res.amount_fen))


def _challenge_aware(c: Connection, tenant: str, row: Any) -> ActionResult:
    res = _used_result(row, replayed=True)
    if row.status in ("challenge", "review"):
        ch = c.execute(select(challenges).where(challenges.c.tenant_id == tenant,
                                                challenges.c.event_id == row.event_id)).first()
        if ch is not None:
            res.challenge_id, res.challenge, res.deadline_ms = ch.id, ch.challenge, ch.deadline_ms
    return res


# ---------------------------------------------------------------------------------------------------
# Coupons


def claim(conn: Connection, tenant: str, event: Event, decision: Decision, tier_id: str | None = None,
          ts: int | None = None) -> ActionResult:
    """Claim a coupon of ``tier_id`` (default: the campaign's first tier), gated by the decision."""
    ts = event.ts if ts is None else ts
    if not event.campaign_id:
        raise CampaignError("a claim names its campaign_id")

    def tx(c: Connection) -> ActionResult:
        camp = get_campaign(c, tenant, event.campaign_id)
        if camp.rules.kind != "coupon":
            raise CampaignError(f"campaign {camp.id!r} is a {camp.rules.kind} campaign, not a coupon campaign")
        prior = _prior_claim(c, tenant, camp.id, event.event_id)
        if prior is not None:
            return prior
        why = _running(camp, ts)
        if why is not None:
            return ActionResult("not_running", campaign_id=camp.id, event_id=event.event_id, message=why,
                                decision_id=decision.decision_id)
        if not _region_ok(camp.rules, event):
            return ActionResult("ineligible", campaign_id=camp.id, event_id=event.event_id,
                                decision_id=decision.decision_id, message="outside the campaign's regions")
        tid = tier_id or camp.rules.tiers[0].id
        if camp.rules.tier(tid) is None:
            raise CampaignError(f"campaign {camp.id!r} has no coupon tier {tid!r}")
        req = {"event_id": event.event_id, "tier_id": tid, **_entities(event)}
        return _gate(c, camp, req, decision, ts, "claim")

    return in_transaction(conn, tx)


def _prior_claim(c: Connection, tenant: str, campaign_id: str, event_id: str) -> ActionResult | None:
    cp = c.execute(select(coupons).where(coupons.c.tenant_id == tenant, coupons.c.event_id == event_id)).first()
    if cp is not None:
        return ActionResult("won", campaign_id=cp.campaign_id, event_id=event_id, decision_id=cp.decision_id,
                            tier_id=cp.tier_id, amount_fen=cp.face_fen, coupon_id=cp.id, replayed=True)
    ch = c.execute(select(challenges).where(challenges.c.tenant_id == tenant,
                                            challenges.c.event_id == event_id)).first()
    if ch is not None:
        res = ActionResult(_challenge_status(ch), campaign_id=ch.campaign_id, event_id=event_id,
                           decision_id=ch.decision_id, outcome=ch.outcome, challenge_id=ch.id,
                           challenge=ch.challenge, deadline_ms=ch.deadline_ms, replayed=True)
        if ch.result:
            res.status = ch.result.get("status", res.status)
        return res
    lg = c.execute(select(ledger).where(ledger.c.tenant_id == tenant,
                                        ledger.c.entry == f"claim:{event_id}")).first()
    if lg is not None:
        return ActionResult("refused" if lg.kind == "refused" else "won", campaign_id=campaign_id,
                            event_id=event_id, decision_id=lg.decision_id, tier_id=lg.tier_id,
                            amount_fen=lg.amount_fen, coupon_id=lg.coupon_id, replayed=True)
    return None


def _challenge_status(ch: Any) -> str:
    return {"pending": "challenge" if ch.outcome == "verify" else "review"}.get(ch.status, ch.status)


def redeem(conn: Connection, tenant: str, coupon_id: str, order_id: str, order_amount_fen: int,
           ts: int | None = None) -> ActionResult:
    """Redeem (核销) a coupon against an order: the discount is min(face value, order amount)."""
    ts = now_ms() if ts is None else ts
    if order_amount_fen < 0:
        raise ValueError("order_amount_fen must be >= 0")

    def tx(c: Connection) -> ActionResult:
        cp = c.execute(select(coupons).where(coupons.c.tenant_id == tenant, coupons.c.id == coupon_id)).first()
        if cp is None:
            raise CampaignError(f"no coupon {coupon_id!r}")
        res = ActionResult("refused", campaign_id=cp.campaign_id, coupon_id=coupon_id, tier_id=cp.tier_id)
        if cp.status == "redeemed":
            if cp.order_id == order_id:
                res.status, res.amount_fen, res.replayed = "redeemed", cp.discount_fen, True
                return res
            res.message = "coupon already redeemed for another order"
            return res
        if ts >= cp.expires_ms or cp.status == "expired":
            res.message = "coupon expired"
            return res
        if order_amount_fen < cp.min_order_fen:
            res.message = f"order below the coupon's minimum of {cp.min_order_fen} fen"
            return res
        discount = min(cp.face_fen, order_amount_fen)
        cc = coupons.c
        got = c.execute(update(coupons).where(cc.tenant_id == tenant, cc.id == coupon_id, cc.status == "issued",
                                              cc.redemptions == cp.redemptions)
                        .values(status="redeemed", order_id=order_id, order_amount_fen=order_amount_fen,
                                discount_fen=discount, redeemed_ts=ts, redemptions=cc.redemptions + 1)
                        .returning(cc.redemptions)).first()
        if got is None:  # redeemed by a concurrent request between the read and the update
            raise _Again()
        camp = get_campaign(c, tenant, cp.campaign_id)
        req = {"event_id": None, "account": cp.account_id}
        _ledger(c, camp, f"redeem:{coupon_id}:{got.redemptions}", "redeemed", discount, ts, req, cp.tier_id,
                reason=f"order {order_id}"[:200], coupon_id=coupon_id, decision_id=cp.decision_id)
        res.status, res.amount_fen = "redeemed", discount
        return res

    return _again(lambda: in_transaction(conn, tx))


def refund(conn: Connection, tenant: str, coupon_id: str, order_id: str, ts: int | None = None) -> ActionResult:
    """A refund or return of the order reverses the redemption; the coupon is usable again until it expires."""
    ts = now_ms() if ts is None else ts

    def tx(c: Connection) -> ActionResult:
        cc = coupons.c
        got = c.execute(update(coupons).where(cc.tenant_id == tenant, cc.id == coupon_id, cc.status == "redeemed",
                                              cc.order_id == order_id)
                        .values(status="issued", order_id=None, order_amount_fen=None, discount_fen=0,
                                redeemed_ts=None)
                        .returning(cc.redemptions, cc.campaign_id, cc.tier_id, cc.account_id, cc.decision_id))
        row = got.first()
        if row is None:
            cp = c.execute(select(coupons).where(cc.tenant_id == tenant, cc.id == coupon_id)).first()
            if cp is None:
                raise CampaignError(f"no coupon {coupon_id!r}")
            prior = c.execute(select(ledger).where(ledger.c.tenant_id == tenant, ledger.c.kind == "reversed",
                                                   ledger.c.coupon_id == coupon_id,
                                                   ledger.c.reason == f"order {order_id}"[:200])).first()
            if prior is not None:
                return ActionResult("refunded", campaign_id=cp.campaign_id, coupon_id=coupon_id,
                                    amount_fen=-prior.amount_fen, replayed=True)
            return ActionResult("refused", campaign_id=cp.campaign_id, coupon_id=coupon_id,
                                message=f"coupon is not redeemed for order {order_id!r}")
        discount = c.execute(select(ledger.c.amount_fen).where(
            ledger.c.tenant_id == tenant, ledger.c.entry == f"redeem:{coupon_id}:{row.redemptions}")).scalar_one()
        camp = get_campaign(c, tenant, row.campaign_id)
        _ledger(c, camp, f"refund:{coupon_id}:{row.redemptions}", "reversed", -discount, ts,
                {"account": row.account_id}, row.tier_id, reason=f"order {order_id}"[:200], coupon_id=coupon_id,
                decision_id=row.decision_id)
        return ActionResult("refunded", campaign_id=row.campaign_id, coupon_id=coupon_id, amount_fen=discount)

    return in_transaction(conn, tx)


def expire_coupons(conn: Connection, tenant: str, ts: int | None = None, limit: int = 10_000) -> int:
    """Release the budget of coupons that expired unredeemed: each such coupon becomes ``expired`` and a
    ``released`` ledger row (negative face value) gives its face value back to the campaign's budget, its
    day's cap and its tier (a tier no longer in the rules gives up the count instead). One transaction per
    coupon; exact against concurrent redemptions (a coupon is released only if still ``issued`` and past its
    expiry, by a conditional update). Per-account / device / phone limits are not given back: they count
    participations. Returns how many coupons were released."""
    ts = now_ms() if ts is None else ts
    cc = coupons.c
    ids = conn.execute(select(cc.id).where(cc.tenant_id == tenant, cc.status == "issued", cc.expires_ms <= ts)
                       .order_by(cc.expires_ms, cc.id).limit(limit)).scalars().all()
    released = 0
    for coupon_id in ids:
        released += in_transaction(conn, lambda c, cid=coupon_id: _expire_one(c, tenant, cid, ts))
    return released


def _expire_one(c: Connection, tenant: str, coupon_id: str, ts: int) -> int:
    cc = coupons.c
    row = c.execute(update(coupons).where(cc.tenant_id == tenant, cc.id == coupon_id, cc.status == "issued",
                                          cc.expires_ms <= ts).values(status="expired")
                    .returning(cc.campaign_id, cc.tier_id, cc.face_fen, cc.claimed_ts, cc.account_id, cc.event_id,
                               cc.decision_id)).first()
    if row is None:  # redeemed (or released) by a concurrent request
        return 0
    camp = get_campaign(c, tenant, row.campaign_id)
    face = row.face_fen
    claim_day = camp.rules.day(row.claimed_ts)
    # the same lock order as a claim: tier, campaign, day
    pt = prize_tiers.c
    tier_where = (pt.tenant_id == tenant, pt.campaign_id == camp.id, pt.tier_id == row.tier_id)
    if camp.rules.tier(row.tier_id) is not None:
        c.execute(update(prize_tiers).where(*tier_where).values(remaining=pt.remaining + 1))
    else:  # the tier was dropped by a new version: it gives no more, so its count shrinks instead
        c.execute(update(prize_tiers).where(*tier_where).values(count=pt.count - 1))
    if face:
        ct = campaigns_t.c
        c.execute(update(campaigns_t).where(ct.tenant_id == tenant, ct.id == camp.id, ct.spent_fen >= face)
                  .values(spent_fen=ct.spent_fen - face))
        k = campaign_counters.c
        c.execute(update(campaign_counters).where(k.tenant_id == tenant, k.campaign_id == camp.id, k.scope == "budget",
                                                  k.key == "", k.day == claim_day, k.used >= face)
                  .values(used=k.used - face))
    c.execute(insert(ledger).values(
        tenant_id=tenant, campaign_id=camp.id, entry=f"expire:{coupon_id}", kind="released", amount_fen=-face,
        tier_id=row.tier_id, day=claim_day, ts=ts, account_id=row.account_id, coupon_id=coupon_id,
        event_id=row.event_id, decision_id=row.decision_id, reason="coupon expired unredeemed"))
    return 1


class _Again(Exception):
    pass


def _again(fn: Callable[[], T], attempts: int = 5) -> T:
    for attempt in range(attempts):
        try:
            return fn()
        except _Again:
            if attempt + 1 == attempts:
                raise CampaignError("coupon is being redeemed concurrently; retry") from None
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------------
# Challenges and reviews


def _resolve(conn: Connection, tenant: str, challenge_id: str, expect: str, approve: bool, by: str,
             ts: int) -> ActionResult:
    def tx(c: Connection) -> ActionResult:
        ch = c.execute(select(challenges).where(challenges.c.tenant_id == tenant, challenges.c.id == challenge_id)
                       .with_for_update()).first()
        if ch is None or ch.outcome != expect:
            raise CampaignError(f"no {'challenge' if expect == 'verify' else 'review'} {challenge_id!r}")
        if ch.status != "pending":  # already resolved: the same answer again
            res = ActionResult(**{**ch.result, "replayed": True}) if ch.result else ActionResult(ch.status)
            return res
        camp = get_campaign(c, tenant, ch.campaign_id)
        req = dict(ch.request)
        action = ch.action
        expired = ch.deadline_ms is not None and ts > ch.deadline_ms
        if approve and not expired:
            status = "passed" if expect == "verify" else "approved"
            res = _grant(c, camp, req, ts, action)
        else:
            status = "expired" if expired else ("failed" if expect == "verify" else "refused")
            tier_id, amount = _would_cost(camp, req, action)
            _ledger(c, camp, f"{action}:{req['event_id']}", "refused", amount, ts, req, tier_id, ch.outcome,
                    f"{expect} {status}")
            res = ActionResult("refused", campaign_id=camp.id, event_id=req["event_id"],
                               decision_id=req.get("decision_id"), outcome=ch.outcome, tier_id=tier_id,
                               amount_fen=amount, code=req.get("code"), message=f"{expect} {status}")
        res.challenge_id, res.challenge = ch.id, ch.challenge
        c.execute(update(challenges).where(challenges.c.tenant_id == tenant, challenges.c.id == challenge_id)
                  .values(status=status, resolved_ts=ts, resolved_by=by, result=res.to_dict()))
        if action == "scan" and req.get("code"):
            _set_code(c, tenant, req["code"], res)
        return res

    return in_transaction(conn, tx)


def challenge_result(conn: Connection, tenant: str, challenge_id: str, passed: bool, ts: int | None = None,
                     by: str = "client") -> ActionResult:
    """The step-up challenge's result: passed within the deadline completes the payout; else refused."""
    return _resolve(conn, tenant, challenge_id, "verify", passed, by, now_ms() if ts is None else ts)


def review_verdict(conn: Connection, tenant: str, review_id: str, approve: bool, analyst: str = "",
                   ts: int | None = None) -> ActionResult:
    """An analyst's verdict on a held payout: approve pays it (limits and budgets still apply)."""
    return _resolve(conn, tenant, review_id, "review", approve, analyst or "analyst", now_ms() if ts is None else ts)


def list_challenges(conn: Connection, tenant: str, outcome: str | None = None, status: str | None = "pending",
                    limit: int = 100) -> list[dict[str, Any]]:
    q = select(challenges).where(challenges.c.tenant_id == tenant)
    if outcome is not None:
        q = q.where(challenges.c.outcome == outcome)
    if status is not None:
        q = q.where(challenges.c.status == status)
    return [dict(r) for r in conn.execute(q.order_by(challenges.c.ts).limit(limit)).mappings()]


def expire_challenges(conn: Connection, tenant: str, ts: int | None = None) -> int:
    """Refuse every pending challenge past its deadline; returns how many."""
    ts = now_ms() if ts is None else ts
    ids = conn.execute(select(challenges.c.id).where(and_(
        challenges.c.tenant_id == tenant, challenges.c.status == "pending", challenges.c.outcome == "verify",
        challenges.c.deadline_ms < ts))).scalars().all()
    for cid in ids:
        _resolve(conn, tenant, cid, "verify", False, "expiry", ts)
    return len(ids)
