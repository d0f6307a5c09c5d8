"""The challenge model: would the actor behind an event pass a step-up challenge or an analyst's review?

Decided from a hash of the event id and the challenge kind, against a pass-rate table per truth, so a live
demo run and a replay of the recorded file give identical outcomes, and two challenges of one event are
independent draws.
"""

from __future__ import annotations

import hashlib

from woolguard.events import Event

#: Pass rates per truth and challenge kind ("review" = an analyst approves the event).
PASS_RATES: dict[str, dict[str, float]] = {
    # Real people: a few give up on each step, more on face checks and on sending an SMS themselves.
    "genuine": {"captcha": 0.93, "sms": 0.92, "upsms": 0.86, "face": 0.85, "review": 0.97},
    # Emulator scripts buy captcha solving (打码) and rent SMS-receiving numbers; they cannot send an
    # SMS from a rented number nor show a live face, and an analyst sees through them.
    "scripts": {"captcha": 0.55, "sms": 0.85, "upsms": 0.08, "face": 0.02, "review": 0.0},
    # Group-controlled real phones hold the SIMs (modem pools can send too), but rarely a live face.
    "phone_farm": {"captcha": 0.60, "sms": 0.97, "upsms": 0.55, "face": 0.05, "review": 0.02},
    # Tampered phones behind SMS platforms: fair at captchas, poor at up-link SMS and faces.
    "device_farm": {"captcha": 0.50, "sms": 0.90, "upsms": 0.20, "face": 0.03, "review": 0.01},
    # Paid people on their own phones pass everything; analysts approve half, unable to tell one by one.
    "paid_crowd": {"captcha": 0.97, "sms": 0.97, "upsms": 0.96, "face": 0.97, "review": 0.50},
    # Any other truth found in a recorded file: an unknown gang, moderately equipped.
    "other": {"captcha": 0.60, "sms": 0.85, "upsms": 0.35, "face": 0.08, "review": 0.05},
}
CHALLENGE_KINDS = ("captcha", "sms", "upsms", "face", "review")


def pass_rate(truth: str | None, kind: str) -> float:
    """The table's rate: a missing truth is genuine, an unknown one the "other" row."""
    if kind not in CHALLENGE_KINDS:
        raise ValueError(f"unknown challenge kind {kind!r}: expected one of {', '.join(CHALLENGE_KINDS)}")
    row = PASS_RATES.get(truth or "genuine", PASS_RATES["other"])
    return row[kind]


def challenge_passed(event: Event, kind: str) -> bool:
    """Whether the actor behind ``event`` passes challenge ``kind`` (captcha/sms/upsms/face/review)."""
    rate = pass_rate(event.truth, str(kind))
    digest = hashlib.blake2b(f"{event.event_id}\x1f{kind}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate
