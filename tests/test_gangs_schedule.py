"""Scheduled gang runs (woolguard.gangs.schedule): one pass over a tenant's recent decision log saves a
run, the service's engine picks it up, and a member's next event meets its gang score."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_api import settings_for
from woolguard.api.service import DecisionService
from woolguard.api.settings import Settings
from woolguard.events import Event
from woolguard.gangs.schedule import GangScheduler
from woolguard.sim import SimConfig, simulate
from woolguard.storage.gangs import account_gang_map, latest_run


def test_one_scheduled_pass_stores_gangs_and_a_later_decision_sees_them(tmp_path: Path) -> None:
    service = DecisionService(settings_for(tmp_path))
    try:
        events: list[Event] = list(simulate(SimConfig(seed=3, scale=0.03, days=1)))
        truth = {e.account.id: e.truth for e in events}
        for e in events:
            service.decide("acme", e)
        service.dlog.flush()
        last_s = events[-1].ts / 1000
        runs: list[tuple[str, dict]] = []
        sched = GangScheduler(service.db, lambda: ["acme", "quiet"], interval_s=3600, window_s=86_400,
                              clock=lambda: last_s, on_run=lambda t, r: (runs.append((t, r)),
                                                                        service.refresh_gangs(t)))
        done = sched.run_once()
        assert set(done) == {"acme", "quiet"} and done["quiet"]["gangs"] == 0  # an empty log is a run too
        run = latest_run(service.db, "acme")
        assert run is not None and run["source"] == "schedule" and run["gangs"] >= 3
        assert run["events"] == len(events) and [t for t, _ in runs] == ["acme", "quiet"]
        gmap = account_gang_map(service.db, "acme")
        members = [a for a, (score, _) in gmap.items() if score >= 60]
        assert members and sum(truth[a] != "genuine" for a in members) >= 0.9 * len(members)
        # the worker that ran it reloaded at once: the engine's gang map is the stored one
        assert service.runtime("acme").engine.gangs == gmap
        # not due again within the interval: a second pass does nothing; force runs anyway
        assert sched.run_once() == {}
        assert set(sched.run_once(force=True)) == {"acme", "quiet"}
        # a member's next event carries its gang score and is stopped by the default policy's gang rules
        m = members[0]
        last = next(e for e in reversed(events) if e.account.id == m)
        nxt = Event(**{**{f: getattr(last, f) for f in last.__struct_fields__}, "event_id": "after-run",
                       "ts": events[-1].ts + 60_000})
        d = service.decide("acme", nxt)
        assert d.features["gang_score"] == gmap[m][0] >= 60
        assert any("gang" in r.rule for r in d.reasons) and d.outcome != "pass"
    finally:
        service.close()


def test_window_excludes_old_events_and_bad_settings_are_refused(tmp_path: Path) -> None:
    service = DecisionService(settings_for(tmp_path))
    try:
        events = list(simulate(SimConfig(seed=3, scale=0.02, days=1)))
        for e in events:
            service.decide("acme", e)
        service.dlog.flush()
        later = events[-1].ts / 1000 + 2 * 86_400  # two days after the campaign: the day's window is empty
        sched = GangScheduler(service.db, lambda: ["acme"], window_s=86_400, clock=lambda: later)
        assert sched.run_once()["acme"]["events"] == 0
        with pytest.raises(ValueError, match="interval"):
            GangScheduler(service.db, lambda: [], interval_s=0)
        with pytest.raises(ValueError, match="window"):
            GangScheduler(service.db, lambda: [], window_s=-1)
    finally:
        service.close()


def test_service_starts_the_scheduler_only_when_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().gang_interval_s == 0
    monkeypatch.setenv("WOOLGUARD_GANG_INTERVAL_S", "900")
    monkeypatch.setenv("WOOLGUARD_GANG_WINDOW_S", "7200")
    s = Settings.from_env()
    assert (s.gang_interval_s, s.gang_window_s) == (900, 7200)
    off = DecisionService(settings_for(tmp_path))
    on = DecisionService(settings_for(tmp_path / "on", gang_interval_s=900.0))
    try:
        off.start()
        on.start()
        names = lambda svc: {t.name for t in svc._threads}  # noqa: E731
        assert "woolguard-gangs" not in names(off) and "woolguard-gangs" in names(on)
        assert on.gang_scheduler().interval_s == 900
    finally:
        off.close()
        on.close()
