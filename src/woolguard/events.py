"""The vocabulary of woolguard: events, their entities, and decisions.

An :class:`Event` is what a brand's backend sends for each user action (the HTTP body of
``POST /v1/events``, one line of a recorded ``.jsonl`` stream). A :class:`Decision` is what comes back.
Both are msgspec structs: decoding and validating an event costs well under a microsecond, and errors
name the field (``Expected `int`, got `str` - at `$.account.tier```).

Phone numbers are never kept in clear: :meth:`woolguard.engine.Engine.normalise` turns a clear
``phone`` into a keyed hash, the operator prefix and a keyed hash of its number block, and drops the
number before the event reaches the engine, the log or any file.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import msgspec

# ---------------------------------------------------------------------------------------------------
# Event kinds


class EventKind(enum.StrEnum):
    REGISTER = "register"
    LOGIN = "login"
    SIGN_IN = "sign_in"  # daily check-in (签到)
    CLAIM = "claim"  # claim a coupon or a red packet
    SCAN = "scan"  # scan a one-item-one-code prize code
    REDEEM = "redeem"  # use a coupon at checkout (核销)
    ORDER = "order"
    INVITE = "invite"
    ACCEPT_INVITE = "accept_invite"
    ASSIST = "assist"  # 助力: help a friend's campaign progress
    TASK = "task"  # complete a campaign task
    CHECKOUT = "checkout"  # Scan & Go payment
    EXIT = "exit"  # Scan & Go exit verification


#: Kinds that pay out money or prizes: the ones a campaign's budget is spent on.
PAYOUT_KINDS = frozenset({EventKind.CLAIM, EventKind.SCAN, EventKind.REDEEM, EventKind.ASSIST,
                          EventKind.ACCEPT_INVITE, EventKind.TASK})

# ---------------------------------------------------------------------------------------------------
# Constrained scalar types

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ShortText = Annotated[str, msgspec.Meta(max_length=128)]
LongText = Annotated[str, msgspec.Meta(max_length=1024)]
# Epoch milliseconds between 2000-01-01 and 2100-01-01: anything else is a unit mistake.
EpochMs = Annotated[int, msgspec.Meta(ge=946_684_800_000, le=4_102_444_800_000)]
Money = Annotated[float, msgspec.Meta(ge=0, le=1e9)]
Tier = Annotated[int, msgspec.Meta(ge=0, le=4)]


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """Event parts. ``gc=False``: a struct of this tree never holds a reference back to itself, so the cyclic
    garbage collector need not track it (reference counting frees it); a service worker keeps thousands of them
    in its decision-log buffer between flushes, and tracked they made every collection longer."""


class Account(_Strict):
    """The brand's account (user id, openid, member number...)."""

    id: Id
    #: 0 unknown / new, 1 registered, 2 active, 3 member, 4 VIP. Policies loosen thresholds by tier.
    tier: Tier = 0
    #: When the brand created the account (epoch ms), if it knows.
    created_at: EpochMs | None = None


class Device(_Strict):
    """The device as the client SDK reports it. Every flag is the SDK's own finding."""

    id: Id | None = None
    model: ShortText | None = None
    os: ShortText | None = None  # "android", "ios", "harmonyos"
    os_version: ShortText | None = None
    app_version: ShortText | None = None
    emulator: bool = False
    rooted: bool = False  # rooted or jailbroken
    hooked: bool = False  # hook frameworks (Xposed, Frida, ...)
    multi_open: bool = False  # app cloned / parallel space
    cloud_phone: bool = False
    vpn: bool = False
    #: Device-tampering (改机) tool found, or traits that contradict each other.
    tampered: bool = False


class Geo(_Strict):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None
    city: ShortText | None = None
    region: ShortText | None = None
    country: Annotated[str, msgspec.Meta(max_length=2)] | None = None


class Event(_Strict):
    """One user action. See ``docs/events.md`` for each field."""

    event_id: Id
    kind: EventKind
    ts: EpochMs
    account: Account
    campaign_id: Id | None = None
    #: A clear phone number (E.164 or an 11-digit mainland number). Replaced at ingest by the fields below.
    phone: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    #: A hash of the phone computed by the caller (any stable hash; woolguard re-keys it).
    phone_hash: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    #: The number's first digits (up to 7), enough to know the operator segment.
    phone_prefix: Annotated[str, msgspec.Meta(pattern=r"^\+?[0-9]{1,8}$")] | None = None
    #: A keyed hash of the number without its last two digits (its block of 100), set at ingest.
    phone_block: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    device: Device | None = None
    ip: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    user_agent: LongText | None = None
    geo: Geo | None = None
    #: Value of the prize, coupon or red packet at stake (yuan).
    value: Money | None = None
    #: Order amount (yuan), for order / redeem / checkout.
    amount: Money | None = None
    code_id: Id | None = None
    store_id: Id | None = None
    #: Account id of the inviter, for invite acceptance and assists.
    inviter: Id | None = None
    #: Caller-hashed delivery address, if any.
    address_hash: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    #: Payment account (hashed by the caller), if any.
    payment_hash: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    #: Label in simulated or recorded traffic ("genuine" or an archetype). The engine never reads it.
    truth: ShortText | None = None


# ---------------------------------------------------------------------------------------------------
# Decisions


class Outcome(enum.StrEnum):
    PASS = "pass"
    VERIFY = "verify"
    REVIEW = "review"
    REJECT = "reject"


OUTCOME_ORDER = {Outcome.PASS: 0, Outcome.VERIFY: 1, Outcome.REVIEW: 2, Outcome.REJECT: 3}


class Challenge(enum.StrEnum):
    """Step-up challenges, weakest first. ``verify`` names one of them."""

    CAPTCHA = "captcha"
    SMS = "sms"  # down-link SMS code
    UPSMS = "upsms"  # the user sends an SMS from the phone
    FACE = "face"  # liveness / face check


CHALLENGE_ORDER = {Challenge.CAPTCHA: 0, Challenge.SMS: 1, Challenge.UPSMS: 2, Challenge.FACE: 3}


class Category(enum.StrEnum):
    ACCOUNT = "account"
    BEHAVIOUR = "behaviour"
    ENVIRONMENT = "environment"
    DEVICE = "device"
    GANG = "gang"
    LIST = "list"
    MODEL = "model"
    ENGINE = "engine"


class Reason(msgspec.Struct, omit_defaults=True, gc=False):
    """One thing that fired: a rule, a list entry, the model or gang membership."""

    code: str  # from the taxonomy in woolguard.reasons, e.g. "device.emulator"
    category: str
    rule: str  # rule id, "list:<id>", "model", ...
    score: int = 0
    level: int = 0  # a minimum level this reason forces (0 = none)
    values: dict[str, Any] = {}
    text_en: str = ""
    text_zh: str = ""
    #: A shadow rule: evaluated and logged, never acted on.
    shadow: bool = False


class Decision(msgspec.Struct, omit_defaults=True, gc=False):
    decision_id: str
    event_id: str
    level: int  # 0 (none) .. 4 (high)
    outcome: Outcome
    score: int
    reasons: list[Reason]
    challenge: Challenge | None = None
    policy: str = ""  # policy id@version
    #: Set when a dependency failed and the policy's failure mode decided instead.
    degraded: str | None = None
    features: dict[str, Any] = {}
    #: What to tell the shopper when the outcome is not ``pass`` ({"en": ..., "zh": ...}); it names the
    #: decision id for customer service and nothing a ring could learn from.
    message: dict[str, str] = {}


# ---------------------------------------------------------------------------------------------------
# Decoding helpers

_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


class EventError(ValueError):
    """An event that does not fit the format; ``field`` is its JSON path (``$.account.id``)."""

    def __init__(self, message: str, field: str = "$", line: int | None = None):
        self.message = message
        self.field = field
        self.line = line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{message} (at {field})")


def validation_error(exc: msgspec.ValidationError | msgspec.DecodeError, line: int | None = None) -> EventError:
    """An :class:`EventError` naming the field, from msgspec's error."""
    text = str(exc)
    field = "$"
    if " - at `" in text:
        text, _, rest = text.partition(" - at `")
        field = rest.rstrip("`")
    return EventError(text, field, line)


def decode_event(data: bytes | str, line: int | None = None) -> Event:
    """Decode one JSON event, raising :class:`EventError` that names the field."""
    try:
        return _decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise validation_error(exc, line) from None


def event_from_dict(obj: dict[str, Any], line: int | None = None) -> Event:
    try:
        return msgspec.convert(obj, Event)
    except msgspec.ValidationError as exc:
        raise validation_error(exc, line) from None


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of :class:`Event`, for the OpenAPI document and the docs."""
    return msgspec.json.schema(Event)
