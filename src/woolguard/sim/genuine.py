"""Genuine shoppers: when they come (daily curve, opening rush, returns) and what a visit looks like.

Arrivals are generated one minute-slot at a time from a per-slot seeded generator, so a slot can be
generated again: a visitor coming back a day later is found by regenerating the slot of their first visit
(same identity, same account, same ``created_at``) instead of being remembered. Memory stays constant.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Iterator
from random import Random

from woolguard.events import Account, Device, Event, EventKind, Geo
from woolguard.sim.config import DAY_MS, GENUINE, MIN_MS, Ctx, local_hour
from woolguard.sim.world import (
    ANDROID_MODELS,
    APP_VERSIONS,
    CITIES,
    CITY_PICKER,
    CORPORATE_EXITS,
    EMULATOR_MODELS,
    GEO_BY_CITY,
    MODEL_PICKER,
    N_BATCHES,
    NEW_USER_TIERS,
    PRIZE_PICKER,
    VENUES_PER_CITY,
    account_id,
    broadband_ip,
    ip_str,
    mix64,
    model_device,
    nat_ip,
    ordinary_number,
    unit,
    user_agent,
    venue_ip,
    virtual_number,
)

REGISTER, LOGIN, SIGN_IN, CLAIM, SCAN = (EventKind.REGISTER, EventKind.LOGIN, EventKind.SIGN_IN,
                                         EventKind.CLAIM, EventKind.SCAN)
REDEEM, ORDER, INVITE, ACCEPT, ASSIST, TASK = (EventKind.REDEEM, EventKind.ORDER, EventKind.INVITE,
                                               EventKind.ACCEPT_INVITE, EventKind.ASSIST, EventKind.TASK)

#: Relative activity by local hour (0..23): quiet at night, peaks at lunch and in the evening.
HOURLY = [0.30, 0.14, 0.07, 0.05, 0.05, 0.08, 0.22, 0.50, 0.80, 0.90, 1.00, 1.15, 1.45, 1.25, 0.95, 0.85,
          0.85, 0.95, 1.10, 1.35, 1.60, 1.70, 1.30, 0.70]
#: New visitors per day relative to the first (the campaign's novelty wears off).
DAY_DECAY = [1.0, 0.55, 0.42, 0.35, 0.3, 0.28, 0.26]
SLOT = MIN_MS
SLOTS_PER_DAY = DAY_MS // SLOT
#: Return visits come back at about the same time of day, within this many slots either side.
LOOKAHEAD = 110

SPACE_GENUINE = 1
#: Households whose members share one phone (family devices).
HOUSEHOLD_SHARE = 0.035


def hourly(h: float) -> float:
    i = int(h)
    f = h - i
    return HOURLY[i % 24] * (1 - f) + HOURLY[(i + 1) % 24] * f


def first_visit_rates(ctx: Ctx) -> array:
    """Expected first visits in each minute slot of the campaign."""
    cfg = ctx.cfg
    n = cfg.days * SLOTS_PER_DAY
    w = array("d")
    for s in range(n):
        t = s * SLOT
        day = t // DAY_MS
        x = hourly(local_hour(ctx.start + t)) * DAY_DECAY[min(day, len(DAY_DECAY) - 1)]
        if day == 0:  # the opening rush: push notifications, the launch post, people waiting for it
            x += 20.0 * math.exp(-t / (12 * MIN_MS)) + 3.0 * math.exp(-t / (150 * MIN_MS))
        else:  # smaller daily rushes when the day's red packets refresh at the opening time of day
            x += 3.0 * math.exp(-(t - day * DAY_MS) / (15 * MIN_MS))
        w.append(x)
    total = sum(w)
    users = cfg.genuine_users * cfg.scale
    return array("d", (users * x / total for x in w))


def _poisson(r: Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(r.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, r.random()
    while p > limit:
        k += 1
        p *= r.random()
    return k


class Arrivals:
    """The genuine arrival process: first visits slot by slot, plus regenerated return visits."""

    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self.rates = first_visit_rates(ctx)
        self.n_slots = len(self.rates)
        households = max(1, int(ctx.cfg.genuine_users * ctx.cfg.scale * HOUSEHOLD_SHARE / 2.6))
        self.households = households

    def slot(self, s: int) -> list[tuple[int, int]]:
        """First visits in slot ``s``: (ts, k), k being the visitor's number within the slot."""
        r = Random(mix64(self.ctx.seed, 0x5107, s))
        n = _poisson(r, self.rates[s])
        base = self.ctx.start + s * SLOT
        return [(base + int(r.random() * SLOT), k) for k in range(n)]

    def __iter__(self) -> Iterator[tuple[int, Iterator[Event]]]:
        ctx, cfg = self.ctx, self.ctx.cfg
        pending: list[tuple[int, int, int, int, int]] = []  # (ts, seq, s0, k, ts0)
        seq = 0
        lags = ((1, cfg.return_next_day), (2, cfg.return_two_days))
        for s in range(self.n_slots):
            for lag, p in lags:
                s0 = s + LOOKAHEAD - lag * SLOTS_PER_DAY
                if s0 < 0 or s + LOOKAHEAD >= self.n_slots:
                    continue
                for ts0, k in self.slot(s0):
                    h = mix64(ctx.seed, 0x2E7, s0, k, lag)
                    if unit(h) >= p:
                        continue
                    jitter = (unit(h * 3 + 1) + unit(h * 5 + 2) + unit(h * 7 + 3) - 1.5) * 70 * MIN_MS
                    ts = ts0 + lag * DAY_MS + int(jitter)
                    heapq.heappush(pending, (ts, seq, s0, k, ts0))
                    seq += 1
            for ts, k in self.slot(s):
                heapq.heappush(pending, (ts, seq, s, k, -1))
                seq += 1
            slot_end = ctx.start + (s + 1) * SLOT
            while pending and pending[0][0] < slot_end:
                ts, _, s0, k, ts0 = heapq.heappop(pending)
                if ts >= ctx.start:
                    yield ts, visit(ctx, self, ts, s0, k, ts0)


class Person:
    """A genuine shopper's stable identity, rebuilt from (slot, k) on every visit."""

    __slots__ = ("account", "acct_id", "carrier", "city", "claims", "device", "geo", "home_ip", "invites",
                 "location", "mobile_share", "old_account", "phone", "scans", "shop", "vpn", "wifi_venue")

    def __init__(self, ctx: Ctx, arrivals: Arrivals, s0: int, k: int):
        r = Random(mix64(ctx.seed, 0x1D, s0, k))
        self.acct_id = account_id(SPACE_GENUINE, s0 << 14 | k)
        city = self.city = CITY_PICKER.pick(r.random())
        hh = r.random() < HOUSEHOLD_SHARE
        if hh:  # a family phone: device and home broadband shared with the other members
            hkey = mix64(ctx.seed, 0x4005E, r.randrange(arrivals.households))
            city = self.city = CITY_PICKER.pick(unit(hkey))
            dkey = hkey
            dr = Random(dkey)
        else:
            dkey = r.getrandbits(64)
            dr = r
        self.home_ip = ip_str(broadband_ip(city, dkey >> 3))
        app = APP_VERSIONS.pick(dr.random())
        if dr.random() < 0.002:  # plays the game on a PC emulator, genuinely
            model, ver = EMULATOR_MODELS[dr.randrange(len(EMULATOR_MODELS))]
            dev = Device(id=format(dkey, "016x"), model=model, os="android", os_version=ver, app_version=app,
                         emulator=True)
        else:
            mi = MODEL_PICKER.pick(dr.random())
            dev = model_device(mi, dkey, dr.random(), app)
            if mi in ANDROID_MODELS_SET:
                u = dr.random()
                if u < 0.03:  # rooted by its owner (custom ROMs, ad blockers, game mods)
                    dev.rooted = True
                    dev.hooked = u < 0.007
            dev.multi_open = dr.random() < 0.02 or (hh and dr.random() < 0.3)
        self.vpn = r.random() < 0.016
        dev.vpn = self.vpn
        self.device = dev
        u = r.random()
        if u < 0.04:
            self.phone, self.carrier = virtual_number(r.getrandbits(64))
        elif u < 0.045:
            self.phone, self.carrier = virtual_number(r.getrandbits(64), iot=True)
        else:
            self.phone, self.carrier = ordinary_number(r.getrandbits(64))
        self.old_account = r.random() >= ctx.cfg.new_user_share
        if self.old_account:
            tier = (1, 1, 2, 2, 2, 3, 3, 4)[r.randrange(8)]
            age_days = min(3000.0, 20 + 280 * math.exp(0.9 * r.gauss(0, 1)))
            self.account = Account(id=self.acct_id, tier=tier, created_at=ctx.start - int(age_days * DAY_MS))
        else:
            self.account = None
        self.location = r.random() < 0.6
        self.geo = None
        if self.location:
            c = CITIES[city]
            self.geo = Geo(lat=round(c[2] + r.gauss(0, 0.06), 4), lon=round(c[3] + r.gauss(0, 0.06), 4),
                           city=c[0], region=c[1], country="CN")
        self.mobile_share = 0.2 + 0.6 * r.random()
        self.wifi_venue = r.randrange(VENUES_PER_CITY) if r.random() < 0.3 else -1
        self.claims = 1.2 + 1.3 * r.random()
        self.scans = 0.15 + 1.2 * r.random() ** 2
        self.invites = 0.25 * r.random() ** 2
        self.shop = 0.05 + 0.25 * r.random()


ANDROID_MODELS_SET = frozenset(ANDROID_MODELS)


def visit(ctx: Ctx, arrivals: Arrivals, ts: int, s0: int, k: int, ts0: int) -> Iterator[Event]:
    """One visit of a genuine shopper: an actor yielding its events in time order."""
    p = Person(ctx, arrivals, s0, k)
    rng = ctx.rng
    rand = rng.random
    think = ctx.think
    cid = ctx.cid
    dev = p.device
    first = ts0 < 0
    if p.account is not None:  # an old account
        account = p.account
        new_account = False
    elif first:
        account = Account(id=p.acct_id, tier=0, created_at=ts)
        new_account = True
    else:
        account = Account(id=p.acct_id, tier=1, created_at=ts0)
        new_account = False
    # Network for this visit
    hour = local_hour(ts)
    u = rand()
    if p.vpn and u < 0.7:
        ip = ip_str(CORPORATE_EXITS[mix64(s0, k) % len(CORPORATE_EXITS)])
        net = "WIFI"
    elif p.wifi_venue >= 0 and 9 <= hour < 22 and u < 0.45:
        ip = ip_str(venue_ip(p.city, p.wifi_venue))
        net = "WIFI"
    elif u < p.mobile_share:
        ip = ip_str(nat_ip(p.city, p.carrier, rand()))
        net = "5G" if rand() < 0.55 else "4G"
    elif u < p.mobile_share + 0.08 and 9 <= hour < 19:  # a public Wi-Fi somewhere in town
        ip = ip_str(venue_ip(p.city, rng.randrange(VENUES_PER_CITY)))
        net = "WIFI"
    else:
        ip = p.home_ip
        net = "WIFI"
    ua = user_agent(dev.model, dev.os, dev.os_version, net, int(dev.id, 16))
    geo = p.geo if p.location else (GEO_BY_CITY[p.city] if rand() < 0.1 else None)
    phone = p.phone
    t = ts

    def ev(kind, t, **kw):
        return Event(event_id="", kind=kind, ts=t, account=account, campaign_id=cid, phone=phone, device=dev,
                     ip=ip, user_agent=ua, geo=geo, truth=GENUINE, **kw)

    if new_account:
        yield ev(REGISTER, t)
        if ctx.inviters and rand() < 0.2:  # came through a friend's invitation
            t += think(9_000)
            yield ev(ACCEPT, t, inviter=ctx.inviters[rng.randrange(len(ctx.inviters))], value=1.0)
            # (a brand-new account cannot have invited anyone yet, so the friend is someone else)
    else:
        yield ev(LOGIN, t)
    t += think(6_000)
    if rand() < 0.3:
        yield ev(SIGN_IN, t, value=0.1)
        t += think(4_000)
    n_claims = min(ctx.limit, max(1, int(p.claims + rand())))
    n_scans = int(p.scans + rand()) if rand() < 0.6 else 0
    for i in range(n_claims):
        value = NEW_USER_TIERS.pick(rand()) if (new_account and i == 0) else PRIZE_PICKER.pick(rand())
        yield ev(CLAIM, t, value=value)
        t += think(11_000 if i else 7_000)
        if n_scans > 0 and rand() < 0.5:
            n_scans -= 1
            yield ev(SCAN, t, value=PRIZE_PICKER.pick(rand()), code_id=ctx.code(_batch(rand())))
            t += think(15_000)
    for _ in range(n_scans):
        yield ev(SCAN, t, value=PRIZE_PICKER.pick(rand()), code_id=ctx.code(_batch(rand())))
        t += think(20_000)
    if rand() < 0.15:
        yield ev(TASK, t, value=0.2)
        t += think(30_000)
    if rand() < p.invites:
        yield ev(INVITE, t)
        ctx.inviters.append(p.acct_id)
        t += think(10_000)
    if ctx.inviters and rand() < 0.1:
        friend = ctx.inviters[rng.randrange(len(ctx.inviters))]
        if friend != account.id:
            yield ev(ASSIST, t, inviter=friend, value=0.1)
            t += think(8_000)
    if rand() < p.shop:
        t += think(60_000, cap_ms=1_800_000)
        amount = round(min(2000.0, 15 + 60 * math.exp(0.8 * rng.gauss(0, 1))), 2)
        yield ev(ORDER, t, amount=amount)
        if rand() < 0.6:
            t += think(2_000)
            yield ev(REDEEM, t, amount=amount, value=(3.0, 5.0, 10.0, 20.0)[rng.randrange(4)])


def _batch(u: float) -> int:
    """A product batch: recent batches are on the shelves more often."""
    return N_BATCHES - 1 - int(N_BATCHES * u * u)

