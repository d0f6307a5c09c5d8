"""``woolguard explain``: one decision rendered with its event, reasons, values and features."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from woolguard.events import Account, Decision, Device, Event, EventKind, Outcome, Reason
from woolguard.storage import DecisionLog, open_database
from woolguard.storage.decision_log import get_decision
from woolguard.storage.explain import explain_command, format_ts, render_explanation

EVENT = Event(event_id="evt-42", kind=EventKind.SCAN, ts=1_717_200_000_250, account=Account(id="acct-7"),
              campaign_id="spring-red-packet", device=Device(id="dev-9", emulator=True), ip="10.1.2.3",
              value=8.8, phone_prefix="1703")
DECISION = Decision(
    decision_id="dec-42", event_id="evt-42", level=4, outcome=Outcome.REJECT, score=95, policy="default@2",
    reasons=[Reason(code="device.emulator", category="device", rule="R_EMULATOR", score=60, level=3,
                    values={"emulator": True}, text_en="The device is an emulator",
                    text_zh="设备是模拟器"),
             Reason(code="phone.virtual_operator", category="account", rule="R_VIRTUAL", score=35,
                    values={"phone_prefix": "1703", "operator": "virtual"},
                    text_en="Virtual-operator number", text_zh="虚拟运营商号码")],
    features={"dev_accounts_24h": 17, "phone_virtual": True})


def stored_row(tmp_path: Path) -> tuple[str, dict]:
    url = f"sqlite:///{tmp_path / 'wg.db'}"
    db = open_database(url)
    with DecisionLog(db, spill_dir=tmp_path) as dlog:
        dlog.append(EVENT, DECISION)
    row = get_decision(db, "default", "evt-42")
    db.close()
    return url, row


def text_of(renderable, width: int = 200) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_render_shows_event_reasons_values_and_features(tmp_path: Path) -> None:
    _, row = stored_row(tmp_path)
    out = text_of(render_explanation(row))
    for expected in ("evt-42", "dec-42", "scan", "2024-06-01T00:00:00.250+00:00", "acct-7", "dev-9",
                     "10.1.2.3",
                     "spring-red-packet", "reject", "95", "default@2",
                     "device.emulator", "R_EMULATOR", "emulator = true", "The device is an emulator",
                     "phone.virtual_operator", "R_VIRTUAL", "operator = virtual", "phone_prefix = 1703",
                     "Virtual-operator number", "dev_accounts_24h", "17", "phone_virtual"):
        assert expected in out, expected
    assert "设备是模拟器" not in out


def test_render_in_chinese_with_a_timezone(tmp_path: Path) -> None:
    _, row = stored_row(tmp_path)
    out = text_of(render_explanation(row, lang="zh", tz="Asia/Shanghai"))
    for expected in ("设备是模拟器", "虚拟运营商号码", "账号", "原因", "2024-06-01T08:00:00.250+08:00"):
        assert expected in out, expected
    assert "The device is an emulator" not in out
    assert format_ts(None) == "-"


def test_render_without_reasons() -> None:
    out = text_of(render_explanation({"id": "d", "event_id": "e", "ts": 1_717_200_000_000, "kind": "login",
                                      "account_id": "a", "outcome": "pass", "level": 0, "score": 0,
                                      "reasons": [], "features": {}, "event": {}}))
    assert "no reason fired" in out and "pass" in out


def test_explain_command(tmp_path: Path) -> None:
    url, _ = stored_row(tmp_path)
    console = Console(record=True, width=200, file=io.StringIO())
    assert explain_command("evt-42", url=url, console=console) == 0
    assert "R_EMULATOR" in console.export_text()

    console = Console(record=True, width=200, file=io.StringIO())
    assert explain_command("dec-42", url=url, as_json=True, console=console) == 0
    data = json.loads(console.export_text())
    assert data["reasons"][0]["values"] == {"emulator": True}
    assert data["time"] == "2024-06-01T00:00:00.250+00:00"

    console = Console(record=True, width=200, file=io.StringIO())
    assert explain_command("missing-id", url=url, console=console) == 1
    assert "No decision found for 'missing-id'" in console.export_text()
    assert explain_command("evt-42", url=url, tenant="brand-b", console=console) == 1


def test_explain_gives_the_taxonomy_texts_of_compact_reasons(tmp_path: Path) -> None:
    """Reasons from the taxonomy are stored without their texts: explain shows them, in either language."""
    import msgspec
    from sqlalchemy import select

    from woolguard.reasons import CODES
    from woolguard.storage.schema import decisions

    emu, virt = CODES["device.emulator"], CODES["environment.phone.virtual"]
    reasons = [Reason(code=c.code, category=c.category.value, rule=rule, score=30, values={"v": 1},
                      text_en=c.en, text_zh=c.zh) for c, rule in ((emu, "R_EMULATOR"), (virt, "R_VIRTUAL"))]
    url = f"sqlite:///{tmp_path / 'wg.db'}"
    db = open_database(url)
    with DecisionLog(db, spill_dir=tmp_path) as dlog:
        dlog.append(EVENT, msgspec.structs.replace(DECISION, reasons=reasons))
    with db.connect() as conn:
        stored = conn.execute(select(decisions.c.reasons).where(decisions.c.id == "dec-42")).scalar()
    row = get_decision(db, "default", "evt-42")
    db.close()
    assert "text_en" not in json.dumps(stored) and "category" not in json.dumps(stored)
    for lang, texts in (("en", (emu.en, virt.en)), ("zh", (emu.zh, virt.zh))):
        out = text_of(render_explanation(row, lang=lang))
        assert all(t in out for t in texts), lang
    console = Console(record=True, width=200, file=io.StringIO())
    assert explain_command("evt-42", url=url, as_json=True, console=console) == 0
    data = json.loads(console.export_text())
    assert [(r["category"], r["text_en"], r["text_zh"]) for r in data["reasons"]] == [
        (c.category.value, c.en, c.zh) for c in (emu, virt)]
