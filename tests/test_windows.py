"""Window arithmetic: the memory backend against a brute-force reference, on generated streams."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from woolguard.events import EventKind
from woolguard.features.catalog import GAP_HISTORY, MAX_ENTRIES, Window, WindowOp
from woolguard.features.state import MemoryState, gap_cv

W = (
    Window("cnt", WindowOp.COUNT, ("device",), 60),
    Window("cnt_claims", WindowOp.COUNT, ("device",), 600, kinds=frozenset({EventKind.CLAIM})),
    Window("dist", WindowOp.DISTINCT, ("device",), 120, member="account"),
    Window("pair", WindowOp.COUNT, ("campaign", "device"), 300),
    Window("first", WindowOp.FIRST_SEEN, ("account",), 200),
    Window("gaps", WindowOp.GAPS, ("account",), 100),
)

events = st.lists(
    st.tuples(
        # steps in ms; round values land events exactly on window edges
        st.one_of(st.sampled_from([0, 1_000, 10_000, 20_000, 30_000, 60_000, 100_000, 200_000]),
                  st.integers(min_value=0, max_value=30_000)),
        st.sampled_from(["d1", "d2", "d3"]),
        st.sampled_from(["a1", "a2", "a3", "a4"]),
        st.sampled_from([EventKind.CLAIM, EventKind.LOGIN]),
        st.sampled_from(["c1", None]),
    ),
    min_size=1,
    max_size=120,
)


def reference(history: list[tuple[int, str, str, EventKind, str | None]], now: int) -> list[int]:
    """What every window should say at the last event, computed from the whole history."""
    _ts, dev, acct, _kind, camp = history[-1]
    cnt = sum(1 for t, d, *_ in history if d == dev and t > now - 60_000)
    cnt_claims = sum(1 for t, d, _, k, _c in history if d == dev and k is EventKind.CLAIM and t > now - 600_000)
    last_seen: dict[str, int] = {}
    for t, d, a, *_ in history:
        if d == dev:
            last_seen[a] = max(last_seen.get(a, t), t)
    dist = sum(1 for t in last_seen.values() if t > now - 120_000)
    pair = 0 if camp is None else sum(1 for t, d, _, _, c in history if d == dev and c == camp and t > now - 300_000)
    mine = [t for t, _, a, *_ in history if a == acct]
    # first seen: forgotten after 200 s of silence
    first = mine[0]
    for prev, cur in itertools.pairwise(mine):
        if cur - prev >= 200_000:
            first = cur
    first_s = (now - first) // 1000
    # gaps: the last GAP_HISTORY stamps since the last silence of >= 100 s
    recent = [mine[0]]
    for prev, cur in itertools.pairwise(mine):
        recent = [cur] if cur - prev >= 100_000 else [*recent, cur]
    gaps = gap_cv(recent[-GAP_HISTORY:])
    return [cnt, cnt_claims, dist, pair, first_s, gaps]


@settings(max_examples=150, deadline=None)
@given(events)
def test_memory_state_matches_brute_force(stream: list[tuple[int, str, str, EventKind, str | None]]) -> None:
    state = MemoryState(W)
    ts = 1_800_000_000_000
    history: list[tuple[int, str, str, EventKind, str | None]] = []
    for step, dev, acct, kind, camp in stream:
        ts += step
        history.append((ts, dev, acct, kind, camp))
        got = state.observe(ts, kind, {"device": dev, "account": acct, "campaign": camp})
        assert got == reference(history, ts)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10_000), min_size=3, max_size=7))
def test_gap_cv_is_scale_free_and_zero_for_constant_gaps(gaps: list[int]) -> None:
    stamps = [0]
    for g in gaps:
        stamps.append(stamps[-1] + g)
    mean = sum(gaps) / len(gaps)
    expected = round(100 * math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps)) / mean)
    assert abs(gap_cv(stamps) - expected) <= 1
    assert gap_cv([s * 3 for s in stamps]) == gap_cv(stamps)
    assert gap_cv([i * 1000 for i in range(len(stamps))]) == 0


def test_peek_does_not_change_state() -> None:
    state = MemoryState(W)
    ents = {"device": "d1", "account": "a1", "campaign": "c1"}
    state.observe(1_800_000_000_000, EventKind.CLAIM, ents)
    before = state.peek(1_800_000_001_000, ents)
    assert state.peek(1_800_000_001_000, ents) == before
    assert state.observe(1_800_000_001_000, EventKind.CLAIM, ents)[0] == before[0] + 1


def test_missing_entity_gives_neutral_values() -> None:
    state = MemoryState(W)
    got = state.observe(1_800_000_000_000, EventKind.CLAIM, {"device": None, "account": None, "campaign": None})
    assert got == [0, 0, 0, 0, 0, -1]


def test_counts_saturate_at_the_cap() -> None:
    w = (Window("cnt", WindowOp.COUNT, ("device",), 3600),)
    state = MemoryState(w)
    for i in range(MAX_ENTRIES + 50):
        value = state.observe(1_800_000_000_000 + i, EventKind.CLAIM, {"device": "d"})[0]
    assert value == MAX_ENTRIES


def test_memory_is_bounded_by_expiry() -> None:
    w = (Window("dist", WindowOp.DISTINCT, ("device",), 60, member="account"),
         Window("first", WindowOp.FIRST_SEEN, ("device",), 60))
    state = MemoryState(w)
    ts = 1_800_000_000_000
    for i in range(20_000):  # every event a new device, one per second
        ts += 1000
        state.observe(ts, EventKind.CLAIM, {"device": f"d{i}", "account": "a"})
    # only devices of the last minute (plus at most one sweep period) may be held
    assert all(n <= 60 + 64 + 1 for n in state.size().values()), state.size()


def test_first_seen_outlives_the_other_windows_of_its_key() -> None:
    w = (Window("cnt", WindowOp.COUNT, ("device",), 10), Window("first", WindowOp.FIRST_SEEN, ("device",), 1000))
    state = MemoryState(w)
    t0 = 1_800_000_000_000
    kind = EventKind.CLAIM
    assert state.observe(t0, kind, {"device": "d1"}) == [1, 0]
    for i in range(500):  # other devices for 100 s: sweeps retire d1's record
        state.observe(t0 + 1_000 + i * 200, kind, {"device": f"x{i}"})
    assert state.size()["device"] <= 50 + 64 + 1 and state.size()["device#retired"] >= 1
    assert state.peek(t0 + 400_000, {"device": "d1"}) == [0, 400]  # a peek keeps the retired entry
    assert state.observe(t0 + 500_000, kind, {"device": "d1"}) == [1, 500]  # revived: first seen is kept
    assert state.observe(t0 + 1_600_000, kind, {"device": "d1"}) == [1, 0]  # silent > 1000 s: forgotten
