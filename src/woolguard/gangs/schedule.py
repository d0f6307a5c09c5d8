"""Scheduled gang runs: every ``interval_s``, each tenant's recent decision log becomes a new gang run.

The service owns no detection logic: it starts a :class:`GangScheduler` (when
``WOOLGUARD_GANG_INTERVAL_S`` > 0) and the scheduler, per tenant, reads the last ``window_s`` of the
decision log, runs the detectors (:func:`woolguard.storage.gangs.run_gangs`, ``source="schedule"``) and
saves the run. The newest run is the one in force: every worker's poller loads it into its engines
(``gang_score`` / ``gang_size``), and ``on_run`` lets the worker that ran it reload at once.

Several workers may each run a scheduler: a tenant is only run when its newest run (scheduled or not,
from any worker) is older than ``interval_s`` by the database's clock, so workers do not repeat each
other's work (two racing at the same instant both save a run; the newer one is in force, no harm done).
A failing tenant is logged and retried at the next tick; it never stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from woolguard.storage.database import Database

log = logging.getLogger("woolguard.gangs.schedule")

#: Defaults: run hourly over the last three days (a paid crowd shows across several instructions).
DEFAULT_INTERVAL_S = 3600.0
DEFAULT_WINDOW_S = 3 * 86_400


def _age_s(created_at: Any, now: datetime) -> float:
    if created_at is None:
        return float("inf")
    if isinstance(created_at, str):
        created_at = datetime.fromisoformat(created_at)
    if created_at.tzinfo is None:  # SQLite hands back naive UTC stamps
        created_at = created_at.replace(tzinfo=UTC)
    return (now - created_at).total_seconds()


@dataclass
class GangScheduler:
    """Runs gang detection per tenant every ``interval_s`` seconds over the last ``window_s`` seconds.

    - ``tenants``: which tenants to consider at each tick (the service passes the tenants it serves).
    - ``clock``: epoch seconds of "now" for the window (the log's event time; wall clock by default).
    - ``on_run(tenant, run)``: called after each saved run (the service reloads that tenant's gangs).
    """

    db: Database
    tenants: Callable[[], Iterable[str]]
    interval_s: float = DEFAULT_INTERVAL_S
    window_s: float = DEFAULT_WINDOW_S
    clock: Callable[[], float] = time.time
    on_run: Callable[[str, dict[str, Any]], None] | None = None
    detect_kw: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # tenant -> last error text

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError(f"gang interval must be > 0 seconds, got {self.interval_s!r}")
        if not self.window_s > 0:
            raise ValueError(f"gang window must be > 0 seconds, got {self.window_s!r}")

    def due(self, tenant: str) -> bool:
        """True when ``tenant`` has no run yet or its newest run is ``interval_s`` old or older."""
        from woolguard.storage.gangs import latest_run

        run = latest_run(self.db, tenant)
        return run is None or _age_s(run.get("created_at"), datetime.now(UTC)) >= self.interval_s

    def run_once(self, *, force: bool = False) -> dict[str, dict[str, Any]]:
        """One pass: run every due tenant (every tenant with ``force``); returns ``{tenant: run}``."""
        from woolguard.storage.gangs import run_gangs

        now_ms = int(self.clock() * 1000)
        since_ms = now_ms - int(self.window_s * 1000)
        done: dict[str, dict[str, Any]] = {}
        for tenant in sorted(set(self.tenants())):
            try:
                if not force and not self.due(tenant):
                    continue
                run = run_gangs(self.db, tenant, since_ms=since_ms, until_ms=now_ms + 1, source="schedule",
                                **self.detect_kw)
                done[tenant] = run
                self.errors.pop(tenant, None)
                log.info("tenant %s: gang run %s, %s gangs, %s accounts (%.1f s)", tenant, run["id"], run["gangs"],
                         run["members"], run["seconds"])
                if self.on_run is not None:
                    self.on_run(tenant, run)
            except Exception as exc:  # one tenant's failure must not stop the others or the thread
                text = f"{type(exc).__name__}: {exc}"
                if self.errors.get(tenant) != text:
                    log.warning("tenant %s: scheduled gang run failed: %s", tenant, text)
                self.errors[tenant] = text
        return done

    def run_forever(self, stop: threading.Event, tick_s: float | None = None) -> None:
        """Call :meth:`run_once` until ``stop`` is set, checking every ``tick_s`` (a tenth of the interval,
        at most a minute) whether a tenant is due."""
        tick = tick_s if tick_s is not None else min(60.0, max(1.0, self.interval_s / 10))
        while not stop.is_set():
            self.run_once()
            if stop.wait(tick):
                return
