"""Explaining one decision to a person: the event, the outcome, every reason with its values, the features.

:func:`render_explanation` turns a decision-log row (as :func:`~woolguard.storage.decision_log.get_decision`
returns it) into a rich renderable, in English or Chinese; :func:`explain_command` backs
``woolguard explain EVENT_ID``.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

_WORDS = {
    "en": {"event": "Event", "kind": "kind", "time": "time", "account": "account", "device": "device",
           "ip": "IP", "campaign": "campaign", "decision": "Decision", "outcome": "outcome", "level": "level",
           "score": "score", "challenge": "challenge", "policy": "policy", "degraded": "degraded",
           "reasons": "Reasons", "code": "code", "rule": "rule", "values": "values", "text": "explanation",
           "features": "Features", "feature": "feature", "value": "value", "none": "no reason fired",
           "truth": "truth (simulation)", "not_found": "No decision found for {id!r} (tenant {tenant!r})."},
    "zh": {"event": "事件", "kind": "类型", "time": "时间", "account": "账号", "device": "设备",
           "ip": "IP", "campaign": "活动", "decision": "决策", "outcome": "结果", "level": "风险等级",
           "score": "分数", "challenge": "验证方式", "policy": "策略", "degraded": "降级",
           "reasons": "原因", "code": "代码", "rule": "规则", "values": "触发值", "text": "说明",
           "features": "特征", "feature": "特征", "value": "值", "none": "没有触发任何规则",
           "truth": "真实标签（模拟）", "not_found": "未找到 {id!r} 的决策（租户 {tenant!r}）。"},
}
_OUTCOME_STYLE = {"pass": "green", "verify": "yellow", "review": "magenta", "reject": "bold red"}


def _zone(tz: tzinfo | str | None) -> tzinfo:
    if tz is None:
        return UTC
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def format_ts(ts: int | None, tz: tzinfo | str | None = None) -> str:
    """Epoch ms as ISO 8601 with its UTC offset: ``2024-05-01T12:00:00.250+08:00``."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts / 1000, tz=_zone(tz)).isoformat(timespec="milliseconds")


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _loaded(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def render_explanation(row: dict[str, Any], lang: str = "en",
                       tz: tzinfo | str | None = None) -> RenderableType:
    """The event, the decision, each reason (code, rule, score, values, text) and the features."""
    if lang not in _WORDS:
        raise ValueError(f"language {lang!r} is not one of {', '.join(_WORDS)}")
    w = _WORDS[lang]
    event = _loaded(row.get("event")) or {}
    reasons = _loaded(row.get("reasons")) or []
    features = _loaded(row.get("features")) or {}

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row(w["kind"], _show(row.get("kind")))
    head.add_row(w["time"], format_ts(row.get("ts"), tz))
    head.add_row(w["account"], _show(row.get("account_id")))
    head.add_row(w["device"], _show(row.get("device_id")))
    head.add_row(w["ip"], _show(row.get("ip")))
    head.add_row(w["campaign"], _show(row.get("campaign_id")))
    for key in ("value", "amount", "code_id", "store_id", "inviter", "phone_prefix"):
        if event.get(key) is not None:
            head.add_row(key, _show(event[key]))
    if row.get("truth"):
        head.add_row(w["truth"], _show(row["truth"]))

    outcome = str(row.get("outcome") or "-")
    decision = Table.grid(padding=(0, 2))
    decision.add_column(style="bold")
    decision.add_column()
    decision.add_row(w["outcome"], Text(outcome, style=_OUTCOME_STYLE.get(outcome, "")))
    decision.add_row(w["level"], _show(row.get("level")))
    decision.add_row(w["score"], _show(row.get("score")))
    decision.add_row(w["challenge"], _show(row.get("challenge")))
    decision.add_row(w["policy"], _show(row.get("policy") or None))
    if row.get("degraded"):
        decision.add_row(w["degraded"], Text(str(row["degraded"]), style="yellow"))

    reason_table = Table(title=w["reasons"], title_justify="left", expand=True, show_lines=True)
    for column in ("code", "rule", "score", "values", "text"):
        reason_table.add_column(w[column], overflow="fold", justify="right" if column == "score" else "left")
    for reason in reasons:
        text = reason.get(f"text_{lang}") or reason.get("text_en") or reason.get("text_zh") or ""
        values = reason.get("values") or {}
        shown = "\n".join(f"{k} = {_show(v)}" for k, v in values.items()) or "-"
        reason_table.add_row(reason.get("code", "?"), reason.get("rule", "?"), _show(reason.get("score", 0)),
                             shown, text)
    if not reasons:
        reason_table.add_row(w["none"], "", "", "", "")

    feature_table = Table(title=w["features"], title_justify="left")
    feature_table.add_column(w["feature"])
    feature_table.add_column(w["value"], justify="right", overflow="fold")
    for name in sorted(features):
        feature_table.add_row(name, _show(features[name]))

    title = f"{w['event']} {row.get('event_id', '?')} · {w['decision']} {row.get('id', '?')}"
    return Group(Panel(Group(head, Text(""), decision), title=title, title_align="left"),
                 reason_table, feature_table)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: _loaded(v) if k in ("event", "reasons", "features") else v for k, v in row.items()}
    out["time"] = format_ts(row.get("ts"))
    return out


def explain_command(event_id: str, url: str | None = None, tenant: str = "default", lang: str = "en",
                    as_json: bool = False, console: Console | None = None) -> int:
    """Print the explanation of one decision (by event id or decision id); 0 if found, 1 if not."""
    from woolguard.storage.database import open_database
    from woolguard.storage.decision_log import get_decision

    errors = console or Console(stderr=True)
    console = console or Console()
    db = open_database(url)
    try:
        row = get_decision(db, tenant, event_id)
    finally:
        db.close()
    if row is None:
        message = _WORDS.get(lang, _WORDS["en"])["not_found"].format(id=event_id, tenant=tenant)
        if as_json:
            console.print_json(orjson.dumps({"error": "not_found", "id": event_id, "tenant": tenant,
                                             "message": message}).decode())
        else:
            errors.print(message, style="red")
        return 1
    if as_json:
        console.print_json(orjson.dumps(_jsonable(row), default=str).decode())
    else:
        console.print(render_explanation(row, lang))
    return 0
