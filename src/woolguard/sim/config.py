"""What a simulated campaign looks like: its calendar, its populations and the shared generation state."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from random import Random

from woolguard.sim.world import PRIZE_MEAN, PRIZE_TIERS, mix64, scramble48

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000
#: Asia/Shanghai has no daylight saving: local time is UTC+8 all year.
LOCAL_OFFSET_MS = 8 * HOUR_MS

#: Names of the wool-party archetypes, as written in ``Event.truth``.
ARCHETYPES = ("scripts", "phone_farm", "device_farm", "paid_crowd")
GENUINE = "genuine"


@dataclass(frozen=True)
class SimConfig:
    """A simulated campaign. The defaults are the demo: about 200k events over three days.

    Populations are counts at ``scale=1``; ``scale`` multiplies every one of them (gangs by adding rings
    of the same size, so that a ring keeps looking like a ring).
    """

    seed: int = 7
    scale: float = 1.0
    days: int = 3
    #: 2026-11-11 10:00 Asia/Shanghai.
    start_ms: int = 1_794_362_400_000
    campaign_id: str = "cny-redpacket"
    kind: str = "scan_to_win"
    #: The campaign's per-account limit of claims per day (gangs sometimes try beyond it).
    claims_per_day: int = 3
    #: Genuine people who visit at least once.
    genuine_users: int = 27_000
    #: Share of genuine visitors who register a new account for the campaign.
    new_user_share: float = 0.25
    #: Chance that a genuine visitor comes back one day later, and two days later.
    return_next_day: float = 0.36
    return_two_days: float = 0.22
    scripts_accounts: int = 1_100
    scripts_rings: int = 10
    phone_farm_accounts: int = 1_200
    phone_farm_rings: int = 8
    device_farm_accounts: int = 900
    device_farm_rings: int = 8
    paid_crowd_accounts: int = 800
    paid_crowd_rings: int = 12

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS


def campaign_info(cfg: SimConfig) -> dict:
    """The campaign the simulated traffic belongs to, as the campaigns module would register it."""
    return {
        "campaign_id": cfg.campaign_id,
        "start_ms": cfg.start_ms,
        "end_ms": cfg.end_ms,
        "kind": cfg.kind,
        "prize_value": round(PRIZE_MEAN, 4),
        "prize_tiers": [{"value": v, "p": p} for v, p in PRIZE_TIERS],
        "claims_per_day": cfg.claims_per_day,
        "timezone": "Asia/Shanghai",
        #: The population scale: the payout campaigns' budgets and counts follow it (sim.payouts).
        "scale": cfg.scale,
    }


class Ctx:
    """Generation state shared by every actor of one run: the random stream, counters, recent inviters.

    Actors draw from one ``random.Random`` in the order the scheduler runs them, so a seed fixes the
    whole stream. Nothing in here grows with the number of events.
    """

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.seed = cfg.seed
        self.rng = Random(mix64(cfg.seed, 0x5EED))
        self.start = cfg.start_ms
        self.end = cfg.end_ms
        self.cid = cfg.campaign_id
        self.limit = cfg.claims_per_day
        self._codes = 0
        self._code_salt = mix64(cfg.seed, 0xC0DE)
        #: Genuine accounts that recently sent invitations (friends accept or assist them).
        self.inviters: deque[str] = deque(maxlen=300)

    def code(self, batch: int) -> str:
        """A fresh one-item-one-code from ``batch``: unique in the run, unguessable-looking."""
        self._codes += 1
        return f"QR{batch:04d}{scramble48(self._code_salt + self._codes):012X}"

    def think(self, median_ms: float, sigma: float = 0.9, cap_ms: float = 600_000) -> int:
        """A human pause: lognormal around ``median_ms``."""
        r = self.rng.random
        z = (r() + r() + r() - 1.5) * 2.0  # close to a standard normal, and cheap
        return int(min(cap_ms, 400 + median_ms * math.exp(sigma * z)))


def local_hour(ts: int) -> float:
    return ((ts + LOCAL_OFFSET_MS) % DAY_MS) / HOUR_MS


def scaled(n: int, scale: float) -> int:
    return max(0, round(n * scale))
