"""Co-timing groups: a crowd that keeps starting sessions in the same quiet windows is found; people who
come back at their usual hour, or who all arrive in the opening rush, are not."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from woolguard.gangs.cotiming import cotiming_groups, session_starts

DAY = 86_400


def population(seed: int, crowd: int = 30, genuine: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    acc, ts = [], []
    for u in range(genuine):  # 1-3 sessions at random times over 3 days, a third return at the same hour
        t = int(rng.integers(0, 3 * DAY))
        for d in range(int(rng.integers(1, 4))):
            acc += [u, u]
            when = t + d * DAY if rng.random() < 0.33 else int(rng.integers(0, 3 * DAY))
            ts += [when, when + 30]
    rush = 2000  # everyone arrives within minutes of the opening
    acc += list(range(rush))
    ts += list(rng.integers(0, 600, rush))
    for k in range(crowd):  # each member answers 4 of 5 instructions, within 10 minutes
        for t0 in (5 * 3600, 30 * 3600, 52 * 3600, 58 * 3600, 70 * 3600):
            if rng.random() < 0.8:
                t = t0 + int(rng.integers(20, 400))
                acc += [genuine + k] * 3
                ts += [t, t + 6, t + 12]
    return np.asarray(acc), np.asarray(ts)


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 10_000))
def test_a_crowd_is_found_and_genuine_people_are_not(seed: int) -> None:
    acc, ts = population(seed)
    groups = cotiming_groups(acc, ts)
    found = np.concatenate([g.accounts for g in groups]) if groups else np.array([], dtype=int)
    crowd = found[found >= 3000]
    # members answer each instruction with p = 0.8: a few answer only 2 or 3 of the 5 and are weakly tied;
    # the crowd as a group must be found at the paid-crowd recall goal (>= 80 %), seeds 0-1299 all give >= 25
    assert crowd.size >= 0.8 * 30
    assert (found < 3000).sum() <= 3  # a stray returner at most
    assert all(0 < g.score <= 1 and g.windows >= 2 for g in groups)


def test_without_a_crowd_nothing_is_found() -> None:
    acc, ts = population(1, crowd=0)
    assert cotiming_groups(acc, ts) == []


def test_session_starts_split_on_silence() -> None:
    a, t = session_starts(np.array([2, 1, 1, 1, 2]), np.array([50, 0, 100, 4000, 60]), gap_s=1800)
    assert a.tolist() == [1, 1, 2] and t.tolist() == [0, 4000, 50]
    assert session_starts(np.array([], dtype=int), np.array([], dtype=int))[0].size == 0
