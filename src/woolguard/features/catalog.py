"""The one place that defines each windowed feature.

A :class:`Window` names an operation over the events of one *key* (an entity such as the device, or a
pair such as campaign + device) within a sliding time window:

``count``       events of the key in the window (optionally only some kinds);
``distinct``    distinct values of a *member* entity seen with the key in the window;
``first_seen``  seconds since the key was first seen (0 on its first event), kept for ``window_s``;
``gaps``        regularity of the key's last inter-event gaps: the coefficient of variation × 100
                (scripts are too regular: a CV near 0), or -1 until three gaps are known.

Values are always ints: that keeps them cheap to hand to the CEL rules and identical across backends.
The current event is included in its own counts. Windows are measured on event time (``Event.ts``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from woolguard.events import PAYOUT_KINDS, EventKind


class WindowOp(enum.StrEnum):
    COUNT = "count"
    DISTINCT = "distinct"
    FIRST_SEEN = "first_seen"
    GAPS = "gaps"


#: Entities an event can be keyed by; see :func:`woolguard.engine.entities_of`.
ENTITIES = (
    "account", "device", "ip", "ip24", "phone", "phone_block", "fingerprint", "campaign",
    "code", "store", "inviter", "address", "payment", "geo", "gang_account", "gang_link",
)

MINUTE = 60
HOUR = 3600
DAY = 86400

#: Most entries one key keeps per window; a count saturates there (Jube-style fetch cap).
MAX_ENTRIES = 2048
#: How many recent timestamps ``gaps`` keeps per key.
GAP_HISTORY = 8


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    op: WindowOp
    key: tuple[str, ...]
    window_s: int
    member: str | None = None
    kinds: frozenset[EventKind] | None = None  # None: every kind updates the window
    description: str = ""

    def __post_init__(self) -> None:
        for entity in (*self.key, *([self.member] if self.member else [])):
            if entity not in ENTITIES:
                raise ValueError(f"window {self.name}: unknown entity {entity!r}")
        if (self.op is WindowOp.DISTINCT) != (self.member is not None):
            raise ValueError(f"window {self.name}: 'member' is required for distinct and only for it")
        if self.window_s <= 0:
            raise ValueError(f"window {self.name}: window_s must be positive")


PAYOUT = frozenset(PAYOUT_KINDS)
REGISTER = frozenset({EventKind.REGISTER})
INVITE_ACCEPT = frozenset({EventKind.ACCEPT_INVITE, EventKind.ASSIST})
SCAN = frozenset({EventKind.SCAN})


def _w(name: str, op: WindowOp, key: str, window_s: int, member: str | None = None,
       kinds: frozenset[EventKind] | None = None, description: str = "") -> Window:
    return Window(name, op, tuple(key.split("+")), window_s, member, kinds, description)


C, D, F, G = WindowOp.COUNT, WindowOp.DISTINCT, WindowOp.FIRST_SEEN, WindowOp.GAPS

DEFAULT_WINDOWS: tuple[Window, ...] = (
    # account
    _w("acct_payouts_1d", C, "account", DAY, kinds=PAYOUT, description="payout events of the account today"),
    _w("acct_devices_1d", D, "account", DAY, "device", description="devices the account used in a day"),
    _w("acct_ips_1h", D, "account", HOUR, "ip", description="IPs the account came from in an hour"),
    _w("acct_seen_s", F, "account", 90 * DAY, description="seconds since woolguard first saw the account"),
    _w("acct_registers_90d", C, "account", 90 * DAY, kinds=REGISTER,
       description="sign-ups of the account woolguard saw in 90 days (1: it registered in woolguard's sight)"),
    _w("acct_gap_cv", G, "account", DAY, description="regularity of the account's gaps (CV×100)"),
    # device
    _w("dev_payouts_10m", C, "device", 10 * MINUTE, kinds=PAYOUT, description="payouts from the device in 10 min"),
    _w("dev_payouts_1d", C, "device", DAY, kinds=PAYOUT, description="payouts from the device in a day"),
    _w("dev_accounts_1d", D, "device", DAY, "account", description="accounts on the device in a day"),
    _w("dev_accounts_7d", D, "device", 7 * DAY, "account", description="accounts on the device in 7 days"),
    _w("dev_ips_1h", D, "device", HOUR, "ip", description="IPs the device used in an hour"),
    _w("dev_seen_s", F, "device", 90 * DAY, description="seconds since the device was first seen"),
    _w("dev_gap_cv", G, "device", DAY, description="regularity of the device's gaps (CV×100)"),
    # network
    _w("ip_accounts_1h", D, "ip", HOUR, "account", description="accounts on the IP in an hour"),
    _w("ip_devices_1h", D, "ip", HOUR, "device", description="devices on the IP in an hour"),
    _w("ip_payouts_10m", C, "ip", 10 * MINUTE, kinds=PAYOUT, description="payouts from the IP in 10 min"),
    _w("ip24_accounts_1h", D, "ip24", HOUR, "account", description="accounts on the /24 in an hour"),
    _w("ip24_registers_1h", C, "ip24", HOUR, kinds=REGISTER, description="sign-ups from the /24 in an hour"),
    # phone
    _w("phone_accounts_30d", D, "phone", 30 * DAY, "account", description="accounts using the phone in 30 days"),
    _w("pblk_accounts_1d", D, "phone_block", DAY, "account",
       description="accounts whose phone is in the same block of 100 numbers, in a day"),
    # device-trait fingerprint (model + OS version + app version) and location concentration
    _w("fp_accounts_1m", D, "fingerprint", MINUTE, "account",
       description="accounts whose device reports the same model, OS version and app version, in a minute"),
    _w("camp_accounts_1m", D, "campaign", MINUTE, "account",
       description="accounts active in the campaign in a minute (the denominator of concentration rules)"),
    _w("camp_accounts_10m", D, "campaign", 10 * MINUTE, "account",
       description="accounts active in the campaign in 10 minutes"),
    _w("camp_gang_accounts_10m", D, "campaign", 10 * MINUTE, "gang_account",
       description="known gang members (gang_score >= 60 in the gang table in force) active in the campaign in "
                   "10 minutes: a crowd answering its leader's instruction arrives together"),
    _w("geo_accounts_1h", D, "geo", HOUR, "account",
       description="accounts reporting the same GPS point (4 decimals, about 10 m), in an hour"),
    # campaign-scoped
    _w("camp_acct_payouts", C, "campaign+account", 30 * DAY, kinds=PAYOUT,
       description="payouts of the account in this campaign"),
    # codes and invitations
    _w("code_scans", C, "code", 30 * DAY, kinds=SCAN, description="scans of this one-item-one-code code"),
    _w("inviter_invitees_1d", D, "inviter", DAY, "account", kinds=INVITE_ACCEPT,
       description="accounts that accepted the inviter's invitation or assisted, in a day"),
    # last, so that the Redis slots of the account's other windows keep their numbers
    _w("acct_gang_links_7d", D, "account", 7 * DAY, "gang_link", kinds=INVITE_ACCEPT,
       description="known gang members (gang_score >= 60 in the gang table in force) whose invitation the account "
                   "accepted or whom it assisted, in 7 days: a ring's leader recruits through its own invitation "
                   "links, before the hourly gang run knows the recruit"),
)


def catalogue_names(windows: tuple[Window, ...] = DEFAULT_WINDOWS) -> list[str]:
    names = [w.name for w in windows]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"duplicate feature names: {sorted(dupes)}")
    return names
