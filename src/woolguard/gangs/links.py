"""Links: what each decided event says about which accounts belong together.

The decision log (or the demo's stream of decided, normalised events) is turned into
``(account, attr_type, attr_value, ts, amount)`` columns for :func:`woolguard.gangs.build_graph`:

- identity links: device id, phone hash, phone number block (100 numbers), address, payment account,
  a forged/constant GPS point, the IP within an hour (``ip``, time-bucketed by the graph), a prize code
  scanned by several accounts (a leaked code batch);
- invitation links: the account an event names as ``inviter`` (an invitation or an assist target);
- lockstep links (the time dimension): a value that many accounts use *in the same few minutes*, far
  above that value's own base rate (a rack of identical phones running one script, a farm's number
  range registering in a shift, a crowd answering a chat-group instruction). See :func:`burst_links`.

Attributes that are popular everywhere (a carrier NAT address, a best-selling phone model, the opening
rush) do not burst relative to their own rate, and the graph's rarity weights drop them anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Base weight per link type (how much sharing one says about two accounts).
LINK_WEIGHTS: dict[str, float] = {
    "device_id": 3.0,
    "phone_hash": 3.0,
    "payment": 3.0,
    "address": 2.0,
    "geo": 2.0,
    "phone_block": 1.5,
    "inviter": 2.0,
    "ip": 1.0,
    "code": 1.0,
    "burst_device_fp": 1.5,
    "burst_phone_prefix": 1.5,
    "burst_ip24": 1.0,
}
#: Time-bucketed link types (seconds): an IP shared a day apart is noise.
LINK_BUCKETS: dict[str, int] = {"ip": 3600}
#: Values whose bursts are looked for, and the event field they come from.
BURST_TYPES = ("device_fp", "phone_prefix", "ip24")
#: Time scales (seconds) at which bursts are looked for: a script rack fires within minutes, a farm
#: working through its accounts on a few handsets spreads one number segment over a shift. Only values
#: that few genuine users hold (a 7-digit number segment) are tested over the hour: a phone model's own
#: hourly rate follows the day's curve, so an hour-long "surge" of a model is routine.
BURST_SCALES: tuple[int, ...] = (300, 3600)
BURST_SCALE_TYPES: dict[int, tuple[str, ...]] = {300: BURST_TYPES, 3600: ("phone_prefix",)}
_SCALE_SHIFT = 28  # a burst value code is ``value << 32 | scale index << 28 | bucket``
PAYOUT = frozenset({"claim", "scan", "redeem", "assist", "accept_invite", "task"})


def _ip24(ip: str | None) -> str | None:
    if not ip:
        return None
    if ":" in ip:  # IPv6: the /48
        return ":".join(ip.split(":")[:3])
    parts = ip.split(".")
    return ".".join(parts[:3]) if len(parts) == 4 else None


def event_links(ev: Any) -> tuple[str, float, list[tuple[str, str]], list[tuple[str, str]]]:
    """``(account, money, identity links, burst candidates)`` for one normalised event (an
    :class:`~woolguard.events.Event` or the decision log's ``event`` dict)."""
    get = ev.get if isinstance(ev, Mapping) else lambda k, _ev=ev: getattr(_ev, k, None)
    acct = get("account")
    account = acct["id"] if isinstance(acct, Mapping) else acct.id
    d = get("device")
    dget = (d.get if isinstance(d, Mapping) else lambda k, _d=d: getattr(_d, k, None)) if d is not None else None
    links: list[tuple[str, str]] = []
    burst: list[tuple[str, str]] = []
    if dget is not None:
        if dget("id"):
            links.append(("device_id", dget("id")))
        if dget("model"):
            burst.append(("device_fp", f"{dget('model')}|{dget('os')}|{dget('os_version')}|{dget('app_version')}"))
    for name, typ in (("phone_hash", "phone_hash"), ("phone_block", "phone_block"), ("address_hash", "address"),
                      ("payment_hash", "payment"), ("inviter", "inviter"), ("ip", "ip")):
        v = get(name)
        if v:
            links.append((typ, str(v)))
    kind = str(get("kind"))
    code = get("code_id")
    if code and kind == "scan":
        links.append(("code", str(code)))
    g = get("geo")
    if g is not None:
        lat = g.get("lat") if isinstance(g, Mapping) else g.lat
        lon = g.get("lon") if isinstance(g, Mapping) else g.lon
        if lat is not None and lon is not None:
            links.append(("geo", f"{lat:.4f},{lon:.4f}"))
    prefix = get("phone_prefix")
    if prefix:
        burst.append(("phone_prefix", str(prefix)))
    p24 = _ip24(get("ip"))
    if p24:
        burst.append(("ip24", p24))
    money = float(get("value") or 0.0) if kind in PAYOUT else 0.0
    return account, money, links, burst


#: Every link type a buffer can hold (its integer code is the index).
TYPES: tuple[str, ...] = ("self", "device_id", "phone_hash", "phone_block", "address", "payment", "inviter", "ip",
                          "code", "geo", "device_fp", "phone_prefix", "ip24")
_TYPE_CODE = {t: i for i, t in enumerate(TYPES)}
#: Burst types get these codes in :meth:`LinkBuffer.columns` (``burst_`` + type).
BURST_CODE = {t: len(TYPES) + i for i, t in enumerate(BURST_TYPES)}
ALL_TYPES: tuple[str, ...] = TYPES + tuple("burst_" + t for t in BURST_TYPES)


@dataclass
class LinkBuffer:
    """Links collected from decided events, in time order, interned to integers (fast to group);
    ``prune`` forgets old ones. ``account_names[i]`` / ``value_names[j]`` give the keys back."""

    account_names: list[str] = field(default_factory=list)
    value_names: list[str] = field(default_factory=list)
    _acc: dict[str, int] = field(default_factory=dict)
    _val: dict[tuple[int, str], int] = field(default_factory=dict)
    account: list[int] = field(default_factory=list)
    attr_type: list[int] = field(default_factory=list)
    attr_value: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    amount: list[float] = field(default_factory=list)
    burst: list[bool] = field(default_factory=list)
    events: int = 0

    def _value(self, t: int, v: str) -> int:
        key = (t, v)
        j = self._val.get(key)
        if j is None:
            j = self._val[key] = len(self.value_names)
            self.value_names.append(v)
        return j

    def add(self, ev: Any) -> None:
        account, money, links, burst = event_links(ev)
        ts = (ev["ts"] if isinstance(ev, Mapping) else ev.ts) // 1000
        a = self._acc.get(account)
        if a is None:
            a = self._acc[account] = len(self.account_names)
            self.account_names.append(account)
        self.events += 1
        out = [(t, v, False) for t, v in links] + [(t, v, True) for t, v in burst]
        if not links:
            out.insert(0, ("self", account, False))  # keeps the account and its money in the graph
        for i, (t, v, b) in enumerate(out):
            code = _TYPE_CODE[t]
            self.account.append(a)
            self.attr_type.append(code)
            self.attr_value.append(self._value(code, v))
            self.ts.append(ts)
            self.amount.append(money if i == 0 else 0.0)  # money counted once per event
            self.burst.append(b)

    def extend(self, events: Iterable[Any]) -> LinkBuffer:
        for ev in events:
            self.add(ev)
        return self

    def prune(self, before_s: int) -> None:
        """Drop links older than ``before_s`` (epoch seconds); the lists stay time ordered."""
        k = int(np.searchsorted(np.asarray(self.ts, dtype=np.int64), before_s)) if self.ts else 0
        if k:
            for col in (self.account, self.attr_type, self.attr_value, self.ts, self.amount, self.burst):
                del col[:k]

    def __len__(self) -> int:
        return len(self.account)

    def raw(self, since_s: int | None = None) -> tuple[np.ndarray, ...]:
        """The buffered links as they were added, from ``since_s`` on: ``account, attr_type, attr_value, ts,
        amount, burst`` arrays (``burst``: the link may take part in lockstep bursts)."""
        k = int(np.searchsorted(np.asarray(self.ts, dtype=np.int64), since_s)) if since_s is not None else 0
        return (np.asarray(self.account[k:], dtype=np.int64), np.asarray(self.attr_type[k:], dtype=np.int64),
                np.asarray(self.attr_value[k:], dtype=np.int64), np.asarray(self.ts[k:], dtype=np.int64),
                np.asarray(self.amount[k:], dtype=np.float64), np.asarray(self.burst[k:], dtype=bool))

    def columns(self, since_s: int | None = None, scales: tuple[int, ...] = BURST_SCALES,
                **burst_kw: Any) -> tuple[np.ndarray, ...]:
        """Integer ``account, attr_type, attr_value, ts, amount`` arrays (type codes index
        :data:`ALL_TYPES`): identity and invitation links plus the lockstep bursts at each time scale
        of ``scales`` (a burst value code is ``value << 32 | scale index << 28 | bucket``)."""
        acc, typ, val, ts, amt, isb = self.raw(since_s)
        code_of = np.full(len(TYPES), -1, dtype=np.int64)
        for t, c in BURST_CODE.items():
            code_of[_TYPE_CODE[t]] = c
        parts: list[tuple[np.ndarray, ...]] = []
        for i, scale in enumerate(scales):
            tcodes = [_TYPE_CODE[t] for t in BURST_SCALE_TYPES.get(scale, BURST_TYPES)]
            isb_s = isb & np.isin(typ, tcodes)
            s_acc, s_val, s_ts, hot = burst_links(acc[isb_s], val[isb_s], ts[isb_s], bucket_s=scale, **burst_kw)
            s_val = ((s_val >> 32) << 32) | (i << _SCALE_SHIFT) | (s_val & ((1 << _SCALE_SHIFT) - 1))
            parts.append((s_acc, s_val, s_ts, code_of[typ[isb_s][hot]]))
        b_acc, b_val, b_ts, b_typ = (np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, np.int64)
                                     for k in range(4))
        keep = ~isb
        return (np.concatenate([acc[keep], b_acc]), np.concatenate([typ[keep], b_typ]),
                np.concatenate([val[keep], b_val]), np.concatenate([ts[keep], b_ts]),
                np.concatenate([amt[keep], np.zeros(b_acc.size)]))

    def names(self, value_codes: np.ndarray, scales: tuple[int, ...] = BURST_SCALES) -> np.ndarray:
        """Readable values for value codes: burst values read ``value@start/seconds`` (the start of the
        bucket in epoch seconds and the bucket's length), see :meth:`columns`."""
        vn = self.value_names
        out = []
        mask = (1 << _SCALE_SHIFT) - 1
        for v in np.asarray(value_codes).tolist():
            if v >= 1 << 32:
                scale = scales[(v >> _SCALE_SHIFT) & 0xF]
                out.append(f"{vn[v >> 32]}@{(v & mask) * scale}/{scale}")
            else:
                out.append(vn[v])
        return np.asarray(out, dtype=object)


def burst_links(account: np.ndarray, value: np.ndarray, ts: np.ndarray, *, bucket_s: int = 300,
                min_accounts: int = 4, min_lift: float = 4.0, min_sigma: float = 4.0,
                prior: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lockstep links: values used by unusually many accounts within one time bucket.

    ``account`` and ``value`` are integer codes (a value code is unique per type and value); ``ts`` seconds.
    For each ``(value, bucket)`` the number of distinct accounts ``k`` is compared with what the value's
    rate *outside this bucket* and the bucket's overall activity predict,
    ``e = (n(value) - k + prior) × n(bucket) / (n - n(bucket))`` (counted in distinct (account, value,
    bucket) cells). The cell under test is left out of the value's rate: otherwise a value used mostly by
    the burst itself predicts its own burst (at the opening hour, which holds ~13 % of all cells, a number
    segment used by 8 farm accounts then and 7 times later could never reach a lift of 4). ``prior`` (one
    pseudo-cell) keeps a value seen nowhere else from having a zero expectation. A cell bursts when
    ``k ≥ min_accounts``, ``k ≥ min_lift × e`` and ``k - e ≥ min_sigma × sqrt(e)`` (a Poisson surprise).
    Each account of a bursting cell gets one link to ``value@bucket`` (code ``value * 2**32 + bucket``).
    A best-selling phone model at the opening rush has a high ``e`` and does not burst; thirty identical
    phones running one script in the same minutes do.
    Returns ``(account, value@bucket, ts, mask of the input rows used)``.
    """
    n = account.size
    if n == 0:
        e = np.array([], dtype=np.int64)
        return e, e, e, np.zeros(0, dtype=bool)
    bucket = ts // bucket_s
    b0 = bucket - bucket.min()
    nb = int(b0.max()) + 1
    n_acc = int(account.max()) + 1
    kb = value.astype(np.int64) * nb + b0
    cell = kb * n_acc + account
    _, first = np.unique(cell, return_index=True)
    ckb = kb[first]
    per_val = np.bincount(value[first]).astype(np.float64)
    per_b = np.bincount(b0[first], minlength=nb).astype(np.float64)
    total = float(first.size)
    ukb, inv, count = np.unique(ckb, return_inverse=True, return_counts=True)
    in_b = per_b[ukb % nb]
    expected = (per_val[ukb // nb] - count + prior) * in_b / np.maximum(total - in_b, 1.0)
    hot_cell = (count >= min_accounts) & (count >= min_lift * expected) & \
        (count - expected >= min_sigma * np.sqrt(expected))
    rows = first[hot_cell[inv]]
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    rows = np.nonzero(mask)[0]
    code = value[rows].astype(np.int64) * (1 << 32) + bucket[rows]
    return account[rows], code, ts[rows], mask
