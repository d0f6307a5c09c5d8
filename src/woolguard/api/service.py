"""The decision service behind the HTTP API: one engine per tenant per worker, idempotency, failure modes.

:class:`DecisionService` owns, for one worker process:

- the database (decision log written in batches off the request path, spilled when the database is
  down; lists, labels, policies, tenants and keys);
- one :class:`TenantRuntime` per tenant seen, holding that tenant's :class:`~woolguard.engine.Engine`
  with its own feature state (``MemoryState``, or ``RedisState(tenant=...)`` when Redis is configured),
  its active policy and its lists. A tenant's traffic only ever touches its own runtime;
- a poller thread that picks up policy activations and list changes from the database every
  ``reload_interval_s``, so the active policy hot-reloads in every worker without a restart;
- idempotency: a retried event (same tenant and event id) gets its first decision and is counted once:
  first the engine's memory of recent events, then (with Redis, across workers) ``SET NX GET`` of a
  claim key before any feature is updated; the decision itself is stored under the claim shortly after,
  off the request path. The decision log's unique ``(tenant, event_id)`` keeps one row per event.
- failure modes: when Redis fails or is slow the policy's ``failure_mode`` decides (open: pass, level 0;
  closed: review, level 3), the decision says so in ``degraded``, a breaker skips Redis for
  ``breaker_s`` and then tries it again by itself. Lists still apply to degraded decisions.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import func, select, update

from woolguard.engine import Engine, decision_id, entities_of, secret_from_env
from woolguard.events import Challenge, Decision, Event, Outcome, Reason
from woolguard.model.serving import refresh_models
from woolguard.reasons import CODES
from woolguard.reputation.network import IpBook
from woolguard.reputation.phone import PhoneBook
from woolguard.rules.lists import LIST_ENTITIES, ListEntry, Lists
from woolguard.rules.policy import Policy
from woolguard.runtime import freeze
from woolguard.storage import DecisionLog, open_database
from woolguard.storage.decision_log import get_decision
from woolguard.storage.schema import list_entries, policies

from . import metrics
from .keys import KeyResolver
from .redis_pipe import pack_set_ex
from .settings import Settings

log = logging.getLogger("woolguard.api")

try:  # the Redis backend is optional (and may not be installed in every checkout yet)
    from woolguard.features.redis_state import FeatureStateUnavailable
except Exception:  # pragma: no cover - until features/redis_state.py lands

    class FeatureStateUnavailable(RuntimeError):  # type: ignore[no-redef]
        pass

_DECISION = msgspec.json.Decoder(Decision)
_ENCODE = msgspec.json.Encoder().encode
REMEMBER_DEGRADED = 100_000
PENDING_WAIT_S = 0.5
#: How long the idempotency store waits for a claim to carry the pending decisions before sending them itself.
STORE_IDLE_S = 0.02


def _stored_form(decision: Decision) -> bytes:
    """The decision as kept under its idempotency claim: what a retry is answered with. Answers never carry the
    features (they are in ``GET /v1/decisions/{id}``), so neither does this copy: a third of the bytes."""
    if decision.features:
        decision = msgspec.structs.replace(decision, features={})
    return _ENCODE(decision)


def _dependency_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [FeatureStateUnavailable, OSError, TimeoutError]
    try:
        import redis

        errors.append(redis.RedisError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


DEPENDENCY_ERRORS = _dependency_errors()
try:
    from redis.exceptions import ResponseError
except ImportError:  # pragma: no cover

    class ResponseError(Exception):  # type: ignore[no-redef]
        pass


@dataclass(slots=True)
class Pending:
    """Another worker claimed this event and has not stored its decision yet."""

    key: str
    tenant: str
    event_id: str


class Breaker:
    """After a failure, say "down" for ``hold_s``; then let calls through again (recovery is automatic)."""

    def __init__(self, name: str, hold_s: float):
        self.name = name
        self.hold_s = hold_s
        self.open_until = 0.0
        self.last_error = ""

    def is_open(self) -> bool:
        return self.open_until > time.monotonic()

    def trip(self, exc: BaseException) -> str:
        first = self.open_until == 0.0 or not self.is_open()
        self.open_until = time.monotonic() + self.hold_s
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        self.last_error = text
        metrics.DEPENDENCY_FAILURES.labels(self.name).inc()
        if first:
            log.warning("%s failed, deciding by the failure mode for %.1fs: %s", self.name, self.hold_s, text)
        return text

    def ok(self) -> None:
        self.open_until = 0.0


@dataclass
class TenantRuntime:
    tenant: str
    engine: Engine
    policy_key: tuple[str, int] | None = None  # (policy_id, version) served; None: the built-in default
    lists_fp: tuple[Any, ...] | None = None
    loaded: bool = False  # False: the database could not be read when this runtime was made
    gang_run: int | None = None  # the gang run loaded into engine.gangs (see refresh_gangs)
    campaign_policy_keys: dict[str, tuple[str, int]] | None = None  # campaigns' own policies loaded (issue 6)
    degraded_recent: OrderedDict[str, Decision] = field(default_factory=OrderedDict)


def rows_to_lists(rows: list[dict[str, Any]]) -> Lists:
    entries = []
    for r in rows:
        if r["entity_type"] not in LIST_ENTITIES:
            continue
        entries.append(ListEntry(list=r["list_kind"], entity=r["entity_type"], value=r["value"],
                                 campaign_id=r["campaign_id"], expires_at=r["expires_at"],
                                 reason=r["reason"] or "", id=str(r["id"])))
    return Lists(entries)


def decision_from_row(row: dict[str, Any]) -> Decision:
    return Decision(decision_id=row["id"], event_id=row["event_id"], level=row["level"],
                    outcome=Outcome(row["outcome"]), score=row["score"],
                    reasons=msgspec.convert(row["reasons"] or [], list[Reason]),
                    challenge=Challenge(row["challenge"]) if row["challenge"] else None,
                    policy=row["policy"] or "", degraded=row["degraded"], features=row["features"] or {})


class DecisionService:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.db = open_database(settings.database_url)
        self.dlog = DecisionLog(self.db, batch_size=settings.log_batch, spill_dir=settings.spill_dir)
        self.keys = KeyResolver(self.db, settings.key_cache_s)
        self.phones = PhoneBook(secret_from_env())
        self.ips = IpBook()
        self.tenants: dict[str, TenantRuntime] = {}
        self._tenants_lock = threading.Lock()
        self.redis_breaker = Breaker("redis", settings.breaker_s)
        self.db_up = True
        self.db_error = ""
        self.redis: Any = None
        self._redis_state_cls: Any = None
        self._stored: list[tuple[str, bytes]] = []  # decisions to store under their claim keys
        self._last_claim = 0.0
        self._expiry_due = 0.0  # monotonic time of the next coupon-expiry pass (see expire_coupons)
        self._gang_error = ""  # the last gang-table load error, logged once
        self._stored_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.pipe: Any = None  # the pipelined asyncio connection of the hot path (see decide_async)
        if settings.redis_url:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # One client per worker, shared by the idempotency claims and every tenant's RedisState; no
            # retries: a failure must reach the failure mode within the time budget.
            self.redis = redis.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s,
                                              socket_connect_timeout=settings.redis_timeout_s,
                                              retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
            from .redis_pipe import RedisPipe

            self.pipe = RedisPipe(settings.redis_url, settings.redis_timeout_s)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        # Background threads (log flush, reload) must not hold the GIL for 5 ms while a request waits on Redis.
        sys.setswitchinterval(0.0005)
        self.dlog.start_background(self.settings.log_flush_s)
        self._spawn("woolguard-reload", self._poll_loop)
        if self.redis is not None:
            self._spawn("woolguard-idempotency", self._store_loop)
        self._start_gang_schedule()

    def gang_scheduler(self) -> Any:
        """The scheduled gang runs of this worker's tenants (woolguard.gangs.schedule); the hook is here,
        the logic there. Each saved run is loaded into that tenant's engine at once."""
        from woolguard.gangs.schedule import GangScheduler

        return GangScheduler(self.db, lambda: list(self.tenants), self.settings.gang_interval_s,
                             self.settings.gang_window_s, on_run=lambda tenant, _run: self.refresh_gangs(tenant))

    def _start_gang_schedule(self) -> None:
        if self.settings.gang_interval_s > 0:
            sched = self.gang_scheduler()
            self._spawn("woolguard-gangs", lambda: sched.run_forever(self._stop))

    def _spawn(self, name: str, target: Any) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    async def drain(self) -> None:
        """Let the pipelined connection answer what is queued (decision stores) before :meth:`close`."""
        if self.pipe is not None:
            await self.pipe.drain()
            self.pipe.close()

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        self.dlog.close()
        if self.redis is not None:
            self.redis.close()
        self.db.close()

    # -- tenants --------------------------------------------------------------------------------

    def feature_state(self, tenant: str) -> Any:
        if self.settings.redis_url is None:
            from woolguard.features.state import MemoryState

            return MemoryState()
        if self._redis_state_cls is None:
            from woolguard.features.redis_state import RedisState

            self._redis_state_cls = RedisState
        return self._redis_state_cls(self.settings.redis_url, tenant=tenant, client=self.redis,
                                     timeout_s=self.settings.redis_timeout_s)

    def runtime(self, tenant: str) -> TenantRuntime:
        rt = self.tenants.get(tenant)
        if rt is not None:
            return rt
        with self._tenants_lock:
            rt = self.tenants.get(tenant)
            if rt is None:
                # With Redis, retries are recognised by the script's claim in any worker: the engine's own memory
                # of recent decisions only saves that round trip for quick retries to the same worker.
                engine = Engine(state=self.feature_state(tenant), phones=self.phones, ips=self.ips, tenant=tenant,
                                remember=10_000 if self.settings.redis_url else 100_000)
                rt = TenantRuntime(tenant, engine)
                self._load(rt)
                self.tenants[tenant] = rt
                refresh_models(self, tenant, force=True)  # the tenant's served model (model/serving.py)
                freeze()  # the engine, its policy and model live as long as the worker: out of the GC's walks
        return rt

    def _load(self, rt: TenantRuntime) -> None:
        """Active policy and lists from the database; on failure keep the defaults, retry on the next poll."""
        try:
            self._refresh_policy(rt, self._active_policies().get(rt.tenant))
            self._refresh_campaign_policies(rt)
            self._refresh_lists(rt, force=True)
            rt.loaded = True
            self._db_ok()
        except Exception as exc:  # the database is down: decide by the failure mode until it is back
            self._db_failed(exc)

    def _active_policies(self) -> dict[str, tuple[str, int]]:
        c = policies.c
        out: dict[str, tuple[str, int, int]] = {}
        with self.db.connect() as conn:
            for tenant, pid, version, rid in conn.execute(select(c.tenant_id, c.policy_id, c.version, c.id)
                                                          .where(c.active)):
                if tenant not in out or rid > out[tenant][2]:
                    out[tenant] = (pid, version, rid)
        return {t: (p, v) for t, (p, v, _r) in out.items()}

    def _refresh_policy(self, rt: TenantRuntime, key: tuple[str, int] | None) -> bool:
        if key == rt.policy_key:
            return False
        if key is None:
            from woolguard.engine import default_policy_text

            policy = rt.engine.load_policy_text(default_policy_text(), "default.yaml")
        else:
            c = policies.c
            with self.db.connect() as conn:
                body = conn.execute(select(c.body).where(c.tenant_id == rt.tenant, c.policy_id == key[0],
                                                         c.version == key[1])).scalar()
            if body is None:
                return False
            policy = self.build_policy(rt.engine, body, key)
        rt.engine.set_policy(policy)
        rt.policy_key = key
        metrics.POLICY_RELOADS.inc()
        return True

    def _refresh_campaign_policies(self, rt: TenantRuntime) -> bool:
        """Campaigns' own policies (their rules' ``policy``): each campaign's events are decided with it."""
        from woolguard.campaigns.policies import campaign_policy_keys, load_campaign_policies

        with self.db.connect() as conn:
            keys = campaign_policy_keys(conn, rt.tenant)
            if keys == rt.campaign_policy_keys:
                return False
            load_campaign_policies(conn, rt.tenant, rt.engine, lambda e, body, key: self.build_policy(e, body, key),
                                   keys)
        rt.campaign_policy_keys = keys
        return True

    @staticmethod
    def build_policy(engine: Engine, body: str, key: tuple[str, int] | None = None) -> Policy:
        policy = engine.load_policy_text(body, f"{key[0]}@{key[1]}" if key else "<upload>")
        if key is not None:  # decisions name the stored version, whatever the document says
            policy.id, policy.version = key
        return policy

    def _lists_fingerprints(self) -> dict[str, tuple[Any, ...]]:
        c = list_entries.c
        query = select(c.tenant_id, func.count(), func.max(c.id), func.sum(func.coalesce(c.expires_at, 0)),
                       func.max(func.length(c.reason))).group_by(c.tenant_id)
        with self.db.connect() as conn:
            return {r[0]: tuple(r[1:]) for r in conn.execute(query)}

    def _refresh_lists(self, rt: TenantRuntime, fp: tuple[Any, ...] | None = None, force: bool = False) -> None:
        if not force and fp == rt.lists_fp:
            return
        c = list_entries.c
        with self.db.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(list_entries).where(c.tenant_id == rt.tenant))]
        rt.engine.lists = rows_to_lists(rows)
        rt.lists_fp = fp if fp is not None else self._lists_fingerprints().get(rt.tenant)

    def reload_tenant(self, tenant: str) -> None:
        """Pick up this tenant's policy and lists now (after a change made through this worker)."""
        rt = self.tenants.get(tenant)
        if rt is not None:
            self._refresh_policy(rt, self._active_policies().get(tenant))
            self._refresh_campaign_policies(rt)
            self._refresh_lists(rt, force=True)

    def _poll_loop(self) -> None:
        interval = self.settings.reload_interval_s
        while not self._stop.wait(interval):
            try:
                self.poll_once()
            except Exception as exc:
                self._db_failed(exc)
            try:
                metrics.LOG_PENDING.set(self.dlog.pending())
            except Exception:  # pragma: no cover - metrics must never stop the poller
                pass

    def poll_once(self) -> None:
        active = self._active_policies()
        fps = self._lists_fingerprints()
        for tenant, rt in list(self.tenants.items()):
            if self._refresh_policy(rt, active.get(tenant)):
                log.info("tenant %s: policy %s now active", tenant, rt.engine.policy.ref)
            self._refresh_campaign_policies(rt)
            self._refresh_lists(rt, fps.get(tenant), force=not rt.loaded)
            rt.loaded = True
        self.refresh_gangs()
        refresh_models(self)  # model activations in the registry (model/serving.py)
        self.expire_coupons()
        self._db_ok()

    def expire_coupons(self, now_ms: int | None = None, force: bool = False) -> int:
        """Every ``coupon_expiry_s``: release the budget of this worker's tenants' coupons that expired
        unredeemed (``campaigns.service.expire_coupons``: one transaction per coupon, exact against concurrent
        redemptions and other workers doing the same). Returns how many were released."""
        every = self.settings.coupon_expiry_s
        if not force and (every <= 0 or time.monotonic() < self._expiry_due):
            return 0
        self._expiry_due = time.monotonic() + every
        from woolguard.campaigns.service import expire_coupons

        released = 0
        for tenant in list(self.tenants):
            with self.db.connect() as conn:
                n = expire_coupons(conn, tenant, now_ms)
            if n:
                log.info("tenant %s: released the budget of %d expired coupon(s)", tenant, n)
            released += n
        return released

    def refresh_gangs(self, tenant: str | None = None) -> None:
        """Load each tenant's newest gang run into its engine (``gang_score`` / ``gang_size`` per account)
        when it changed. One cheap query per poll; a failure here keeps the old map and never stops the poll."""
        from woolguard.storage.gangs import account_gang_map, latest_run_ids

        try:
            runs = latest_run_ids(self.db)
            for t, rt in list(self.tenants.items()):
                run = runs.get(t)
                if (tenant is None or t == tenant) and run != rt.gang_run:
                    rt.engine.gangs = account_gang_map(self.db, t, run) if run is not None else {}
                    rt.gang_run = run
            self._gang_error = ""
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if text != self._gang_error:  # once per distinct error, not every poll
                log.warning("gang table not loaded: %s", text)
            self._gang_error = text

    def _db_failed(self, exc: BaseException) -> None:
        if self.db_up:
            log.warning("database unreachable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        self.db_up = False
        self.db_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        metrics.DEPENDENCY_FAILURES.labels("database").inc()

    def _db_ok(self) -> None:
        if not self.db_up:
            log.info("database reachable again")
        self.db_up = True
        self.db_error = ""

    # -- deciding -------------------------------------------------------------------------------

    def idem_key(self, tenant: str, event_id: str) -> str:
        # In the tenant's hash tag, like its feature keys: the feature script claims it in the same call.
        return f"wg:{{{tenant}}}:idem:{event_id}"

    async def decide_async(self, tenant: str, event: Event) -> Decision | Pending:
        """:meth:`decide` for the event loop (see :meth:`decide_answer`)."""
        return (await self.decide_answer(tenant, event))[0]

    async def decide_answer(self, tenant: str, event: Event) -> tuple[Decision | Pending, bytes | None]:
        """The decision, and when it was just made, its answer body (the decision without its features,
        JSON-encoded once for both the idempotency copy and the HTTP answer).

        :meth:`decide` for the event loop: with Redis, the claim and every window are one script call
        sent through the pipelined connection (shared with the other requests in flight), and the loop keeps
        serving while Redis works. Same decisions, same failure modes."""
        pipe = self.pipe
        if pipe is None:
            return self.decide(tenant, event), None
        rt, early = self._known_or_unready(tenant, event)
        if early is not None:
            return early, None
        engine = rt.engine
        eid = event.event_id
        if self.redis_breaker.is_open():
            return self._degraded(rt, event, f"redis: {self.redis_breaker.last_error}"), None
        state = engine.state
        # The entities exactly as Engine.decide computes them: the script's values go straight to the engine.
        ev = engine.normalise(event)
        ents, ipf = engine.entities(ev)
        key = self.idem_key(tenant, eid)
        cmd, present = state.packed_command(ev.ts, ev.kind, ents, key, self.settings.idempotency_ttl_s * 1000)
        try:
            try:
                reply = await pipe.call_packed(cmd)
            except ResponseError as exc:
                if not state.needs_load(exc):
                    raise
                # Redis lost the function (restart, failover, FUNCTION FLUSH) or has none (Redis 6): nothing ran.
                # Load it, then make the command again: on a Redis without functions it is now an EVALSHA.
                await state.load_async(pipe.call)
                cmd, present = state.packed_command(ev.ts, ev.kind, ents, key,
                                                    self.settings.idempotency_ttl_s * 1000)
                reply = await pipe.call_packed(cmd)
            result = state.result(present, reply)
        except DEPENDENCY_ERRORS as exc:
            return self._degraded(rt, event, "redis: " + self.redis_breaker.trip(exc)), None
        if isinstance(result, bytes):  # claimed before: by another request or worker, or before a restart
            metrics.DUPLICATES.labels(tenant).inc()
            if result:
                return _DECISION.decode(result), result
            return Pending(key, tenant, eid), None
        # The normalised event: the decision log gets it as is (the phone is hashed once per event).
        decision = engine.decide_observed(ev, ents, ipf, result)
        if engine.tenant != tenant:
            decision = self._own(decision, tenant)
        answer = self._store_async(key, decision)
        self.dlog.append(ev, decision, tenant)
        return decision, answer

    def _store_async(self, key: str, decision: Decision) -> bytes:
        """Store the decision under its claim with the next pipelined write; if that write fails, the
        idempotency thread stores it later (a retry meanwhile waits, then finds it in the decision log).
        Returns the stored bytes (the answer body)."""
        value = _stored_form(decision)

        def requeue() -> None:
            with self._stored_lock:
                self._stored.append((key, value))

        self.pipe.send_packed(pack_set_ex(key, value, self.settings.idempotency_ttl_s), on_fail=requeue)
        return value

    def _known_or_unready(self, tenant: str, event: Event) -> tuple[TenantRuntime, Decision | None]:
        """The tenant's runtime, and the answer when no fresh decision is needed: the first decision of a
        retried event, or the failure mode's while the tenant's policy is not loaded."""
        rt = self.runtime(tenant)
        prior = rt.engine.recall(event.event_id) or rt.degraded_recent.get(event.event_id)
        if prior is not None:
            metrics.DUPLICATES.labels(tenant).inc()
            return rt, self._own(prior, tenant)
        if not rt.loaded:
            return rt, self._degraded(rt, event, f"database: tenant policy not loaded ({self.db_error})")
        return rt, None

    def decide(self, tenant: str, event: Event) -> Decision | Pending:
        """Decide one event for ``tenant`` (or return its first decision). Never raises for a dependency."""
        rt, early = self._known_or_unready(tenant, event)
        if early is not None:
            return early
        engine = rt.engine
        eid = event.event_id
        key = None
        if self.redis is not None:
            if self.redis_breaker.is_open():
                return self._degraded(rt, event, f"redis: {self.redis_breaker.last_error}")
            key = self.idem_key(tenant, eid)
            try:
                old = self._claim(key)
            except DEPENDENCY_ERRORS as exc:
                return self._degraded(rt, event, "redis: " + self.redis_breaker.trip(exc))
            if old is not None:  # claimed before: by another worker, or by this one before a restart
                metrics.DUPLICATES.labels(tenant).inc()
                if old:
                    return _DECISION.decode(old)
                return Pending(key, tenant, eid)
        try:
            decision = engine.decide(event)
        except DEPENDENCY_ERRORS as exc:
            decision = self._degraded(rt, event, "redis: " + self.redis_breaker.trip(exc), remember=False)
            if key is not None:
                self._store(key, decision)
            rt.degraded_recent[eid] = decision
            return decision
        decision = self._own(decision, tenant)
        if key is not None:
            self._store(key, decision)
        self._log(engine, event, decision, tenant)
        return decision

    def _log(self, engine: Engine, event: Event, decision: Decision, tenant: str) -> None:
        if event.phone is not None or (event.phone_hash is not None and not event.phone_hash.startswith("k:")):
            event = engine.normalise(event)
        self.dlog.append(event, decision, tenant)

    @staticmethod
    def _own(decision: Decision, tenant: str) -> Decision:
        """Decision ids are per tenant: two brands may use the same event id."""
        did = decision_id(decision.event_id, tenant)
        if decision.decision_id != did:
            decision = msgspec.structs.replace(decision, decision_id=did)
        return decision

    def _degraded(self, rt: TenantRuntime, event: Event, why: str, remember: bool = True) -> Decision:
        """Decide by the policy's failure mode (lists still apply); logged like any decision."""
        engine = rt.engine
        policy = engine.policy
        ev = engine.normalise(event)
        code = CODES["engine.degraded"]
        reasons = [Reason(code=code.code, category=code.category.value, rule="failure_mode:" + policy.failure_mode,
                          values={"dependency": why.split(":", 1)[0]}, text_en=code.en, text_zh=code.zh)]
        if policy.failure_mode == "closed":
            level, outcome = 3, Outcome.REVIEW
        else:
            level, outcome = 0, Outcome.PASS
        hits = engine.lists.match(entities_of(ev), ev.campaign_id, ev.ts)
        kinds = {h.list for h in hits}
        for e in hits:
            lc = CODES[f"list.{e.list}"]
            reasons.append(Reason(code=lc.code, category=lc.category.value, rule=f"list:{e.id or e.entity}",
                                  values={"entity": e.entity, "campaign": e.campaign_id, "note": e.reason},
                                  text_en=lc.en, text_zh=lc.zh))
        if "block" in kinds:
            level, outcome = 4, Outcome.REJECT
        elif "allow" in kinds:
            level, outcome = 0, Outcome.PASS
        elif "review" in kinds:
            level, outcome = max(level, 3), Outcome.REVIEW
        decision = Decision(decision_id=decision_id(event.event_id, rt.tenant), event_id=event.event_id,
                            level=level, outcome=outcome, score=0, reasons=reasons, policy=policy.ref,
                            degraded=why[:300])
        if remember:
            recent = rt.degraded_recent
            recent[event.event_id] = decision
            if len(recent) > REMEMBER_DEGRADED:
                recent.popitem(last=False)
        self.dlog.append(ev, decision, rt.tenant)
        return decision

    def pending_decision(self, p: Pending) -> Decision | None:
        """A claimed event's stored decision: from Redis, else from the decision log; None if not yet there."""
        try:
            raw = self.redis.get(p.key)
            if raw:
                return _DECISION.decode(raw)
        except DEPENDENCY_ERRORS:
            pass
        self.dlog.flush()
        row = get_decision(self.db, p.tenant, p.event_id)
        return decision_from_row(row) if row is not None else None

    def _claim(self, key: str) -> bytes | None:
        """``SET key "" NX GET`` in the same round trip as the decisions waiting to be stored."""
        self._last_claim = time.monotonic()
        with self._stored_lock:
            stored, self._stored = self._stored, []
        ttl = self.settings.idempotency_ttl_s
        if not stored:
            return self.redis.set(key, b"", nx=True, get=True, ex=ttl)
        pipe = self.redis.pipeline(transaction=False)
        for k, v in stored:
            pipe.set(k, v, ex=ttl)
        pipe.set(key, b"", nx=True, get=True, ex=ttl)
        try:
            return pipe.execute()[-1]
        except DEPENDENCY_ERRORS:
            with self._stored_lock:
                self._stored = stored + self._stored  # try again with the next claim
            raise

    def _store(self, key: str, decision: Decision) -> None:
        value = _stored_form(decision)
        with self._stored_lock:
            self._stored.append((key, value))

    def _store_loop(self) -> None:
        """When traffic pauses, store the decisions still waiting (under load the claims carry them)."""
        ttl = self.settings.idempotency_ttl_s
        while not self._stop.wait(STORE_IDLE_S):
            if not self._stored or time.monotonic() - self._last_claim < STORE_IDLE_S:
                continue
            with self._stored_lock:
                stored, self._stored = self._stored, []
            try:
                pipe = self.redis.pipeline(transaction=False)
                for k, v in stored:
                    pipe.set(k, v, ex=ttl)
                pipe.execute()
            except DEPENDENCY_ERRORS as exc:
                with self._stored_lock:
                    self._stored = stored + self._stored
                metrics.DEPENDENCY_FAILURES.labels("redis").inc()
                log.warning("idempotency store of %d decision(s) failed, will retry: %s", len(stored), exc)

    # -- admin helpers ----------------------------------------------------------------------------

    def activate(self, tenant: str, policy_id: str, version: int) -> None:
        """Make ``policy_id@version`` the tenant's one served policy (other policies are deactivated)."""
        from woolguard.storage.policies import activate_policy

        c = policies.c
        activate_policy(self.db, policy_id, version, tenant=tenant)
        with self.db.begin() as conn:
            conn.execute(update(policies).where(c.tenant_id == tenant, c.policy_id != policy_id, c.active)
                         .values(active=False))

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"database": "up" if self.db_up else "down"}
        if self.db_error:
            out["database_error"] = self.db_error
        if self.redis is not None:
            out["redis"] = "down" if self.redis_breaker.is_open() else "up"
        try:
            out["decision_log_pending"] = self.dlog.pending()
        except Exception:  # pragma: no cover
            pass
        return out
