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
from typing import Protocol

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
    gaps = [stamps[i + 1] - stamps[i] for i in range(n)]
    mean = sum(gaps) / n
    if mean <= 0:
        return 0
    var = sum((g - mean) ** 2 for g in gaps) / n
    return round(100.0 * math.sqrt(var) / mean)


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


class _Slot:
    """State of one window: an ordered map key -> entries, least recently updated key first."""

    __slots__ = ("data", "horizon", "kinds", "member", "name", "window")

    def __init__(self, window: Window):
        self.window = window
        self.name = window.name
        self.horizon = window.window_s * 1000
        self.kinds = window.kinds
        self.member = window.member
        self.data: OrderedDict[str, object] = OrderedDict()

    def __len__(self) -> int:
        return len(self.data)

    def newest(self, entry: object) -> int:
        raise NotImplementedError

    def sweep(self, now: int, budget: int = SWEEP_BATCH) -> int:
        """Drop up to ``budget`` keys whose newest entry is older than the window; returns how many."""
        data = self.data
        cutoff = now - self.horizon
        dropped = 0
        while data and dropped < budget:
            first = next(iter(data))
            if self.newest(data[first]) > cutoff:
                break
            del data[first]
            dropped += 1
        return dropped


class _Count(_Slot):
    __slots__ = ()

    def observe(self, key: str, member: str | None, ts: int, update: bool) -> int:
        data = self.data
        dq = data.get(key)
        cutoff = ts - self.horizon
        if dq is None:
            if not update:
                return 0
            dq = data[key] = deque(maxlen=MAX_ENTRIES)
        elif update:
            data.move_to_end(key)
        if update:
            dq.append(ts)  # type: ignore[union-attr]
        while dq and dq[0] <= cutoff:  # type: ignore[index]
            dq.popleft()  # type: ignore[union-attr]
        return len(dq)  # type: ignore[arg-type]

    def newest(self, entry: object) -> int:
        return entry[-1] if entry else 0  # type: ignore[index]


class _Distinct(_Slot):
    __slots__ = ()

    def observe(self, key: str, member: str | None, ts: int, update: bool) -> int:
        data = self.data
        seen: OrderedDict[str, int] | None = data.get(key)  # type: ignore[assignment]
        cutoff = ts - self.horizon
        update = update and member is not None
        if seen is None:
            if not update:
                return 0
            seen = data[key] = OrderedDict()
        elif update:
            data.move_to_end(key)
        if update:
            if member in seen:
                seen.move_to_end(member)  # type: ignore[arg-type]
            elif len(seen) >= MAX_ENTRIES:
                seen.popitem(last=False)
            seen[member] = ts  # type: ignore[index]
        while seen:
            first = next(iter(seen))
            if seen[first] > cutoff:
                break
            del seen[first]
        return len(seen)

    def newest(self, entry: object) -> int:
        return entry[next(reversed(entry))] if entry else 0  # type: ignore[index,call-overload]


class _FirstSeen(_Slot):
    """key -> [first_ts, last_ts]; forgotten ``window_s`` after it was last seen."""

    __slots__ = ()

    def observe(self, key: str, member: str | None, ts: int, update: bool) -> int:
        data = self.data
        entry: list[int] | None = data.get(key)  # type: ignore[assignment]
        if entry is not None and entry[1] <= ts - self.horizon:  # forgotten, even if not swept yet
            del data[key]
            entry = None
        if entry is None:
            if update:
                data[key] = [ts, ts]
            value = 0
        else:
            if update:
                data.move_to_end(key)
                if ts > entry[1]:
                    entry[1] = ts
            value = max(0, (ts - entry[0]) // 1000)
        return value

    def newest(self, entry: object) -> int:
        return entry[1]  # type: ignore[index]


class _Gaps(_Slot):
    __slots__ = ()

    def observe(self, key: str, member: str | None, ts: int, update: bool) -> int:
        data = self.data
        dq: deque[int] | None = data.get(key)  # type: ignore[assignment]
        if dq is None:
            if not update:
                return -1
            dq = data[key] = deque(maxlen=GAP_HISTORY)
        else:
            if dq and dq[-1] <= ts - self.horizon:  # expired history, even if not swept yet
                dq.clear()
            if update:
                data.move_to_end(key)
        if update:
            dq.append(ts)
        return gap_cv(dq)

    def newest(self, entry: object) -> int:
        return entry[-1] if entry else 0  # type: ignore[index]


_SLOTS = {WindowOp.COUNT: _Count, WindowOp.DISTINCT: _Distinct,
          WindowOp.FIRST_SEEN: _FirstSeen, WindowOp.GAPS: _Gaps}


class MemoryState:
    """In-process feature state: one ordered map per window. Not thread-safe; one per worker."""

    def __init__(self, windows: tuple[Window, ...] = DEFAULT_WINDOWS):
        self.windows = windows
        self._slots = [_SLOTS[w.op](w) for w in windows]
        self._plan = [(slot, w.key[0] if len(w.key) == 1 else None, w) for slot, w in zip(self._slots, windows,
                                                                                      strict=True)]
        self._events = 0

    def observe(self, ts_ms: int, kind: EventKind, entities: Mapping[str, str | None]) -> list[int]:
        self._events += 1
        if self._events % SWEEP_EVERY == 0:
            for slot in self._slots:
                slot.sweep(ts_ms)
        return self._run(ts_ms, kind, entities, True)

    def peek(self, ts_ms: int, entities: Mapping[str, str | None]) -> list[int]:
        return self._run(ts_ms, None, entities, False)

    def _run(self, ts: int, kind: EventKind | None, entities: Mapping[str, str | None],
             update: bool) -> list[int]:
        out = []
        get = entities.get
        for slot, single, window in self._plan:
            key = get(single) if single is not None else key_of(window, entities)
            if key is None:
                out.append(-1 if window.op is WindowOp.GAPS else 0)
                continue
            kinds = slot.kinds
            member = get(slot.member) if slot.member is not None else None
            out.append(slot.observe(key, member, ts, update and (kinds is None or kind in kinds)))
        return out

    def size(self) -> dict[str, int]:
        """Keys held per window (for metrics and the memory-bound tests)."""
        return {slot.name: len(slot) for slot in self._slots}
