"""The demo, simulate → replay, and explain, end to end on a small campaign."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from woolguard.cli import app

runner = CliRunner()
SMALL = ["--seed", "3", "--scale", "0.05"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("demo")
    out = tmp / "demo.json"
    res = runner.invoke(app, ["demo", *SMALL, "--json", str(out), "--html", str(tmp / "demo.html"),
                              "--db", f"sqlite:///{tmp / 'log.db'}"])
    assert res.exit_code == 0, res.output
    return tmp, json.loads(out.read_text())


def test_demo_report_shape_and_figures(demo_run: tuple[Path, dict]) -> None:
    tmp, report = demo_run
    assert report["events"] > 5_000
    assert set(report["archetypes"]) == {"scripts", "phone_farm", "device_farm", "paid_crowd"}
    for name, a in report["archetypes"].items():
        assert a["accounts"] > 0 and a["claims"] > 0, name
        assert 0 <= a["claims_caught"] <= a["claims"]
        assert a["caught_pct"] == pytest.approx(100 * a["claims_caught"] / a["claims"], abs=1e-3)
    g = report["genuine"]
    assert g["claims"] > 1_000
    assert g["rejected_pct"] < 2.0 and g["challenged_pct"] < 6.0
    assert report["archetypes"]["scripts"]["caught_pct"] > 80
    assert report["perf"]["decisions_per_s"] > 0 and report["perf"]["p99_ms"] >= report["perf"]["p50_ms"]
    html = (tmp / "demo.html").read_text()
    assert "<svg" in html and "scripts" in html


def test_simulate_then_replay_gives_the_demo_figures(demo_run: tuple[Path, dict]) -> None:
    tmp, report = demo_run
    traffic = tmp / "traffic.jsonl"
    assert runner.invoke(app, ["simulate", *SMALL, "--out", str(traffic)]).exit_code == 0
    out = tmp / "replay.json"
    res = runner.invoke(app, ["replay", str(traffic), "--json", str(out)])
    assert res.exit_code == 0, res.output
    replayed = json.loads(out.read_text())
    assert replayed["events"] == report["events"]
    assert replayed["archetypes"] == report["archetypes"]
    assert replayed["genuine"] == report["genuine"]


def test_explain_shows_the_reasons_of_a_logged_decision(demo_run: tuple[Path, dict]) -> None:
    tmp, _ = demo_run
    import sqlite3

    con = sqlite3.connect(tmp / "log.db")
    event_id, = con.execute("select event_id from decisions where outcome = 'reject' limit 1").fetchone()
    res = runner.invoke(app, ["explain", event_id, "--db", f"sqlite:///{tmp / 'log.db'}"])
    assert res.exit_code == 0, res.output
    assert event_id in res.output and "reject" in res.output
    res_json = runner.invoke(app, ["explain", event_id, "--db", f"sqlite:///{tmp / 'log.db'}", "--json"])
    assert res_json.exit_code == 0
    assert runner.invoke(app, ["explain", "no-such-event", "--db", f"sqlite:///{tmp / 'log.db'}"]).exit_code == 1


def test_replay_names_the_line_of_a_bad_event(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_id":"e1","kind":"claim","ts":1800000000000,"account":{"id":"a"}}\n'
                   '{"event_id":"e2","kind":"claim","ts":"soon","account":{"id":"a"}}\n')
    res = runner.invoke(app, ["replay", str(bad)])
    assert res.exit_code == 2
    assert "line 2" in res.output and "ts" in res.output


def test_policy_check_cli(tmp_path: Path) -> None:
    broken = tmp_path / "p.yaml"
    broken.write_text("id: p\nrules:\n  - id: r1\n    when: dev_emulator &&\n    reason: device.emulator\n")
    res = runner.invoke(app, ["policy", "check", str(broken)])
    assert res.exit_code == 1 and "r1" in res.output


def test_replay_reorders_small_disorder_and_refuses_large(tmp_path: Path) -> None:
    def line(i: int, ts: int) -> str:
        return json.dumps({"event_id": f"e{i}", "kind": "login", "ts": ts, "account": {"id": f"a{i}"}})

    t = 1_800_000_000_000
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join(line(i, t + d) for i, d in enumerate([0, 30_000, 10_000, 400_000, 20_000])) + "\n")
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["replay", str(shuffled), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["events"] == 5
    late = tmp_path / "late.jsonl"
    late.write_text("\n".join(line(i, t + d) for i, d in enumerate([0, 1_000_000, 2_000_000, 30_000])) + "\n")
    res = runner.invoke(app, ["replay", str(late)])
    assert res.exit_code == 2 and "time order" in res.output


def test_demo_money_figures_are_sums_of_ledger_rows(demo_run: tuple[Path, dict]) -> None:
    import sqlite3

    tmp, report = demo_run
    led = report["ledger"]
    assert led["money_source"] == "ledger" and led["overspent"] == 0 and led["paid_twice"] == 0
    ids = [c["id"] for c in led["campaigns"]]
    assert len(ids) == 4
    con = sqlite3.connect(tmp / "log.db")
    marks = ",".join("?" * len(ids))
    paid, = con.execute(f"select sum(amount_fen) from ledger where campaign_id in ({marks}) "
                        "and kind in ('paid', 'redeemed', 'reversed')", ids).fetchone()
    assert paid > 0 and report["totals"]["prize_paid"] == paid / 100
    # saved: what the refused payouts of gang events would have cost; the truth comes from the decision
    # log (not from the report), per archetype
    by_truth = dict(con.execute(
        f"select d.truth, sum(l.amount_fen) from ledger l join decisions d on d.id = l.decision_id "
        f"where l.kind = 'refused' and l.campaign_id in ({marks}) group by d.truth", ids).fetchall())
    assert report["totals"]["prize_saved"] == sum(v for k, v in by_truth.items() if k != "genuine") / 100
    for name, a in report["archetypes"].items():
        assert a["prize_saved"] == by_truth.get(name, 0) / 100, name
    assert report["genuine"]["prize_lost_to_friction"] == by_truth.get("genuine", 0) / 100
    paid_by_truth = dict(con.execute(
        f"select d.truth, sum(l.amount_fen) from ledger l join decisions d on d.id = l.decision_id "
        f"where l.kind in ('paid', 'redeemed') and l.campaign_id in ({marks}) group by d.truth", ids).fetchall())
    for name, a in report["archetypes"].items():
        assert a["prize_paid"] == paid_by_truth.get(name, 0) / 100, name
    # every refused row was refused by its decision (reject, or a failed challenge / review)
    assert con.execute(f"select count(*) from ledger l join decisions d on d.id = l.decision_id where l.kind = "
                       f"'refused' and d.outcome = 'pass' and l.campaign_id in ({marks})", ids).fetchone() == (0,)
    # budgets and caps hold, and the spent counters agree with the ledger
    for c in led["campaigns"]:
        committed, = con.execute("select coalesce(sum(amount_fen), 0) from ledger where campaign_id = ? and "
                                 "kind in ('paid', 'issued')", (c["id"],)).fetchone()
        assert committed == c["spent_fen"] <= c["budget_fen"]
        if c["daily_cap_fen"] is not None:
            worst, = con.execute("select max(s) from (select sum(amount_fen) s from ledger where campaign_id = ? "
                                 "and kind in ('paid', 'issued') group by day)", (c["id"],)).fetchone()
            assert (worst or 0) <= c["daily_cap_fen"]
    # a code pays at most once; an event is settled once
    assert con.execute("select count(*) from (select code from ledger where kind = 'paid' and code is not null "
                       "group by code having count(*) > 1)").fetchone() == (0,)
    assert con.execute("select count(*) from (select entry from ledger group by tenant_id, entry "
                       "having count(*) > 1)").fetchone() == (0,)


def test_demo_runs_again_on_the_same_database(demo_run: tuple[Path, dict]) -> None:
    tmp, report = demo_run
    out = tmp / "again.json"
    res = runner.invoke(app, ["demo", *SMALL, "--json", str(out), "--db", f"sqlite:///{tmp / 'again.db'}"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["demo", *SMALL, "--json", str(out), "--db", f"sqlite:///{tmp / 'again.db'}"])
    assert res.exit_code == 0, res.output
    again = json.loads(out.read_text())
    assert again["totals"] == report["totals"] and again["ledger"]["campaigns"] == report["ledger"]["campaigns"]


def test_replay_decides_a_stored_campaign_with_its_own_policy(tmp_path: Path) -> None:
    from woolguard.campaigns import service as S
    from woolguard.storage import open_database
    from woolguard.storage.policies import save_policy

    url = f"sqlite:///{tmp_path / 'wg.db'}"
    db = open_database(url)
    save_policy(db, "scan-strict", "id: scan-strict\noutcomes: {0: pass, 4: reject}\nrules:\n  - id: every_scan\n"
                "    when: kind == 'scan'\n    score: 1\n    level: 4\n    reason: device.emulator\n")
    t = 1_800_000_000_000
    with db.connect() as conn:
        S.create_campaign(conn, "default", "guarded", {
            "start_ms": t - 86_400_000, "end_ms": t + 86_400_000, "budget_fen": 100, "policy": "scan-strict",
            "tiers": [{"id": "a", "amount_fen": 1, "count": 1, "probability": 1.0}]})
    db.close()
    events = tmp_path / "e.jsonl"
    lines = [json.dumps({"event_id": f"e{i}", "kind": "scan", "ts": t + i, "account": {"id": f"a{i}"},
                         "campaign_id": cid, "code_id": f"K{i}", "value": 1.0})
             for i, cid in enumerate(["guarded", "other"])]
    events.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.json"
    res = runner.invoke(app, ["replay", str(events), "--db", url, "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "scan-strict@1" in res.output
    assert json.loads(out.read_text())["genuine"]["outcomes"] == {"reject": 1, "pass": 1}
