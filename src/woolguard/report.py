"""Deciding a stream of events and reporting what it did: the demo's and replay's figures.

For each payout event (claim, scan, redeem, assist, accept-invite, task) the report follows the money:
``pass`` pays; ``verify`` pays if the actor passes the named challenge; ``review`` pays if the analyst
approves; ``reject`` pays nothing. Whether an actor passes comes from the simulator's challenge model
(:func:`woolguard.sim.challenge_passed`), deterministic per event, so a demo run and a replay of its
recording give the same figures. Figures are grouped by the events' ``truth`` label, which the engine
never reads.

With a :class:`~woolguard.campaigns.batch.PayoutBook` and a ``plan`` (event → payout), the money goes
through the campaigns ledger instead: each payout is settled in batches against real campaigns (limits,
tier counts, budgets, daily caps, one payout per code), and the report counts what the ledger settled —
``won`` pays the ledger's amount, ``refused`` saves what it would have cost, ``limited`` / ``exhausted`` /
``used`` pay nothing and save nothing by the decision. ``woolguard demo`` then replaces the money figures
by SUMs read back from the ledger table (see docs/campaigns.md, "The demo's money").
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from woolguard.campaigns.batch import Payout, PayoutBook, Settled
from woolguard.engine import Engine
from woolguard.events import PAYOUT_KINDS, Decision, Event, Outcome

GENUINE = "genuine"


class LatencyHistogram:
    """Decision latencies in 1 µs bins up to 100 ms (exact enough for p50/p99, constant memory)."""

    def __init__(self, max_us: int = 100_000):
        self.bins = [0] * (max_us + 1)
        self.max_us = max_us
        self.count = 0
        self.total_ns = 0

    def add(self, ns: int) -> None:
        us = ns // 1000
        self.bins[us if us < self.max_us else self.max_us] += 1
        self.count += 1
        self.total_ns += ns

    def quantile_ms(self, q: float) -> float:
        if not self.count:
            return 0.0
        target = math.ceil(q * self.count)
        seen = 0
        for us, n in enumerate(self.bins):
            seen += n
            if seen >= target:
                return (us + 1) / 1000.0
        return self.max_us / 1000.0


@dataclass
class Group:
    accounts: set[str] = field(default_factory=set)
    events: int = 0
    claims: int = 0
    caught: int = 0
    rejected: int = 0
    challenged: int = 0
    reviewed: int = 0
    #: Money paid, and saved by refusals (what the refused payouts would have cost), integer fen.
    paid_fen: int = 0
    saved_fen: int = 0
    #: Payouts the decision let through that the campaign's limits, counts or budgets stopped.
    stopped_by_rules: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)


class Report:
    def __init__(self, challenge_model: Callable[[Event, str], bool], book: PayoutBook | None = None,
                 plan: Callable[[Event, Decision, bool], Payout | None] | None = None):
        self.challenge_model = challenge_model
        self.book = book
        self.plan = plan
        if book is not None:
            book.on_settled = self._on_settled
        #: Called with (account, yuan) for each payout paid (the gang sweep's money).
        self.on_paid: Callable[[str, float], None] | None = None
        self.groups: dict[str, Group] = defaultdict(Group)
        self.latency = LatencyHistogram()
        self.events = 0
        self.engine_seconds = 0.0
        self.hourly: dict[int, Counter[str]] = defaultdict(Counter)
        self.first_ts: int | None = None
        self.gangs: dict[str, Any] | None = None

    def add(self, event: Event, decision: Decision, elapsed_ns: int) -> None:
        self.events += 1
        self.latency.add(elapsed_ns)
        if self.first_ts is None:
            self.first_ts = event.ts
        truth = event.truth or GENUINE
        g = self.groups[truth]
        g.events += 1
        g.accounts.add(event.account.id)
        if event.kind not in PAYOUT_KINDS:
            return
        g.claims += 1
        outcome = decision.outcome
        g.outcomes[outcome.value] += 1
        for r in decision.reasons:
            if not r.shadow:
                g.reasons[r.code] += 1
        if outcome is Outcome.PASS:
            passed = True
        elif outcome is Outcome.REJECT:
            g.rejected += 1
            passed = False
        elif outcome is Outcome.VERIFY:
            g.challenged += 1
            passed = self.challenge_model(event, decision.challenge.value if decision.challenge else "captcha")
        else:
            g.challenged += 1
            g.reviewed += 1
            passed = self.challenge_model(event, "review")
        if self.book is not None and self.plan is not None:
            payout = self.plan(event, decision, passed)
            if payout is not None:
                self.book.add(payout, (truth, event.ts, event.account.id))
                return
        value = round((event.value or 0.0) * 100)
        self._settle(truth, event.ts, event.account.id, "won" if passed else "refused", value)

    def _on_settled(self, payout: Payout, settled: Settled, ctx: tuple[str, int, str]) -> None:
        self._settle(*ctx, settled.status, settled.paid_fen if settled.status == "won" else settled.amount_fen)

    def _settle(self, truth: str, ts: int, account: str, status: str, amount_fen: int) -> None:
        g = self.groups[truth]
        paid = status == "won"
        if paid:
            g.paid_fen += amount_fen
            if self.on_paid is not None:
                self.on_paid(account, amount_fen / 100)
        else:
            g.caught += 1
            if status == "refused":
                g.saved_fen += amount_fen
            else:
                g.stopped_by_rules += 1
        hour = (ts - (self.first_ts or ts)) // 3_600_000
        self.hourly[hour][("genuine" if truth == GENUINE else "gang") + ("_paid" if paid else "_stopped")] += 1

    def flush(self) -> None:
        """Settle the payouts still queued in the book (before a gang sweep, and at the end)."""
        if self.book is not None:
            self.book.flush()

    def to_dict(self) -> dict[str, Any]:
        archetypes = {}
        for name, g in sorted(self.groups.items()):
            if name == GENUINE:
                continue
            archetypes[name] = {
                "accounts": len(g.accounts), "events": g.events, "claims": g.claims, "claims_caught": g.caught,
                "caught_pct": _pct(g.caught, g.claims), "rejected_pct": _pct(g.rejected, g.claims),
                "challenged_pct": _pct(g.challenged, g.claims),
                "prize_paid": g.paid_fen / 100, "prize_saved": g.saved_fen / 100,
                "stopped_by_rules": g.stopped_by_rules,
                "outcomes": dict(g.outcomes), "top_reasons": dict(g.reasons.most_common(8)),
            }
        gen = self.groups.get(GENUINE, Group())
        genuine = {
            "accounts": len(gen.accounts), "events": gen.events, "claims": gen.claims,
            "rejected_pct": _pct(gen.rejected, gen.claims), "challenged_pct": _pct(gen.challenged, gen.claims),
            "not_paid_pct": _pct(gen.caught, gen.claims),
            "prize_paid": gen.paid_fen / 100, "prize_lost_to_friction": gen.saved_fen / 100,
            "stopped_by_rules": gen.stopped_by_rules,
            "outcomes": dict(gen.outcomes), "top_reasons": dict(gen.reasons.most_common(8)),
        }
        gang_claims = sum(g.claims for n, g in self.groups.items() if n != GENUINE)
        gang_caught = sum(g.caught for n, g in self.groups.items() if n != GENUINE)
        return {
            "events": self.events,
            "archetypes": archetypes,
            "genuine": genuine,
            "totals": {
                "gang_claims": gang_claims, "gang_claims_caught": gang_caught,
                "gang_caught_pct": _pct(gang_caught, gang_claims),
                "prize_paid": sum(g.paid_fen for g in self.groups.values()) / 100,
                "prize_saved": sum(g.saved_fen for n, g in self.groups.items() if n != GENUINE) / 100,
            },
            "perf": {
                "decisions_per_s": round(self.events / self.engine_seconds, 1) if self.engine_seconds else 0.0,
                "p50_ms": self.latency.quantile_ms(0.50), "p99_ms": self.latency.quantile_ms(0.99),
                "mean_ms": round(self.latency.total_ns / max(1, self.latency.count) / 1e6, 4),
            },
            "hourly": {str(h): dict(c) for h, c in sorted(self.hourly.items())},
            **({"gangs": self.gangs} if self.gangs is not None else {}),
        }


def ledger_figures(report: Report, conn: Any, tenant: str, campaign_ids: list[str]) -> dict[str, Any]:
    """Read the money back from the ledger: per truth group, ``paid`` = SUM of ``paid`` + ``redeemed`` +
    ``reversed`` rows, ``saved`` = SUM of ``refused`` rows, over ``campaign_ids``. Raises if the ledger
    disagrees with what the report settled (a bookkeeping bug: never hidden)."""
    from sqlalchemy import func, select

    from woolguard.campaigns.report import PAID_KINDS
    from woolguard.storage.schema import ledger

    truth_of = {a: name for name, g in report.groups.items() for a in g.accounts}
    paid: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    lc = ledger.c
    if conn.in_transaction():
        conn.commit()
    for acct, kind, total in conn.execute(
            select(lc.account_id, lc.kind, func.sum(lc.amount_fen))
            .where(lc.tenant_id == tenant, lc.campaign_id.in_(campaign_ids), lc.kind.in_((*PAID_KINDS, "refused")))
            .group_by(lc.account_id, lc.kind)):
        truth = truth_of.get(acct, GENUINE)
        if kind == "refused":
            refused[truth] += int(total)
        else:
            paid[truth] += int(total)
    conn.commit()
    for name, g in report.groups.items():
        if (g.paid_fen, g.saved_fen) != (paid[name], refused[name]):
            raise RuntimeError(f"ledger and report disagree for {name}: ledger paid {paid[name]} refused "
                               f"{refused[name]} fen, report paid {g.paid_fen} saved {g.saved_fen} fen")
    return {"paid_fen": dict(paid), "refused_fen": dict(refused)}


def _pct(a: int, b: int) -> float:
    return round(100.0 * a / b, 3) if b else 0.0


class GangSweep:
    """The online gang sweep: collects links from each decided event and, every ``interval_s`` of event
    time, runs the gang detectors over the last ``window_s`` and refreshes ``engine.gangs``, so later
    events of gang accounts carry ``gang_score`` / ``gang_size``. Keeps the figures the report shows:
    gangs found, their accounts, and the money gang accounts took before and after their detection."""

    def __init__(self, interval_s: int = 3 * 3600, window_s: int = 24 * 3600):
        from woolguard.gangs.links import LinkBuffer

        self.interval_s = interval_s
        self.window_s = window_s
        self.buffer = LinkBuffer()
        self.next_s: int | None = None
        self.seconds = 0.0
        self.sweeps = 0
        self.gangs: dict[str, tuple[int, int]] = {}
        self.detected_at: dict[str, int] = {}  # account -> event time (s) of its first detection
        self.last = None
        self.truth: dict[str, str] = {}
        self.paid_before = 0.0
        self.paid_after = 0.0
        self.money: dict[str, float] = defaultdict(float)
        self.paid_pre: dict[str, float] = {}
        #: Called before each sweep runs (the report settles queued payouts, so money is counted
        #: against the detections that existed when it was paid).
        self.before_run: Callable[[], None] | None = None

    def before(self, engine: Engine, ts_s: int) -> None:
        """Called before each event: runs the detectors when the next sweep is due."""
        if self.next_s is None:
            self.next_s = ts_s + self.interval_s
        elif ts_s >= self.next_s:
            if self.before_run is not None:
                self.before_run()
            self.run(engine, ts_s)

    def after(self, event: Event) -> None:
        """Called after each decided (normalised) event: its links."""
        self.buffer.add(event)
        if event.truth is not None:
            self.truth[event.account.id] = event.truth

    def paid(self, account: str, yuan: float) -> None:
        """Money paid to ``account`` (counted before or after the account's detection)."""
        if yuan:
            self.money[account] += yuan
            if account not in self.detected_at:
                self.paid_pre[account] = self.paid_pre.get(account, 0.0) + yuan

    def run(self, engine: Engine | None, now_s: int) -> None:
        from woolguard.gangs.campaign import detect_buffer

        t0 = time.perf_counter()
        self.buffer.prune(now_s - self.window_s)
        found = detect_buffer(self.buffer)
        fresh = found.engine_map()
        for acct in fresh:
            self.detected_at.setdefault(acct, now_s)
        # an account keeps its gang score for the window once found (a ring does not come back clean)
        self.gangs.update(fresh)
        self.last = found
        if engine is not None:
            engine.gangs = self.gangs
        self.sweeps += 1
        self.seconds += time.perf_counter() - t0
        while self.next_s is not None and self.next_s <= now_s:
            self.next_s += self.interval_s

    def figures(self) -> dict[str, Any]:
        found = self.last
        accounts = set(self.detected_at)
        before = after = 0.0
        for acct, amount in self.money.items():
            if acct in accounts:
                before += self.paid_pre.get(acct, 0.0)
                after += amount - self.paid_pre.get(acct, 0.0)
        out: dict[str, Any] = {
            "gangs_found": len(found.gangs) if found is not None else 0,
            "accounts": len(accounts),
            "prize_taken": round(before + after, 2),
            "prize_taken_before_detection": round(before, 2),
            "prize_taken_after_detection": round(after, 2),
            "sweeps": self.sweeps, "sweep_seconds": round(self.seconds, 2),
            "interval_s": self.interval_s, "window_s": self.window_s,
        }
        if self.truth:
            gang_accts = [a for a in accounts if self.truth.get(a, "genuine") != GENUINE]
            out["precision"] = round(len(gang_accts) / len(accounts), 4) if accounts else 0.0
            out["genuine_accounts"] = len(accounts) - len(gang_accts)
        if found is not None:
            out["top"] = [{k: v for k, v in g.as_row().items() if k != "members"} for g in found.gangs[:10]]
        return out


def decide_stream(events: Iterable[Event], engine: Engine, report: Report,
                  sink: Callable[[Event, Decision], None] | None = None,
                  progress: Callable[[int], None] | None = None,
                  sweep: GangSweep | bool = True) -> Report:
    """Decide every event in order; time only the engine; hand each decision to ``sink``. The online
    gang sweep (a default :class:`GangSweep`, or the one given; ``sweep=False`` turns it off) runs
    between events, not timed as engine time, and its figures go in the report (``report.gangs``)."""
    gang_sweep = None if sweep is False else (GangSweep() if sweep is True else sweep)
    if gang_sweep is not None:
        report.on_paid = gang_sweep.paid
        gang_sweep.before_run = report.flush
    clock = time.perf_counter_ns
    decide = engine.decide
    normalise = engine.normalise
    engine_ns = 0
    n = 0
    for raw in events:
        if gang_sweep is not None:
            gang_sweep.before(engine, raw.ts // 1000)
        t0 = clock()
        event = normalise(raw)  # the clear phone number goes no further than this
        decision = decide(event)
        dt = clock() - t0
        engine_ns += dt
        report.add(event, decision, dt)
        if gang_sweep is not None:
            gang_sweep.after(event)
        if sink is not None:
            sink(event, decision)
        n += 1
        if progress is not None and n % 2000 == 0:
            progress(2000)
    if progress is not None:
        progress(n % 2000)
    report.engine_seconds += engine_ns / 1e9
    report.flush()
    if gang_sweep is not None:
        report.gangs = gang_sweep.figures()
    return report
