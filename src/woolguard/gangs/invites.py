"""Invitation farms: one inviter fanning out to fresh, look-alike accounts.

A genuine inviter brings a few friends over weeks, with all kinds of phones. A farm account invites
dozens of accounts registered minutes before the invite, in a burst, from the same phone model or
number block. Each inviter gets a farm score from four parts, each in [0, 1]:

- fan-out: ``1 - exp(-children / fanout_scale)``;
- freshness: share of children whose account was younger than ``fresh_seconds`` when invited;
- look-alike: mean over trait columns of the share of children holding the most common value;
- burst: largest share of children invited within any ``burst_seconds`` window.

``score = fan-out × mean(available parts)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InviteFarm:
    inviter: object
    children: np.ndarray
    score: float
    fanout: float
    freshness: float
    lookalike: float
    burst: float
    first_ts: int
    last_ts: int


def _burst_share(ts: np.ndarray, window: int) -> float:
    ts = np.sort(ts)
    ends = np.searchsorted(ts, ts + window, side="right")
    return float((ends - np.arange(ts.size)).max() / ts.size)


def invite_farms(
    inviter: np.ndarray,
    invitee: np.ndarray,
    invite_ts: np.ndarray,
    invitee_created_ts: np.ndarray | None = None,
    invitee_traits: np.ndarray | None = None,
    *,
    min_children: int = 5,
    fanout_scale: float = 10.0,
    fresh_seconds: int = 86_400,
    burst_seconds: int = 3_600,
    min_score: float = 0.5,
) -> list[InviteFarm]:
    """Score every inviter with at least ``min_children`` invitees; return those above ``min_score``,
    highest first. ``invitee_traits`` is an (n_invites, k) array of categorical traits (device model,
    phone block, nickname pattern...) aligned with the invites."""
    inviter = np.asarray(inviter)
    invitee = np.asarray(invitee)
    invite_ts = np.asarray(invite_ts, dtype=np.int64)
    keys, code = np.unique(inviter, return_inverse=True)
    order = np.argsort(code, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(code, minlength=keys.size))]
    farms: list[InviteFarm] = []
    for k in np.nonzero(np.diff(bounds) >= min_children)[0]:
        idx = order[bounds[k] : bounds[k + 1]]
        n = idx.size
        fan = 1.0 - np.exp(-n / fanout_scale)
        parts = []
        fresh = look = float("nan")
        if invitee_created_ts is not None:
            age = invite_ts[idx] - np.asarray(invitee_created_ts, dtype=np.int64)[idx]
            fresh = float(np.mean(age <= fresh_seconds))
            parts.append(fresh)
        if invitee_traits is not None:
            traits = np.asarray(invitee_traits)[idx]
            traits = traits.reshape(n, -1)
            shares = []
            for j in range(traits.shape[1]):
                _, counts = np.unique(traits[:, j], return_counts=True)
                shares.append(counts.max() / n)
            look = float(np.mean(shares))
            parts.append(look)
        burst = _burst_share(invite_ts[idx], burst_seconds)
        parts.append(burst)
        score = float(fan * np.mean(parts))
        if score >= min_score:
            farms.append(
                InviteFarm(
                    inviter=keys[k],
                    children=invitee[idx],
                    score=score,
                    fanout=float(fan),
                    freshness=fresh,
                    lookalike=look,
                    burst=burst,
                    first_ts=int(invite_ts[idx].min()),
                    last_ts=int(invite_ts[idx].max()),
                )
            )
    farms.sort(key=lambda f: -f.score)
    return farms
