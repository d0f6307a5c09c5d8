"""Counting a stream by truth: events, distinct accounts, claims and prize value at stake."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from woolguard.events import Event, EventKind


def tally(events: Iterable[Event]) -> dict[str, dict[str, float]]:
    """Per truth: ``events``, ``accounts``, ``claims`` (claim + scan) and ``value`` claimed (yuan)."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"events": 0, "accounts": 0, "claims": 0,
                                                            "value": 0.0})
    accounts: dict[str, set[str]] = defaultdict(set)
    payout = (EventKind.CLAIM, EventKind.SCAN)
    for ev in events:
        row = out[ev.truth or "genuine"]
        row["events"] += 1
        accounts[ev.truth or "genuine"].add(ev.account.id)
        if ev.kind in payout:
            row["claims"] += 1
            row["value"] += ev.value or 0.0
    for truth, ids in accounts.items():
        out[truth]["accounts"] = len(ids)
        out[truth]["value"] = round(out[truth]["value"], 2)
    return dict(out)
