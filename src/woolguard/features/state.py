"""Feature state backends: the interface, and the in-process (memory) backend.

``observe(ts_ms, kind, entities)`` adds one event to every window of the catalogue and returns each
window's value *including* that event, in catalogue order. A backend must give the same values for the
same event stream; the Redis backend implements the same arithmetic in one Lua call per event.

Memory stays bounded: every window forgets entries older than itself, keys whose newest entry has
expired are dropped (a few per event, oldest first, so there is no sweep pause), and no key keeps more
than :data:`~woolguard.features.catalog.MAX_ENTRIES` entries (counts saturate there).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any, Protocol

from woolguard.events import EventKind
from woolguard.features.catalog import DEFAULT_WINDOWS, GAP_HISTORY, MAX_ENTRIES, Window, WindowOp

#: Every this many events, each window drops up to SWEEP_BATCH keys whose newest entry has expired
#: (oldest first), so expiry costs a little every few events and never pauses for long.
SWEEP_EVERY = 64
SWEEP_BATCH = 256


class FeatureState(Protocol):
    windows: tuple[Window, ...]

    def observe(self, ts_ms: int, kind: EventKind, entities: Mapping[str, str | None]) -> list[int]:
        """Add the event to every window and return the windows' values, in catalogue order."""
        ...

    def peek(self, ts_ms: int, entities: Mapping[str, str | None]) -> list[int]:
        """The values the windows would have at ``ts_ms`` without adding anything."""
        ...


def gap_cv(stamps: Sequence[int]) -> int:
    """Coefficient of variation × 100 of the gaps between timestamps; -1 with fewer than 3 gaps.

    >>> gap_cv([0, 1000, 2000, 3000])
    0
    >>> gap_cv([0, 1000])
    -1
    """
    n = len(stamps) - 1
    if n < 3:
        return -1
    mean = (stamps[-1] - stamps[0]) / n
    if mean <= 0:
        return 0
    prev = stamps[0]
    var = 0.0
    for t in islice(stamps, 1, None):
        d = t - prev - mean
        var += d * d
        prev = t
    return round(100.0 * math.sqrt(var / n) / mean)


def key_of(window: Window, entities: Mapping[str, str | None]) -> str | None:
    """The state key of ``window`` for an event, or None when the event lacks one of its entities."""
    if len(window.key) == 1:
        return entities.get(window.key[0])
    parts = []
    for name in window.key:
        value = entities.get(name)
        if value is None:
            return None
        parts.append(value)
    return "|".join(parts)


_COUNT, _DISTINCT, _FIRST, _GAPS = 0, 1, 2, 3
_OPCODES = {WindowOp.COUNT: _COUNT, WindowOp.DISTINCT: _DISTINCT, WindowOp.FIRST_SEEN: _FIRST,
            WindowOp.GAPS: _GAPS}


class _Group:
    """The windows that share one key (e.g. every device window): one ordered map key -> record.

    A record is a list holding each window's entries (a deque of timestamps, an ordered map member ->
    last seen, ``[first, last]`` or a deque of recent timestamps) followed by the key's last update time.
    Keys are kept least recently updated first, so expiry pops them from the front. First-seen entries
    outlive the other windows: when a key's record expires, its first-seen entries are *retired* to a small
    side map (kept until their own window passes) and brought back if the key returns, so an active key
    costs one lookup and an idle one costs a few bytes.
    """

    __slots__ = ("_plans", "composite", "data", "first_slots", "horizon", "items", "keep", "key", "retired",
                 "single")

    def __init__(self, key: tuple[str, ...], windows: list[tuple[int, Window]]):
        self.key = key
        self.single = key[0] if len(key) == 1 else None
        self.composite = key
        self.data: OrderedDict[str, list] = OrderedDict()
        others = [w.window_s for _, w in windows if w.op is not WindowOp.FIRST_SEEN]
        firsts = [w.window_s for _, w in windows if w.op is WindowOp.FIRST_SEEN]
        self.horizon = max(others or firsts) * 1000
        self.keep = max(firsts or [0]) * 1000
        self.items = [(index, _OPCODES[w.op], w.window_s * 1000, w.member, w.kinds) for index, w in windows]
        self.first_slots = [i for i, (_, w) in enumerate(windows) if w.op is WindowOp.FIRST_SEEN]
        self.retired: OrderedDict[str, list] = OrderedDict()  # key -> [first-seen entries..., last update]
        self._plans: dict[EventKind | None, list[tuple[int, int, int, int, str | None, bool]]] = {}

    def plan(self, kind: EventKind | None) -> list[tuple[int, int, int, int, str | None, bool]]:
        """(slot, output index, op, horizon, member, update?) per window, for events of ``kind``."""
        hit = self._plans.get(kind)
        if hit is None:
            hit = self._plans[kind] = [
                (i, index, op, horizon, member, kind is not None and (kinds is None or kind in kinds))
                for i, (index, op, horizon, member, kinds) in enumerate(self.items)
            ]
        return hit

    def revive(self, key: str, ts: int, create: bool) -> list | None:
        """The record of a key that is not in ``data``: rebuilt from its retired first-seen entries, if any."""
        if not self.first_slots:
            old = None
        else:  # a peek must not consume the retired entry
            old = self.retired.pop(key, None) if create else self.retired.get(key)
        if old is None and not create:
            return None
        rec: list = [None] * len(self.items) + [ts if old is None else old[-1]]
        if old is not None:
            for slot, entry in zip(self.first_slots, old, strict=False):
                rec[slot] = entry
        if create:
            self.data[key] = rec
        return rec

    def sweep(self, now: int, budget: int = SWEEP_BATCH) -> int:
        """Drop up to ``budget`` keys not updated within the group's windows; retire their first-seen entries."""
        data = self.data
        cutoff = now - self.horizon
        dropped = 0
        first_slots = self.first_slots
        while data and dropped < budget:
            key = next(iter(data))
            rec = data[key]
            if rec[-1] > cutoff:
                break
            del data[key]
            dropped += 1
            if first_slots and rec[-1] > now - self.keep:
                entries = [rec[i] for i in first_slots]
                if any(e is not None for e in entries):
                    self.retired[key] = [*entries, rec[-1]]
        retired = self.retired
        keep_cutoff = now - self.keep
        while retired and dropped < 2 * budget:
            key = next(iter(retired))
            if retired[key][-1] > keep_cutoff:
                break
            del retired[key]
            dropped += 1
        return dropped


class MemoryState:
    """In-process feature state. Not thread-safe: one per worker (and per tenant)."""

    def __init__(self, windows: tuple[Window, ...] = DEFAULT_WINDOWS):
        self.windows = windows
        by_key: dict[tuple[str, ...], list[tuple[int, Window]]] = {}
        for index, w in enumerate(windows):
            by_key.setdefault(w.key, []).append((index, w))
        self._groups = [_Group(k, ws) for k, ws in by_key.items()]
        self._empty = [-1 if w.op is WindowOp.GAPS else 0 for w in windows]
        #: per event kind: (single key, composite key, data, window plan, group) for every group
        self._layouts: dict[EventKind | None, list[tuple[Any, ...]]] = {}
        self._events = 0

    def observe(self, ts_ms: int, kind: EventKind, entities: Mapping[str, str | None]) -> list[int]:
        self._events += 1
        if self._events % SWEEP_EVERY == 0:
            for group in self._groups:
                group.sweep(ts_ms)
        return self._run(ts_ms, kind, entities, True)

    def peek(self, ts_ms: int, entities: Mapping[str, str | None]) -> list[int]:
        return self._run(ts_ms, None, entities, False)

    def size(self) -> dict[str, int]:
        """Keys held per group of windows (for metrics and the memory-bound tests)."""
        out = {"+".join(g.key): len(g.data) for g in self._groups}
        out.update({"+".join(g.key) + "#retired": len(g.retired) for g in self._groups if g.first_slots})
        return out

    def _run(self, ts: int, kind: EventKind | None, entities: Mapping[str, str | None],
             update: bool) -> list[int]:
        out = list(self._empty)
        get = entities.get
        pkind = kind if update else None
        layout = self._layouts.get(pkind)
        if layout is None:
            layout = self._layouts[pkind] = [(g.single, g.composite, g.data, g.plan(pkind), g) for g in self._groups]
        for single, composite, data, plan, group in layout:
            if single is not None:
                key = get(single)
            else:
                key = ""
                for name in composite:
                    part = get(name)
                    if part is None:
                        key = None
                        break
                    key = part if not key else key + "|" + part
            if key is None:
                continue
            rec = data.get(key)
            if rec is None:
                rec = group.revive(key, ts, update)
                if rec is None:
                    continue
                if update and ts > rec[-1]:
                    rec[-1] = ts
            elif update:
                data.move_to_end(key)
                if ts > rec[-1]:
                    rec[-1] = ts
            for i, index, op, horizon, member_name, upd in plan:
                entry = rec[i]
                cutoff = ts - horizon
                if op == 0:  # count
                    if entry is None:
                        if not upd:
                            continue
                        entry = rec[i] = deque(maxlen=MAX_ENTRIES)
                    if upd:
                        entry.append(ts)
                    while entry and entry[0] <= cutoff:
                        entry.popleft()
                    out[index] = len(entry)
                elif op == 1:  # distinct
                    member = get(member_name) if upd else None
                    if entry is None:
                        if member is None:
                            continue
                        entry = rec[i] = OrderedDict()
                    if member is not None:
                        if member in entry:
                            entry.move_to_end(member)
                        elif len(entry) >= MAX_ENTRIES:
                            entry.popitem(last=False)
                        entry[member] = ts
                    while entry:
                        first = next(iter(entry))
                        if entry[first] > cutoff:
                            break
                        del entry[first]
                    out[index] = len(entry)
                elif op == 2:  # first seen
                    if entry is not None and entry[1] <= cutoff:  # forgotten, even if not swept yet
                        entry = rec[i] = None
                    if entry is None:
                        if upd:
                            rec[i] = [ts, ts]
                        out[index] = 0
                    else:
                        if upd and ts > entry[1]:
                            entry[1] = ts
                        out[index] = max(0, (ts - entry[0]) // 1000)
                else:  # _GAPS
                    if entry is None:
                        if not upd:
                            continue
                        entry = rec[i] = deque(maxlen=GAP_HISTORY)
                    elif entry and entry[-1] <= cutoff:  # expired history, even if not swept yet
                        entry.clear()
                    if upd:
                        entry.append(ts)
                    out[index] = gap_cv(entry)
        return out
