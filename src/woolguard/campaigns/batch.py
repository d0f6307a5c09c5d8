"""Payouts in batches: the offline path for streams decided in bulk (the demo, replays, back-fills).

The online path (``service.scan`` / ``service.claim``) runs one transaction per request. A stream of
10^5 payouts through it costs one commit each, too slow on SQLite. :class:`PayoutBook` takes the same
payouts, each with its decision already made (and, for ``verify`` / ``review``, whether the challenge was
passed or the analyst approved), and settles a batch of them in **one transaction**, writing the same rows
the online path writes and keeping the same promises:

- the payouts of a batch are settled in order, against the counters read at the start of the transaction:
  window, code already used, the decision, the per-account / device / phone limits, the tier's count,
  the budget, the daily cap — the same steps and the same order as ``service._gate`` / ``service._grant``;
- the counters are then moved by the same conditional statements as online (``remaining >= n``,
  ``spent_fen + a <= budget_fen``, ``used + n <= limit``), locking rows in the online path's order (code,
  limits, tier, campaign, day), each of which must take effect; if another writer moved a counter in
  between, the transaction is rolled back and the batch settled again from fresh counters, so no budget,
  count, cap or limit can be exceeded even with online writers alongside (optimistic: a batch retried
  ``attempts`` times without getting through raises :class:`CampaignError`, having written nothing);
- every ledger row keeps its unique ``entry`` (``scan:<event>``, ``claim:<event>``, ``hold:<event>``,
  ``redeem:<coupon>:1``); a payout whose entry is already in the ledger is not settled again (its first
  result is returned), and a code's ``used_codes`` row is inserted, so a code pays at most once.

Results come back through the ``on_settled`` callback after the batch commits (never for a batch that
rolled back), in the order the payouts were added.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from woolguard.campaigns.service import CampaignError, _rules, _upsert, in_transaction
from woolguard.storage.schema import (
    campaign_counters,
    campaigns_t,
    challenges,
    coupons,
    ledger,
    prize_tiers,
    used_codes,
)

CHUNK = 500


@dataclass(slots=True)
class Payout:
    """One payout to settle: a prize (scan campaigns) or a coupon issued, and redeemed when ``order_amount_fen``
    is given (coupon campaigns)."""

    campaign_id: str
    event_id: str
    account: str
    ts: int
    tier_id: str
    #: The decision: pass | verify | review | reject.
    outcome: str
    decision_id: str | None = None
    #: verify: the challenge was passed in time; review: the analyst approved. Ignored for pass / reject.
    passed: bool = False
    challenge: str | None = None
    reasons: str = ""
    device: str | None = None
    phone: str | None = None
    #: Scan campaigns: the one-item-one-code (pays at most once); None for prizes not tied to a code.
    code: str | None = None
    #: Coupon campaigns: the order the coupon is redeemed against at once (核销 at checkout).
    order_amount_fen: int | None = None


@dataclass(slots=True)
class Settled:
    """What a payout came to: ``won`` (``amount_fen`` committed: the prize, or the coupon's face value),
    ``refused`` by the decision / challenge / analyst (``amount_fen`` is what it would have cost: saved),
    ``limited``, ``exhausted``, ``used`` (the code paid before), ``not_running``. ``paid_fen`` is the money
    that left: the prize, or the discount of a coupon redeemed at once (0 for a coupon only issued)."""

    status: str
    amount_fen: int = 0
    tier_id: str | None = None
    replayed: bool = False
    paid_fen: int = 0


class _Moved(Exception):
    """A counter moved under the batch (another writer): roll back and settle the batch again."""


@dataclass(slots=True)
class _Camp:
    rules: Any
    kind: str
    spent: int
    budget: int
    paused: bool


class PayoutBook:
    """Buffers payouts and settles them ``batch_size`` at a time (see the module doc)."""

    def __init__(self, conn: Connection, tenant: str, batch_size: int = 5000,
                 on_settled: Callable[[Payout, Settled, Any], None] | None = None, attempts: int = 20):
        self.conn = conn
        self.tenant = tenant
        self.batch_size = batch_size
        self.on_settled = on_settled
        self.attempts = attempts
        self.pending: list[tuple[Payout, Any]] = []
        self.settled = 0
        self.batches = 0

    def add(self, payout: Payout, context: Any = None) -> None:
        """Queue a payout; ``context`` is handed back to ``on_settled`` with its result."""
        self.pending.append((payout, context))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Settle every queued payout in one transaction, then report the results."""
        if not self.pending:
            return
        items, self.pending = self.pending, []
        payouts = [p for p, _ in items]
        for attempt in range(self.attempts):
            try:
                results = in_transaction(self.conn, lambda c: _settle(c, self.tenant, payouts))
                break
            except (_Moved, IntegrityError):
                time.sleep(0.002 * min(attempt, 10))
                if attempt + 1 == self.attempts:
                    self.pending = items + self.pending
                    raise CampaignError("counters kept moving under the batch; nothing was written") from None
        self.settled += len(payouts)
        self.batches += 1
        if self.on_settled is not None:
            for (p, ctx), res in zip(items, results, strict=True):
                self.on_settled(p, res, ctx)


def _chunks(values: list[Any]) -> list[list[Any]]:
    return [values[i:i + CHUNK] for i in range(0, len(values), CHUNK)]


def _settle(c: Connection, tenant: str, payouts: list[Payout]) -> list[Settled]:
    cids = sorted({p.campaign_id for p in payouts})
    camps: dict[str, _Camp] = {}
    ct = campaigns_t.c
    for cid in cids:  # read without locks: the writes below re-check every counter
        row = c.execute(select(ct.version, ct.kind, ct.spent_fen, ct.budget_fen, ct.paused).where(
            ct.tenant_id == tenant, ct.id == cid)).first()
        if row is None:
            raise CampaignError(f"no campaign {cid!r}")
        camps[cid] = _Camp(_rules(c, tenant, cid, row.version), row.kind, row.spent_fen, row.budget_fen, row.paused)
    pt = prize_tiers.c
    remaining = {(r.campaign_id, r.tier_id): r.remaining for r in c.execute(
        select(pt.campaign_id, pt.tier_id, pt.remaining).where(pt.tenant_id == tenant, pt.campaign_id.in_(cids)))}

    def final_entry(p: Payout) -> str:
        return f"{'scan' if camps[p.campaign_id].kind == 'scan' else 'claim'}:{p.event_id}"

    # entries already in the ledger: a payout settled before is not settled again
    lc = ledger.c
    wanted = [final_entry(p) for p in payouts] + [f"hold:{p.event_id}" for p in payouts if p.outcome in
                                                  ("verify", "review")]
    prior: dict[str, Any] = {}
    for chunk in _chunks(wanted):
        for r in c.execute(select(lc.entry, lc.kind, lc.amount_fen, lc.tier_id, lc.coupon_id)
                           .where(lc.tenant_id == tenant, lc.entry.in_(chunk))):
            prior[r.entry] = r
    redeemed: dict[str, int] = {}  # a coupon's discount is on its redeem row
    for chunk in _chunks([f"redeem:{r.coupon_id}:1" for r in prior.values() if r.kind == "issued" and r.coupon_id]):
        for r in c.execute(select(lc.coupon_id, lc.amount_fen).where(lc.tenant_id == tenant, lc.entry.in_(chunk))):
            redeemed[r.coupon_id] = r.amount_fen
    # counters this batch can touch
    cc = campaign_counters.c
    counters: dict[tuple[str, str, str, int], int] = {}
    keys: dict[tuple[str, str], set[str]] = defaultdict(set)
    days: dict[str, set[int]] = defaultdict(set)
    for p in payouts:
        rules = camps[p.campaign_id].rules
        if rules.daily_cap_fen is not None:
            days[p.campaign_id].add(rules.day(p.ts))
        ent = {"account": p.account, "device": p.device, "phone": p.phone}
        for entity, _, _ in rules.limits.items():
            if ent[entity] is not None:
                keys[(p.campaign_id, entity)].add(ent[entity])
    for cid, ds in days.items():
        for r in c.execute(select(cc.day, cc.used).where(cc.tenant_id == tenant, cc.campaign_id == cid,
                                                         cc.scope == "budget", cc.key == "", cc.day.in_(ds))):
            counters[(cid, "budget", "", r.day)] = r.used
    for (cid, scope), ks in keys.items():
        for chunk in _chunks(sorted(ks)):
            for r in c.execute(select(cc.key, cc.day, cc.used).where(
                    cc.tenant_id == tenant, cc.campaign_id == cid, cc.scope == scope, cc.key.in_(chunk))):
                counters[(cid, scope, r.key, r.day)] = r.used
    codes = sorted({p.code for p in payouts if p.code})
    uc = used_codes.c
    used: set[str] = set()
    for chunk in _chunks(codes):
        used.update(c.execute(select(uc.code).where(uc.tenant_id == tenant, uc.code.in_(chunk))).scalars())

    # settle in order, in memory
    tier_take: dict[tuple[str, str], int] = defaultdict(int)
    spent_add: dict[str, int] = defaultdict(int)
    counter_add: dict[tuple[str, str, str, int], int] = defaultdict(int)
    rows: list[dict[str, Any]] = []
    code_rows: list[dict[str, Any]] = []
    coupon_rows: list[dict[str, Any]] = []
    challenge_rows: list[dict[str, Any]] = []
    out: list[Settled] = []
    first: dict[str, Settled] = {}

    def lrow(p: Payout, camp: _Camp, entry: str, kind: str, amount: int, tier_id: str | None, reason: str = "",
             coupon_id: str | None = None) -> None:
        rows.append({"tenant_id": tenant, "campaign_id": p.campaign_id, "entry": entry, "kind": kind,
                     "amount_fen": amount, "tier_id": tier_id, "day": camp.rules.day(p.ts), "ts": p.ts,
                     "account_id": p.account, "device_id": p.device, "phone": p.phone, "code": p.code,
                     "coupon_id": coupon_id, "event_id": p.event_id, "decision_id": p.decision_id,
                     "outcome": p.outcome, "reason": reason[:200]})

    def settle_one(p: Payout, entry: str) -> Settled:
        camp = camps[p.campaign_id]
        rules = camp.rules
        if entry in first:  # the same event twice in one batch: the first settles it
            f = first[entry]
            return Settled(f.status, f.amount_fen, f.tier_id, replayed=True, paid_fen=f.paid_fen)
        if entry in prior:
            r = prior[entry]
            status = {"paid": "won", "issued": "won"}.get(r.kind, r.kind)
            paid = r.amount_fen if r.kind == "paid" else redeemed.get(r.coupon_id, 0) if r.kind == "issued" else 0
            return Settled(status, r.amount_fen, r.tier_id, replayed=True, paid_fen=paid)
        tier = rules.tier(p.tier_id)
        if tier is None:
            raise CampaignError(f"campaign {p.campaign_id!r} has no tier {p.tier_id!r}")
        if camp.paused or not rules.start_ms <= p.ts < rules.end_ms:
            return Settled("not_running", 0, tier.id)
        if p.code is not None:
            if p.code in used:
                return Settled("used", 0, tier.id)
            used.add(p.code)
        day = rules.day(p.ts)
        res = Settled("refused", tier.amount_fen, tier.id)
        if p.outcome in ("verify", "review"):
            if f"hold:{p.event_id}" not in prior:
                kind = p.challenge or "captcha"
                lrow(p, camp, f"hold:{p.event_id}", "held", tier.amount_fen, tier.id,
                     "challenge " + kind if p.outcome == "verify" else "review")
                verify = p.outcome == "verify"
                status = ("passed" if verify else "approved") if p.passed else ("failed" if verify else "refused")
                challenge_rows.append({
                    "tenant_id": tenant, "id": "ch_" + (p.decision_id or p.event_id).removeprefix("d_"),
                    "campaign_id": p.campaign_id, "action": "scan" if camp.kind == "scan" else "claim",
                    "outcome": p.outcome, "challenge": kind if verify else None, "event_id": p.event_id,
                    "decision_id": p.decision_id or "", "account_id": p.account,
                    "request": {"event_id": p.event_id, "tier_id": tier.id, "code": p.code},
                    "ts": p.ts, "deadline_ms": p.ts + rules.challenge_deadline_s * 1000 if verify else None,
                    "status": status, "resolved_ts": p.ts, "resolved_by": "batch", "result": None})
            if not p.passed:
                lrow(p, camp, entry, "refused", tier.amount_fen, tier.id,
                     f"{'verify failed' if p.outcome == 'verify' else 'review refused'}")
                _code_row(code_rows, tenant, p, "refused", tier.id, 0)
                return res
        elif p.outcome != "pass":
            lrow(p, camp, entry, "refused", tier.amount_fen, tier.id, p.reasons or p.outcome)
            _code_row(code_rows, tenant, p, "refused", tier.id, 0)
            return res
        # limits: all or none (the online path rolls back a savepoint when one is full)
        ent = {"account": p.account, "device": p.device, "phone": p.phone}
        need = []
        full = False
        for entity, per_day, limit in rules.limits.items():
            key = ent[entity]
            if key is None:
                continue
            ck = (p.campaign_id, entity, key, day if per_day else 0)
            if counters.get(ck, 0) + 1 > limit:
                full = True
                break
            need.append(ck)
        if full:
            _code_row(code_rows, tenant, p, "limited", tier.id, 0)
            return Settled("limited", 0, tier.id)
        for ck in need:
            counters[ck] = counters.get(ck, 0) + 1
            counter_add[ck] += 1
        amount = tier.amount_fen
        tk = (p.campaign_id, tier.id)
        bk = (p.campaign_id, "budget", "", day)
        cap = rules.daily_cap_fen
        if (remaining.get(tk, 0) < 1 or camp.spent + amount > camp.budget
                or (cap is not None and amount and counters.get(bk, 0) + amount > cap)):
            _code_row(code_rows, tenant, p, "exhausted", tier.id, 0)
            return Settled("exhausted", 0, tier.id)
        remaining[tk] -= 1
        tier_take[tk] += 1
        if amount:
            camp.spent += amount
            spent_add[p.campaign_id] += amount
            if cap is not None:
                counters[bk] = counters.get(bk, 0) + amount
                counter_add[bk] += amount
        if camp.kind == "scan":
            lrow(p, camp, entry, "paid", amount, tier.id)
            _code_row(code_rows, tenant, p, "won", tier.id, amount)
            return Settled("won", amount, tier.id, paid_fen=amount)
        coupon_id = "cp_" + hashlib.blake2b(f"{tenant}\x00{p.event_id}".encode(), digest_size=10).hexdigest()
        lrow(p, camp, entry, "issued", amount, tier.id, coupon_id=coupon_id)
        redeem = p.order_amount_fen is not None and p.order_amount_fen >= tier.min_order_fen
        discount = min(amount, p.order_amount_fen or 0) if redeem else 0
        coupon_rows.append({
            "tenant_id": tenant, "id": coupon_id, "campaign_id": p.campaign_id, "tier_id": tier.id,
            "account_id": p.account, "event_id": p.event_id, "decision_id": p.decision_id, "face_fen": amount,
            "min_order_fen": tier.min_order_fen, "claimed_ts": p.ts,
            "expires_ms": p.ts + tier.valid_days * 86_400_000, "status": "redeemed" if redeem else "issued",
            "order_id": f"order:{p.event_id}" if redeem else None,
            "order_amount_fen": p.order_amount_fen if redeem else None, "discount_fen": discount,
            "redeemed_ts": p.ts if redeem else None, "redemptions": 1 if redeem else 0})
        if redeem:
            lrow(p, camp, f"redeem:{coupon_id}:1", "redeemed", discount, tier.id, f"order order:{p.event_id}",
                 coupon_id=coupon_id)
        return Settled("won", amount, tier.id, paid_fen=discount)

    for p in payouts:
        entry = final_entry(p)
        res = settle_one(p, entry)
        first.setdefault(entry, res)
        out.append(res)

    # Move the counters by conditional statements, each of which must take effect, locking rows in the
    # online path's order: code, limits (account, device, phone), tier, campaign budget, daily budget.
    if code_rows:
        ins = _upsert(c)(used_codes)
        stmt = ins.on_conflict_do_nothing(index_elements=[uc.tenant_id, uc.code]).returning(uc.code)
        for chunk in _chunks(sorted(code_rows, key=lambda r: r["code"])):
            if len(c.execute(stmt, chunk).all()) != len(chunk):
                raise _Moved()
    ins = _upsert(c)(campaign_counters)
    counter_stmt = ins.on_conflict_do_update(
        index_elements=[cc.tenant_id, cc.campaign_id, cc.scope, cc.key, cc.day],
        set_={"used": cc.used + ins.excluded.used},
        where=cc.used + ins.excluded.used <= bindparam("lim")).returning(cc.key)
    # a multi-row INSERT binds the WHERE's limit once: one statement per (scope, per day, campaign)
    groups: dict[tuple[int, int, str], list[dict[str, Any]]] = defaultdict(list)
    for (cid, scope, key, day), n in counter_add.items():
        if scope == "budget":
            continue
        rank = ("account", "device", "phone").index(scope)
        lim = getattr(camps[cid].rules.limits, f"{scope}_{'day' if day else 'campaign'}")
        groups[(rank, 0 if day else 1, cid)].append({"tenant_id": tenant, "campaign_id": cid, "scope": scope,
                                                     "key": key, "day": day, "used": n, "lim": lim})
    for _, group in sorted(groups.items()):
        for chunk in _chunks(sorted(group, key=lambda r: (r["key"], r["day"]))):
            if len(c.execute(counter_stmt, chunk).all()) != len(chunk):
                raise _Moved()
    for (cid, tier_id), n in sorted(tier_take.items()):
        if c.execute(update(prize_tiers).where(pt.tenant_id == tenant, pt.campaign_id == cid, pt.tier_id == tier_id,
                                               pt.remaining >= n)
                     .values(remaining=pt.remaining - n).returning(pt.remaining)).first() is None:
            raise _Moved()
    for cid, a in sorted(spent_add.items()):
        if c.execute(update(campaigns_t).where(ct.tenant_id == tenant, ct.id == cid, ct.spent_fen + a <= ct.budget_fen)
                     .values(spent_fen=ct.spent_fen + a).returning(ct.spent_fen)).first() is None:
            raise _Moved()
    for (cid, scope, key, day), n in sorted(counter_add.items()):
        if scope == "budget":
            prm = {"tenant_id": tenant, "campaign_id": cid, "scope": scope, "key": key, "day": day, "used": n,
                   "lim": camps[cid].rules.daily_cap_fen}
            if len(c.execute(counter_stmt, [prm]).all()) != 1:
                raise _Moved()
    if coupon_rows:
        c.execute(insert(coupons), coupon_rows)
    if challenge_rows:
        c.execute(insert(challenges), challenge_rows)
    if rows:
        c.execute(insert(ledger), rows)
    return out


def _code_row(out: list[dict[str, Any]], tenant: str, p: Payout, status: str, tier_id: str, amount: int) -> None:
    if p.code is None:
        return
    batch, serial = _code_parts(p.code)
    out.append({"tenant_id": tenant, "code": p.code, "batch_id": batch, "serial": serial, "campaign_id": p.campaign_id,
                "account_id": p.account, "event_id": p.event_id, "decision_id": p.decision_id, "ts": p.ts,
                "status": status, "tier_id": tier_id, "amount_fen": amount})


def _code_parts(code: str) -> tuple[int, int]:
    """Batch and serial recorded for a code settled here: those of a signed code are not re-derived (the
    online path checks signatures); batch 0 and a hash of the code stand in."""
    digest = hashlib.blake2b(code.encode(), digest_size=6).digest()
    return 0, int.from_bytes(digest, "big")
