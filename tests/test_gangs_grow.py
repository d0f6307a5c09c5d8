"""Growing identity gangs: an unplaced account joins on combined evidence against the gang's members."""

from __future__ import annotations

import numpy as np

from woolguard.gangs.grow import grow_gangs

H = 3600


def links(rows: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, v, t = zip(*rows, strict=True)
    return np.array(a), np.array(v), np.array(t)


def background(n: int = 1000, first: int = 100) -> list[tuple[int, int, int]]:
    """Accounts ``first..n-1``, each with a value of its own (an unshared number segment)."""
    return [(i, 10_000 + i, 0) for i in range(first, n)]


def test_account_on_the_gangs_segment_in_its_shift_joins_later_one_does_not():
    owner = np.full(1000, -1)
    owner[:6] = 0  # a detected farm: six accounts on segment 1
    rows = [(i, 1, 100 + 60 * i) for i in range(6)]
    rows += [(6, 1, 900), (7, 1, 900 + 3 * 86_400)]  # the same segment in the shift, and three days later
    grown = grow_gangs(*links(rows + background()), owner)
    assert grown[6] == 0 and grown[7] == -1
    assert (grown[:6] == 0).all() and (grown[8:] == -1).all()


def test_value_mostly_held_outside_the_gang_pulls_nobody():
    # a local campaign: segment 1 is the city's, 40 genuine holders and 3 farm accounts
    owner = np.full(1000, -1)
    owner[:3] = 0
    rows = [(i, 1, 100 + i) for i in range(3)] + [(i, 1, 200 + 50 * i) for i in range(3, 43)]
    grown = grow_gangs(*links(rows + background(first=43)), owner)
    assert (grown[3:] == -1).all()


def test_surroundings_alone_are_not_enough_with_an_identity_value_they_are():
    # account 6 shares the gang's /24 (half weight) in its shift; account 7 the /24 and a segment
    owner = np.full(1000, -1)
    owner[:6] = 0
    rows = [(i, 1, 100 + 60 * i) for i in range(6)] + [(i, 2, 100 + 60 * i) for i in range(6)]
    rows += [(6, 2, 500), (7, 2, 500), (7, 1, 500)]
    a, v, t = links(rows + background())
    weight = np.where(v == 2, 0.5, 1.0)
    grown = grow_gangs(a, v, t, owner, weight)
    assert grown[6] == -1 and grown[7] == 0


def test_growth_spreads_over_rounds_and_a_lone_pair_never_seeds():
    # a ring on segments 1 and 2: members hold segment 1; accounts 5 and 6 use 1 and 2; 7 and 8 only 2
    owner = np.full(1000, -1)
    owner[:4] = 0
    rows = [(i, 1, 100 + i) for i in range(4)] + [(5, 1, 200), (5, 2, 205), (6, 1, 200), (6, 2, 210)]
    rows += [(7, 2, 220), (8, 2, 230)]
    rows += [(20, 3, 100), (21, 3, 100)]  # two unplaced accounts sharing a value: no gang to join
    grown = grow_gangs(*links(rows + background(first=30)), owner)
    assert (grown[5:9] == 0).all()
    assert grown[20] == -1 and grown[21] == -1
    once = grow_gangs(*links(rows + background(first=30)), owner, rounds=1)
    assert (once[5:7] == 0).all() and (once[7:9] == -1).all()
