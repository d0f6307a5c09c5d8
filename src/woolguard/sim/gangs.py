"""Wool-party rings: scripts on emulators, phone farms, device-tampering farms and paid crowds.

Each ring is an arrival source: it yields ``(ts, actor)`` pairs in time order, an actor being a generator
of the ring's events for one shift (a worker running accounts back to back, a rack running a round in
lockstep, a crowd member answering the group's instruction). A ring keeps only what a real operator keeps:
its accounts' registration times, its resources (device pool, number blocks, proxy pools) derived from the
ring's key, and its schedule.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Iterator
from random import Random

from woolguard.events import Account, Device, Event, EventKind, Geo
from woolguard.sim.config import DAY_MS, HOUR_MS, MIN_MS, Ctx
from woolguard.sim.genuine import _batch
from woolguard.sim.world import (
    ANDROID_MODELS,
    APP_VERSIONS,
    BROADBAND,
    CHEAP_MODELS,
    CITIES,
    CITY_PICKER,
    CLOUD_PHONE_MODELS,
    DEVICE_MODELS,
    EMULATOR_MODELS,
    IOS_MODELS,
    IOT_SEGMENTS,
    MODEL_PICKER,
    MVNO_SEGMENTS,
    N_BATCHES,
    N_CITIES,
    NEW_USER_TIERS,
    PRIZE_PICKER,
    SEGMENTS,
    VERSION_PICKERS,
    account_id,
    broadband_ip,
    cloud_ip,
    ip_str,
    mix64,
    model_device,
    nat_ip,
    ordinary_number,
    unit,
    user_agent,
    virtual_number,
)

REGISTER, LOGIN, CLAIM, SCAN = EventKind.REGISTER, EventKind.LOGIN, EventKind.CLAIM, EventKind.SCAN
ORDER, INVITE, ACCEPT, ASSIST = EventKind.ORDER, EventKind.INVITE, EventKind.ACCEPT_INVITE, EventKind.ASSIST

SPACES = {"scripts": 2, "phone_farm": 3, "device_farm": 4, "paid_crowd": 5}
#: Towns with many fleecing operators; rings are more often based there.
GANG_TOWNS = [i for i, c in enumerate(CITIES) if c[0] in ("Putian", "Dongguan", "Shenzhen", "Guangzhou",
                                                             "Nanning", "Changsha", "Zhengzhou")]
N_PROXY_SUBNETS = 400


class Ring:
    truth = ""
    aged_share = 0.25

    def __init__(self, ctx: Ctx, no: int, n_accounts: int):
        self.ctx = ctx
        self.no = no
        self.n = n_accounts
        self.space = SPACES[self.truth]
        self.key = mix64(ctx.seed, self.space, no)
        r = self.r = Random(self.key)
        if r.random() < 0.6:
            self.city = GANG_TOWNS[r.randrange(len(GANG_TOWNS))]
        else:
            self.city = CITY_PICKER.pick(r.random())
        # Accounts: 0 = not registered yet; pre-aged ones (养号) were registered days before the campaign.
        self.created = array("q", bytes(8 * n_accounts))
        for k in range(n_accounts):
            if r.random() < self.aged_share:
                self.created[k] = ctx.start - int((2 + 20 * r.random()) * DAY_MS) - r.randrange(DAY_MS)
        days = ctx.cfg.days
        w = [0.55 * 0.5**d for d in range(days)]
        w[0] += 0.45
        self.first_day = bytes(_pick_index(w, r.random()) for _ in range(n_accounts))
        self.keep_on = 0.25 + 0.3 * r.random()
        self.leaked = [r.randrange(N_BATCHES // 2, N_BATCHES)] if r.random() < 0.5 else []
        if self.leaked and r.random() < 0.5:
            self.leaked.append(self.leaked[0] - 1)
        self.invite_farm = r.random() < 0.3
        self.assist_farm = r.random() < 0.35
        self.targets = [self.acct_id(k) for k in range(min(3, n_accounts))]
        self._blocks = self._number_blocks(r)

    # Accounts -------------------------------------------------------------------------------------
    def acct_id(self, k: int) -> str:
        return account_id(self.space, self.no << 20 | k)

    def account(self, k: int, t: int) -> tuple[Account, bool]:
        c = self.created[k]
        if c == 0:
            self.created[k] = t
            return Account(id=self.acct_id(k), tier=0, created_at=t), True
        tier = 1 if t - c < 10 * DAY_MS else 2
        return Account(id=self.acct_id(k), tier=tier, created_at=c), False

    def target(self, k: int, u: float) -> str | None:
        """The ring account that account ``k`` accepts the invitation of or assists (never itself)."""
        others = [t for i, t in enumerate(self.targets) if i != k]
        return others[int(u * len(others))] if others else None

    def active(self, k: int, day: int) -> bool:
        f = self.first_day[k]
        return day == f or (day > f and unit(mix64(self.key, 0xAC7, k, day)) < self.keep_on)

    def accounts_for_day(self, day: int) -> list[int]:
        return [k for k in range(self.n) if self.active(k, day)]

    def n_claims(self, rand: float) -> int:
        lim = self.ctx.limit
        if rand < 0.72:
            return lim
        if rand < 0.9:
            return max(1, lim - 1)
        return lim + 1 + (rand > 0.97)

    # Phone numbers --------------------------------------------------------------------------------
    def _number_blocks(self, r: Random) -> list[str]:
        """SMS-receiving platforms' number blocks (first 7 digits): mostly virtual-operator and IoT."""
        blocks = []
        for _ in range(3 + r.randrange(6)):
            u = r.random()
            if u < 0.6:
                seg = MVNO_SEGMENTS[r.randrange(len(MVNO_SEGMENTS))][0]
            elif u < 0.72:
                seg = IOT_SEGMENTS[r.randrange(len(IOT_SEGMENTS))][0]
            else:
                segs = SEGMENTS[r.randrange(3)]
                seg = segs[r.randrange(len(segs))]
            blocks.append(f"{seg}{r.randrange(10000):04d}")
        return blocks

    def phone(self, k: int) -> str:
        h = mix64(self.key, 0x9404E, k)
        if k and unit(h) < 0.06:  # the platform recycled a number already used for another account
            h = mix64(self.key, 0x9404E, k - 1)
        return f"{self._blocks[(h >> 12) % len(self._blocks)]}{(h >> 30) % 10000:04d}"

    # Networks -------------------------------------------------------------------------------------
    def proxy_ip(self, provider: int, u: float) -> str:
        """An exit of a residential proxy provider: residential ranges in many cities, no list has them."""
        sub = int(u * N_PROXY_SUBNETS)
        h = mix64(0x9A0C5, provider, sub)
        base = broadband_ip(h % N_CITIES, h >> 8) & ~0xFF
        return ip_str(base | (2 + int(u * 1e6) % 250))

    def code(self, rand: float) -> str:
        if self.leaked and rand < 0.85:
            return self.ctx.code(self.leaked[int(rand * 97) % len(self.leaked)])
        return self.ctx.code(_batch(rand))

    def prize(self, new: bool, first: bool, rand: float) -> float:
        return NEW_USER_TIERS.pick(rand) if (new and first) else PRIZE_PICKER.pick(rand)

    def arrivals(self) -> Iterator[tuple[int, Iterator[Event]]]:
        raise NotImplementedError

    def shift_start(self, day: int, opening: bool) -> int:
        """Rings strike at the opening, at the daily refresh, in the evening peak or at night."""
        r, ctx = self.r, self.ctx
        base = ctx.start + day * DAY_MS  # the daily refresh is at the campaign's opening time of day
        if opening:
            return base + int(5_000 + 600_000 * r.random() ** 2)
        u = r.random()
        if u < 0.4:
            return base + int(r.random() * 45 * MIN_MS)
        if u < 0.7:  # night, when the risk team sleeps: 01:00-05:00 local is +15h..+19h from 10:00
            return base + 15 * HOUR_MS + int(r.random() * 4 * HOUR_MS)
        return base + 8 * HOUR_MS + int(r.random() * 4 * HOUR_MS)


def _pick_index(weights: list[float], u: float) -> int:
    x = u * sum(weights)
    for i, w in enumerate(weights):
        x -= w
        if x < 0:
            return i
    return len(weights) - 1


def _split(items: list[int], n: int) -> list[list[int]]:
    return [items[i::n] for i in range(n)]


def _lazy_merge(plan: list[tuple[int, object]], expand) -> Iterator[tuple[int, Iterator[Event]]]:
    """Arrivals from a small plan: ``expand(item)`` gives the ``(ts, actor)`` starts of one batch (a shift, an
    instruction), each no earlier than the batch's time. Batches are expanded only when their time comes,
    so a ring holds the actors of one or two batches, not of the whole campaign."""
    plan = sorted(plan, key=lambda x: x[0])
    heap: list[tuple[int, int, Iterator[Event]]] = []
    seq = 0
    i = 0
    while i < len(plan) or heap:
        if i < len(plan) and (not heap or plan[i][0] <= heap[0][0]):
            for ts, gen in expand(plan[i][1]):
                heapq.heappush(heap, (ts, seq, gen))
                seq += 1
            i += 1
            continue
        ts, _, gen = heapq.heappop(heap)
        yield ts, gen


# ---------------------------------------------------------------------------------------------------
# (a) scripts on emulators


class Scripts(Ring):
    """Scripts driving emulator instances through proxies: fresh accounts, machine timing, bursts."""

    truth = "scripts"
    aged_share = 0.22

    def __init__(self, ctx: Ctx, no: int, n_accounts: int):
        super().__init__(ctx, no, n_accounts)
        r = self.r
        self.workers = 3 + r.randrange(10)
        self.step_ms = 500 + r.random() * 2000
        self.jitter = 0.01 + 0.07 * r.random()
        self.sleepy = r.random() < 0.35  # adds uniform random sleeps to look human
        self.pause_ms = 1500 + r.random() * 5000
        self.reset_per_account = r.random() < 0.7
        self.dc = r.random() < 0.6
        if self.dc:  # a few data-centre addresses in one or two cloud /24s
            base = cloud_ip(r.getrandbits(48)) & ~0xFF
            base2 = cloud_ip(r.getrandbits(48)) & ~0xFF if r.random() < 0.4 else base
            self.ips = [ip_str((base if i % 2 else base2) | (10 + r.randrange(240))) for i in
                        range(2 + r.randrange(7))]
        self.provider = r.randrange(6)
        self.app = APP_VERSIONS.pick(r.random() * 0.6)
        self.fixed_ua = None
        if r.random() < 0.2:  # one captured user agent replayed for every account
            mi = MODEL_PICKER.pick(r.random())
            m = DEVICE_MODELS[mi]
            self.fixed_ua = user_agent(m[0], m[1], VERSION_PICKERS[mi].pick(r.random()), "WIFI",
                                       r.getrandbits(40))
        self.geo = None
        if r.random() < 0.45:
            c = CITIES[r.randrange(N_CITIES)]
            self.geo = Geo(lat=c[2], lon=c[3], city=c[0], region=c[1], country="CN")
        self.instances = []
        for _ in range(self.workers):
            u = r.random()
            if u < 0.78:
                model, ver = EMULATOR_MODELS[r.randrange(len(EMULATOR_MODELS))]
                self.instances.append((model, ver, True, False))
            elif u < 0.9:  # an emulator the SDK misses, spoofing a popular real model
                mi = r.choice(ANDROID_MODELS)
                ver = VERSION_PICKERS[mi].pick(r.random())
                self.instances.append((DEVICE_MODELS[mi][0], ver, False, False))
            else:
                model, ver = CLOUD_PHONE_MODELS[r.randrange(len(CLOUD_PHONE_MODELS))]
                self.instances.append((model, ver, False, True))

    def arrivals(self):
        r = self.r
        plan = []
        for day in range(self.ctx.cfg.days):
            shifts = 1 + (r.random() < 0.5)
            for si in range(shifts):
                t0 = self.shift_start(day, opening=(day == 0 and si == 0 and r.random() < 0.7))
                plan.append((t0, (t0, day, si, shifts)))
        return _lazy_merge(plan, self.expand)

    def expand(self, item):
        t0, day, si, shifts = item
        part = _split(self.accounts_for_day(day), shifts)[si]
        out = []
        for w, wks in enumerate(_split(part, self.workers)):
            if wks:
                start = t0 + w * int(self.r.random() * 800)
                out.append((start, self.worker(w, wks, start)))
        return out

    def worker(self, w: int, ks: list[int], t0: int) -> Iterator[Event]:
        ctx = self.ctx
        rng = ctx.rng
        rand = rng.random
        cid, truth = ctx.cid, self.truth
        model, ver, emu, cloud = self.instances[w]
        inst_id = mix64(self.key, 0x1257, w)
        t = t0
        step, jit = self.step_ms, self.jitter
        for k in ks:
            if t >= ctx.end:
                return
            acc, new = self.account(k, t)
            dev_h = mix64(inst_id, k) if self.reset_per_account else inst_id
            dev = Device(id=format(dev_h, "016x"), model=model, os="android", os_version=ver,
                         app_version=self.app, emulator=emu and rand() < 0.97,
                         cloud_phone=cloud and rand() < 0.5, rooted=emu and rand() < 0.3)
            ip = self.ips[rng.randrange(len(self.ips))] if self.dc else self.proxy_ip(self.provider, rand())
            ua = self.fixed_ua or user_agent(model, "android", ver, "WIFI", dev_h)
            phone = self.phone(k)
            geo = self.geo

            def ev(kind, t, acc=acc, dev=dev, ip=ip, ua=ua, phone=phone, geo=geo, **kw):
                return Event(event_id="", kind=kind, ts=t, account=acc, campaign_id=cid, phone=phone,
                             device=dev, ip=ip, user_agent=ua, geo=geo, truth=truth, **kw)

            def gap():
                g = step * (1 + jit * (2 * rand() - 1))
                return int(g + (rand() * 3000 if self.sleepy else 0))

            yield ev(REGISTER if new else LOGIN, t)
            t += gap()
            target = self.target(k, rand())
            if new and self.invite_farm and target:
                yield ev(ACCEPT, t, inviter=target, value=1.0)
                t += gap()
            for i in range(self.n_claims(rand())):
                yield ev(CLAIM, t, value=self.prize(new, i == 0, rand()))
                t += gap()
            if self.leaked:
                for _ in range(rng.randrange(4)):
                    yield ev(SCAN, t, value=PRIZE_PICKER.pick(rand()), code_id=self.code(rand()))
                    t += gap()
            if self.assist_farm and target:
                yield ev(ASSIST, t, inviter=target, value=0.1)
                t += gap()
            t += int(self.pause_ms * (1 + jit * (2 * rand() - 1)))


# ---------------------------------------------------------------------------------------------------
# (b) phone farms under group control


class PhoneFarm(Ring):
    """A rack of cheap real phones under group control: many accounts per phone, lockstep, dial-up IPs."""

    truth = "phone_farm"
    aged_share = 0.3

    def __init__(self, ctx: Ctx, no: int, n_accounts: int):
        super().__init__(ctx, no, n_accounts)
        r = self.r
        self.phones = max(1, min(n_accounts, 16 + r.randrange(26)))
        self.slots = math.ceil(n_accounts / self.phones)
        models = [CHEAP_MODELS[r.randrange(len(CHEAP_MODELS))] for _ in range(1 + r.randrange(3))]
        vers = {mi: VERSION_PICKERS[mi].pick(r.random()) for mi in models}
        app = APP_VERSIONS.pick(r.random() * 0.5)
        self.rooted = r.random() < 0.4
        self.clone_flag = r.random() < 0.65
        self.clone_ids = r.random() < 0.5  # clone apps with isolated storage get their own SDK id
        self.delays = sorted(int(900 * r.random()) for _ in range(self.phones))
        self.step_ms = 1800 + r.random() * 2200
        self.switch_ms = 6000 + r.random() * 9000
        self.ttl = 2 + r.randrange(5)  # events per dial-up address
        self.modem = r.random() < 0.35  # a modem pool: numbers in consecutive blocks
        self.modem_start = r.randrange(10000)
        self.devices = []
        for p in range(self.phones):
            mi = models[p % len(models)]
            h = mix64(self.key, 0xDE71CE, p)
            self.devices.append((mi, vers[mi], app, h))
        self.geo = None
        if r.random() < 0.55:
            c = CITIES[self.city]
            self.geo = Geo(lat=round(c[2] + r.gauss(0, 0.05), 4), lon=round(c[3] + r.gauss(0, 0.05), 4),
                           city=c[0], region=c[1], country="CN")

    def phone(self, k: int) -> str:
        if self.modem:
            block = self._blocks[0]
            n = self.modem_start + k
            return f"{block[:3]}{(int(block[3:]) + n // 10000) % 10000:04d}{n % 10000:04d}"
        return super().phone(k)

    def arrivals(self):
        r = self.r
        out = []
        for day in range(self.ctx.cfg.days):
            if day == 0 and r.random() < 0.7:
                t0 = self.shift_start(0, opening=True)
            elif r.random() < 0.5:
                t0 = self.ctx.start + day * DAY_MS + int(r.random() * 40 * MIN_MS)
            else:
                t0 = self.ctx.start + day * DAY_MS + 9 * HOUR_MS + int(r.random() * 3 * HOUR_MS)
            out.append((t0, (t0, day)))
        return _lazy_merge(out, self.expand)

    def expand(self, item):
        t0, day = item
        return [(t0, self.round(t0, set(self.accounts_for_day(day))))]

    def round(self, t0: int, active: set[int]) -> Iterator[Event]:
        ctx = self.ctx
        rng = ctx.rng
        rand = rng.random
        cid, truth = ctx.cid, self.truth
        t = t0
        n_claims = ctx.limit if rand() < 0.8 else ctx.limit + 1
        n_scans = (1 + rng.randrange(2)) if self.leaked else 0
        dialup = [None] * self.phones
        left = [0] * self.phones
        city_ranges = BROADBAND[self.city]
        for m in range(self.slots):
            crew = []
            for p in range(self.phones):
                k = p * self.slots + m
                if k >= self.n or k not in active:
                    continue
                acc, new = self.account(k, t + self.delays[p])
                mi, ver, app, h = self.devices[p]
                did = mix64(h, m) if (self.clone_ids and m) else h
                clone = bool(m) and self.clone_flag
                dev = model_device(mi, did, 0.0, app, rooted=self.rooted, multi_open=clone)
                dev.os_version = ver
                ua = user_agent(dev.model, dev.os, ver, "WIFI", h)
                crew.append((p, k, acc, new, dev, ua, self.phone(k)))
            if not crew:
                continue
            script = [REGISTER] + [ACCEPT] * self.invite_farm + [CLAIM] * n_claims + [SCAN] * n_scans
            script += [ASSIST] * self.assist_farm
            for step, kind in enumerate(script):
                batch = []
                for p, k, acc, new, dev, ua, phone in crew:
                    if kind is REGISTER and not new:
                        kind_p = LOGIN
                    elif (kind is ACCEPT and (not new or k == 0)) or (kind is ASSIST and k < len(self.targets)):
                        continue  # only new accounts accept; the ring's own targets do not assist
                    else:
                        kind_p = kind
                    if left[p] <= 0:  # re-dial: a fresh residential address from the farm's city
                        base = city_ranges[rng.randrange(len(city_ranges))]
                        dialup[p] = ip_str(base | rng.randrange(1, 0xFFFE))
                        left[p] = self.ttl
                    left[p] -= 1
                    ts = t + self.delays[p] + (int(rand() * 120) if step else 0)
                    kw = {}
                    if kind_p is CLAIM:
                        kw["value"] = self.prize(new, step == 1 + self.invite_farm, rand())
                    elif kind_p is SCAN:
                        kw["value"] = PRIZE_PICKER.pick(rand())
                        kw["code_id"] = self.code(rand())
                    elif kind_p is ACCEPT:
                        kw["inviter"] = self.targets[0]
                        kw["value"] = 1.0
                    elif kind_p is ASSIST:
                        kw["inviter"] = self.targets[int(rand() * len(self.targets))]
                        kw["value"] = 0.1
                    batch.append(Event(event_id="", kind=kind_p, ts=ts, account=acc, campaign_id=cid,
                                       phone=phone, device=dev, ip=dialup[p], user_agent=ua, geo=self.geo,
                                       truth=truth, **kw))
                batch.sort(key=_ts)
                yield from batch
                t += int(self.step_ms * (0.97 + 0.06 * rand())) + 1000
            t += int(self.switch_ms * (0.9 + 0.2 * rand()))
            if t >= ctx.end:
                return


def _ts(e: Event) -> int:
    return e.ts


# ---------------------------------------------------------------------------------------------------
# (c) device-tampering farms


class DeviceFarm(Ring):
    """A few real phones running tampering (改机) tools: a new forged device for each account."""

    truth = "device_farm"
    aged_share = 0.25

    def __init__(self, ctx: Ctx, no: int, n_accounts: int):
        super().__init__(ctx, no, n_accounts)
        r = self.r
        self.handsets = 3 + r.randrange(8)
        self.reset_often = r.random() < 0.3  # a new identity every few events, not per account
        self.uniform_models = r.random() < 0.5  # random-looking models, not weighted by popularity
        self.p_contradict = 0.1 + 0.15 * r.random()
        self.p_flag = 0.2 + 0.4 * r.random()  # how often the SDK still sees the tool
        self.providers = [r.randrange(6), r.randrange(6)]
        self.min_gap = 1200 + r.random() * 1500
        self.span_gap = 2000 + r.random() * 5000
        self.reset_ms = 15_000 + r.random() * 30_000

    def identity(self):
        """A forged device: model, OS and user agent, sometimes contradicting each other."""
        rng = self.ctx.rng
        rand = rng.random
        mi = rng.randrange(len(DEVICE_MODELS)) if self.uniform_models else MODEL_PICKER.pick(rand())
        h = rng.getrandbits(64)
        dev = model_device(mi, h, rand(), APP_VERSIONS.pick(rand()))
        ua = user_agent(dev.model, dev.os, dev.os_version, "WIFI" if rand() < 0.6 else "4G", h)
        if rand() < self.p_contradict:  # the forged traits disagree with each other
            u = rand()
            if u < 0.4:
                other = IOS_MODELS[rng.randrange(len(IOS_MODELS))] if dev.os != "ios" else \
                    ANDROID_MODELS[rng.randrange(len(ANDROID_MODELS))]
                dev.model = DEVICE_MODELS[other][0]
            elif u < 0.8:
                o = DEVICE_MODELS[rng.randrange(len(DEVICE_MODELS))]
                ua = user_agent(o[0], o[1], "13" if o[1] == "android" else "17.4.1", "WIFI", h)
            else:
                dev.os_version = ("9", "16.1", "4.0.0", "14")[rng.randrange(4)]
        flagged = Device(**{f: getattr(dev, f) for f in dev.__struct_fields__})
        flagged.rooted = rand() < 0.6
        flagged.hooked = rand() < 0.45
        flagged.tampered = rand() < 0.55 or not (flagged.rooted or flagged.hooked)
        geo = None
        if rand() < 0.6:  # forged GPS somewhere in the country
            c = CITIES[rng.randrange(N_CITIES)]
            geo = Geo(lat=round(c[2] + rng.gauss(0, 0.05), 4), lon=round(c[3] + rng.gauss(0, 0.05), 4),
                      city=c[0], region=c[1], country="CN")
        return dev, flagged, ua, geo

    def arrivals(self):
        r = self.r
        plan = []
        for day in range(self.ctx.cfg.days):
            shifts = 1 + r.randrange(3)
            for si in range(shifts):
                t0 = self.shift_start(day, opening=(day == 0 and si == 0 and r.random() < 0.6))
                plan.append((t0, (t0, day, si, shifts)))
        return _lazy_merge(plan, self.expand)

    def expand(self, item):
        t0, day, si, shifts = item
        part = _split(self.accounts_for_day(day), shifts)[si]
        out = []
        for qks in _split(part, self.handsets):
            if qks:
                start = t0 + int(self.r.random() * 20_000)
                out.append((start, self.handset(qks, start)))
        return out

    def handset(self, ks: list[int], t0: int) -> Iterator[Event]:
        ctx = self.ctx
        rng = ctx.rng
        rand = rng.random
        cid, truth = ctx.cid, self.truth
        t = t0
        for k in ks:
            if t >= ctx.end:
                return
            acc, new = self.account(k, t)
            phone = self.phone(k)
            dev, flagged, ua, geo = self.identity()
            ip = self.proxy_ip(self.providers[rng.randrange(2)], rand())
            left = 3 + rng.randrange(6)
            has_target = self.target(k, 0.0) is not None
            kinds = [REGISTER if new else LOGIN] + [ACCEPT] * (new and self.invite_farm and has_target)
            kinds += [CLAIM] * self.n_claims(rand())
            if self.leaked:
                kinds += [SCAN] * rng.randrange(3)
            if self.assist_farm and has_target:
                kinds.append(ASSIST)
            first_claim = True
            for kind in kinds:
                if self.reset_often and left <= 0:
                    dev, flagged, ua, geo = self.identity()
                    ip = self.proxy_ip(self.providers[rng.randrange(2)], rand())
                    left = 3 + rng.randrange(6)
                    t += int(self.reset_ms)
                left -= 1
                kw = {}
                if kind is CLAIM:
                    kw["value"] = self.prize(new, first_claim, rand())
                    first_claim = False
                elif kind is SCAN:
                    kw["value"] = PRIZE_PICKER.pick(rand())
                    kw["code_id"] = self.code(rand())
                elif kind is ACCEPT or kind is ASSIST:
                    kw["inviter"] = self.target(k, rand())
                    kw["value"] = 1.0 if kind is ACCEPT else 0.1
                yield Event(event_id="", kind=kind, ts=t, account=acc, campaign_id=cid, phone=phone,
                            device=flagged if rand() < self.p_flag else dev, ip=ip, user_agent=ua, geo=geo,
                            truth=truth, **kw)
                t += int(self.min_gap + rand() * self.span_gap)
            t += int(self.reset_ms * (0.7 + 0.6 * rand()))


# ---------------------------------------------------------------------------------------------------
# (d) paid crowds


class PaidCrowd(Ring):
    """Real people paid per claim, told in a chat group when to act; otherwise they look genuine."""

    truth = "paid_crowd"
    aged_share = 0.4

    def __init__(self, ctx: Ctx, no: int, n_accounts: int):
        super().__init__(ctx, no, n_accounts)
        r = self.r
        self.respond = 0.4 + 0.35 * r.random()
        self.delay_ms = 60_000 + r.random() * 240_000
        self.leader = self.targets[0]
        self.assist_farm = r.random() < 0.7
        self.invite_farm = r.random() < 0.75
        # Old members use their own, older accounts: no longer "registered days earlier" but months ago.
        for k in range(self.n):
            if self.created[k]:
                self.created[k] = ctx.start - int((30 + 600 * r.random()) * DAY_MS)

    def arrivals(self):
        r = self.r
        ctx = self.ctx
        out = []
        for day in range(ctx.cfg.days):
            times = []
            if day == 0 and r.random() < 0.8:
                times.append(ctx.start + int((3 + 30 * r.random()) * MIN_MS))
            for _ in range(1 + (r.random() < 0.4)):
                hour = (0.5, 2.5, 9.5, 10.5, 11.5, 12.0)[r.randrange(6)]  # lunch and evening, local time
                times.append(ctx.start + day * DAY_MS + int((hour + r.random()) * HOUR_MS))
            out.extend((t, (t, day)) for t in times)
        return _lazy_merge(out, self.instruction)

    def instruction(self, item):
        """The group's instruction at ``t``: the leader posts, members follow within minutes."""
        t, day = item
        r = self.r
        out = [(t, self.member(0, t, leader=True))]
        for k in range(1, self.n):
            if r.random() < self.respond and day >= self.first_day[k]:
                start = t + 20_000 + int(self.delay_ms * math.exp(0.7 * r.gauss(0, 1)))
                out.append((start, self.member(k, start)))
        return out

    def member(self, k: int, t: int, leader: bool = False) -> Iterator[Event]:
        ctx = self.ctx
        rng = ctx.rng
        rand = rng.random
        cid, truth = ctx.cid, self.truth
        r = Random(mix64(self.key, 0x3E3, k))
        city = self.city if r.random() < 0.6 else CITY_PICKER.pick(r.random())
        dh = r.getrandbits(64)
        dev = model_device(MODEL_PICKER.pick(r.random()), dh, r.random(), APP_VERSIONS.pick(r.random()))
        if dev.os == "android" and r.random() < 0.03:
            dev.rooted = True
        if r.random() < 0.05:
            phone, carrier = virtual_number(r.getrandbits(64))
        else:
            phone, carrier = ordinary_number(r.getrandbits(64))
        home = ip_str(broadband_ip(city, r.getrandbits(48)))
        mobile_share = 0.3 + 0.5 * r.random()
        c = CITIES[city]
        geo = Geo(lat=round(c[2] + r.gauss(0, 0.06), 4), lon=round(c[3] + r.gauss(0, 0.06), 4), city=c[0],
                  region=c[1], country="CN") if r.random() < 0.6 else None
        if rand() < mobile_share:
            ip, net = ip_str(nat_ip(city, carrier, rand())), "4G"
        else:
            ip, net = home, "WIFI"
        ua = user_agent(dev.model, dev.os, dev.os_version, net, dh)
        acc, new = self.account(k, t)
        think = ctx.think

        def ev(kind, t, **kw):
            return Event(event_id="", kind=kind, ts=t, account=acc, campaign_id=cid, phone=phone, device=dev,
                         ip=ip, user_agent=ua, geo=geo, truth=truth, **kw)

        yield ev(REGISTER if new else LOGIN, t)
        t += think(5_000)
        if new and self.invite_farm and not leader:
            yield ev(ACCEPT, t, inviter=self.leader, value=1.0)
            t += think(4_000)
        if leader:
            yield ev(INVITE, t)
            t += think(5_000)
        n = self.n_claims(rand()) if rand() < 0.7 else 1 + rng.randrange(ctx.limit)
        for i in range(n):
            yield ev(CLAIM, t, value=self.prize(new, i == 0, rand()))
            t += think(6_000)
        if self.assist_farm and not leader and rand() < 0.7:
            yield ev(ASSIST, t, inviter=self.leader, value=0.1)
            t += think(5_000)
        if self.leaked and rand() < 0.6:
            for _ in range(1 + rng.randrange(3)):
                yield ev(SCAN, t, value=PRIZE_PICKER.pick(rand()), code_id=self.code(rand()))
                t += think(7_000)
        if rand() < 0.04:
            t += think(60_000)
            yield ev(ORDER, t, amount=round(10 + 40 * rand(), 2))


RING_TYPES = {"scripts": Scripts, "phone_farm": PhoneFarm, "device_farm": DeviceFarm, "paid_crowd": PaidCrowd}
