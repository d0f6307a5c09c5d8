"""Recorded streams: one JSON event per line, optionally after a ``{"campaign": {...}}`` header line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from woolguard.events import Event, EventError, decode_event

_encoder = msgspec.json.Encoder()


def write_jsonl(events: Iterable[Event], path: str | Path, campaign: dict | None = None) -> int:
    """Write ``events`` to ``path`` (one JSON object per line); return the number of events written.

    With ``campaign``, the first line is ``{"campaign": {...}}``. Each event line is the body
    ``POST /v1/events`` accepts, plus its ``truth`` label.
    """
    n = 0
    buf = bytearray()
    with open(path, "wb") as f:
        if campaign is not None:
            f.write(_encoder.encode({"campaign": campaign}) + b"\n")
        for ev in events:
            _encoder.encode_into(ev, buf, -1)
            buf += b"\n"
            n += 1
            if len(buf) > 1 << 20:
                f.write(buf)
                buf.clear()
        f.write(buf)
    return n


def read_jsonl(path: str | Path) -> tuple[dict | None, Iterator[Event]]:
    """Open a recorded stream: its campaign header (or None) and a lazy iterator of its events.

    A bad line raises :class:`woolguard.events.EventError` naming the line number (1-based) and the field.
    """
    path = Path(path)
    campaign = None
    first_event_line = 1
    with open(path, "rb") as f:
        first = f.readline()
    stripped = first.strip()
    if stripped.startswith(b'{"campaign"'):
        try:
            head = msgspec.json.decode(stripped)
        except msgspec.DecodeError as exc:
            raise EventError(str(exc), "$", 1) from None
        if isinstance(head, dict) and set(head) == {"campaign"} and isinstance(head["campaign"], dict):
            campaign = head["campaign"]
            first_event_line = 2
    return campaign, _events(path, first_event_line)


def _events(path: Path, start: int) -> Iterator[Event]:
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if n < start or not line.strip():
                continue
            yield decode_event(line, line=n)
