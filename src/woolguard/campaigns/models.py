"""A campaign's rules: window, budget and daily cap, prize tiers, limits, regions, guarding policy.

Rules are a msgspec document (JSON over the API, YAML/JSON files on the CLI), validated here with errors
that name the field. Money is integer fen; a tier's probability is kept as parts per million so that the
draw is integer arithmetic. A campaign's rules change only by saving a new version (``service.new_version``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Fen = Annotated[int, msgspec.Meta(ge=0, le=10**13)]
Count = Annotated[int, msgspec.Meta(ge=0, le=10**10)]
Limit = Annotated[int, msgspec.Meta(ge=0, le=10**9)] | None
EpochMs = Annotated[int, msgspec.Meta(ge=946_684_800_000, le=4_102_444_800_000)]
Ident = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
PPM = 1_000_000


class RulesError(ValueError):
    """Rules that do not hold together; ``field`` is the JSON path of the culprit."""

    def __init__(self, message: str, field: str = "$"):
        self.message = message
        self.field = field
        super().__init__(f"{message} (at {field})")


class PrizeTier(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """A prize (scan campaigns: a red packet) or a coupon type (coupon campaigns)."""

    id: Ident
    name: str = ""
    #: Value in fen: the red packet paid, or the coupon's face value.
    amount_fen: Fen
    #: How many of this tier the whole campaign may give.
    count: Count
    #: Chance that one scan wins this tier (0-1). Coupon claims name their tier and ignore it.
    probability: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    #: Coupons: the smallest order the coupon applies to, and how long it stays valid after the claim.
    min_order_fen: Fen = 0
    valid_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30

    @property
    def ppm(self) -> int:
        return round(self.probability * PPM)


class Limits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True, frozen=True):
    """Prizes (or coupons) per account / device / phone, per day and over the campaign; None: no limit."""

    account_day: Limit = None
    account_campaign: Limit = None
    device_day: Limit = None
    device_campaign: Limit = None
    phone_day: Limit = None
    phone_campaign: Limit = None

    def items(self) -> list[tuple[str, bool, int]]:
        """``(entity, per_day, limit)`` for each set limit, in the fixed order counters are locked in."""
        out = []
        for entity in ("account", "device", "phone"):
            for per_day in (True, False):
                value = getattr(self, f"{entity}_{'day' if per_day else 'campaign'}")
                if value is not None:
                    out.append((entity, per_day, value))
        return out


class Rules(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One version of a campaign's rules."""

    kind: Literal["scan", "coupon"] = "scan"
    name: str = ""
    start_ms: EpochMs
    end_ms: EpochMs
    #: The whole campaign's budget (fen): prizes paid, or coupon face values issued.
    budget_fen: Fen
    #: At most this much per calendar day (campaign time zone); None: no daily cap.
    daily_cap_fen: Fen | None = None
    tiers: Annotated[list[PrizeTier], msgspec.Meta(min_length=1, max_length=64)]
    limits: Limits = Limits()
    #: Regions (``geo.region`` or ``geo.city`` of the event) the campaign runs in; empty: everywhere.
    regions: list[str] = []
    #: The policy that guards the campaign (``policy_id`` or ``policy_id@version``), recorded with the rules.
    policy: str | None = None
    #: Seconds a user has to pass a step-up challenge before the held payout is refused.
    challenge_deadline_s: Annotated[int, msgspec.Meta(ge=10, le=7 * 86400)] = 600
    #: Offset of the campaign's calendar days from UTC (hours).
    tz_offset_hours: Annotated[int, msgspec.Meta(ge=-12, le=14)] = 8

    def tier(self, tier_id: str) -> PrizeTier | None:
        return next((t for t in self.tiers if t.id == tier_id), None)

    def day(self, ts_ms: int) -> int:
        """The campaign-calendar day of ``ts_ms`` as ``yyyymmdd``."""
        import datetime as dt

        d = dt.datetime.fromtimestamp(ts_ms / 1000 + self.tz_offset_hours * 3600, dt.UTC)
        return d.year * 10000 + d.month * 100 + d.day


def validate(rules: Rules) -> Rules:
    """Cross-field checks the types cannot say; raises :class:`RulesError` naming the field."""
    if rules.end_ms <= rules.start_ms:
        raise RulesError("end_ms must be after start_ms", "$.end_ms")
    seen = set()
    for i, t in enumerate(rules.tiers):
        if t.id in seen:
            raise RulesError(f"tier id {t.id!r} appears twice", f"$.tiers[{i}].id")
        seen.add(t.id)
    if rules.kind == "scan":
        total = sum(t.ppm for t in rules.tiers)
        if total > PPM:
            raise RulesError(f"tier probabilities add up to {total / PPM:.6f} > 1", "$.tiers")
    if rules.daily_cap_fen is not None and rules.daily_cap_fen > rules.budget_fen:
        raise RulesError("daily_cap_fen is larger than budget_fen", "$.daily_cap_fen")
    return rules


def parse_rules(obj: Any) -> Rules:
    """Rules from a decoded JSON/YAML object (dict) or JSON bytes, validated."""
    try:
        if isinstance(obj, bytes | str):
            rules = msgspec.json.decode(obj, type=Rules)
        else:
            rules = msgspec.convert(obj, Rules)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        text = str(exc)
        field = "$"
        if " - at `" in text:
            text, _, rest = text.partition(" - at `")
            field = rest.rstrip("`")
        raise RulesError(text, field) from None
    return validate(rules)


def rules_to_dict(rules: Rules) -> dict[str, Any]:
    return msgspec.to_builtins(rules)
