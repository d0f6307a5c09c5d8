"""Growing a detected gang the way an analyst grows a ring from a seed.

A device farm rarely shows itself whole. Its number segments burst at the opening and in a busy shift,
which finds part of the ring; the accounts worked later, one handset at a time, carry a fresh forged
device, a fresh proxy exit and a number from the same few segments, and burst on nothing. One of them
shares a single weak value with one other account, which says little. What it shares with the *gang*
says more: a value (a 7-digit number segment, a device-trait fingerprint, an IP /24, a GPS point…)
whose other holders are mostly members of one detected gang, used within ``window_s`` of a member
using it. Evidence of account ``u`` against gang ``G``:

    E(u, G) = Σ_v idf(v) × share_G(v)   over u's values v used within window_s of a member of G using v,
    idf(v) = log(N / deg(v)) / log(N),  share_G(v) = (members of G holding v) / (other holders of v)

counting only values that at least ``min_members`` members of ``G`` hold. ``u`` joins the gang with
the most evidence when ``E ≥ min_evidence``. Rounds repeat (a joined account is a member for the next
round) until nothing joins or ``rounds`` is reached.

Why this holds on traffic we have not seen: a value popular in genuine traffic (a city's number
segment in a local campaign, a best-selling phone model, a carrier NAT range) has many holders outside
the gang, so its share is small and it adds little however often it is shared; a family or a shared
Wi-Fi is not a detected gang, so it has no members to attract anybody; and only identity gangs
(communities, lockstep bursts) grow, not invitation hubs or co-timing crowds, whose members share
nothing by design.
"""

from __future__ import annotations

import numpy as np


def grow_gangs(
    account: np.ndarray,
    value: np.ndarray,
    ts: np.ndarray,
    owner: np.ndarray,
    weight: np.ndarray | None = None,
    *,
    min_members: int = 2,
    min_evidence: float = 0.5,
    window_s: int = 3600,
    max_degree: int = 1000,
    rounds: int = 5,
) -> np.ndarray:
    """New owner per account: ``owner[i]`` is the gang index of account ``i`` or -1; ``account`` /
    ``value`` / ``ts`` are the links (integer codes, a value code unique per type and value; seconds).
    Accounts already owned keep their gang; unowned ones join a gang when their evidence is strong
    enough (see the module docstring). Returns a copy of ``owner``."""
    owner = np.asarray(owner, dtype=np.int64).copy()
    n = owner.size
    account = np.asarray(account, dtype=np.int64)
    value = np.asarray(value, dtype=np.int64)
    ts = np.asarray(ts, dtype=np.int64)
    weight = np.ones(account.size) if weight is None else np.asarray(weight, dtype=np.float64)
    if account.size == 0 or n == 0 or not (owner >= 0).any():
        return owner
    # one row per (value, account): first and last use
    o = np.lexsort((ts, account, value))
    v_s, a_s, t_s, w_s = value[o], account[o], ts[o], weight[o]
    new = np.r_[True, (v_s[1:] != v_s[:-1]) | (a_s[1:] != a_s[:-1])]
    start = np.nonzero(new)[0]
    pv, pa, pw = v_s[start], a_s[start], w_s[start]
    first = t_s[start]
    last = t_s[np.r_[start[1:], v_s.size] - 1]
    _, vinv, vdeg = np.unique(pv, return_inverse=True, return_counts=True)
    deg = vdeg[vinv]
    ok = (deg >= 2) & (deg <= max_degree)
    pv, pa, pw, first, last, deg, vinv = pv[ok], pa[ok], pw[ok], first[ok], last[ok], deg[ok], vinv[ok]
    if pv.size == 0:
        return owner
    n_acc = max(n, 2)
    idf = pw * np.log(n_acc / deg) / np.log(n_acc)
    # (value, account) rows are sorted by value: each value's holders are a contiguous run
    bounds = np.r_[0, np.nonzero(np.diff(vinv))[0] + 1, vinv.size]
    for _ in range(rounds):
        evidence: dict[tuple[int, int], float] = {}
        gang_of = owner[pa]
        # values with at least min_members owned holders, and at least one unowned holder
        owned = np.add.reduceat((gang_of >= 0).astype(np.int64), bounds[:-1])
        free = np.add.reduceat((gang_of < 0).astype(np.int64), bounds[:-1])
        for k in np.nonzero((owned >= min_members) & (free >= 1))[0].tolist():
            lo, hi = bounds[k], bounds[k + 1]
            g = gang_of[lo:hi]
            gangs, counts = np.unique(g[g >= 0], return_counts=True)
            for gi, cnt in zip(gangs.tolist(), counts.tolist(), strict=True):
                if cnt < min_members:
                    continue
                mem = np.nonzero(g == gi)[0] + lo
                m_first, m_last = first[mem], last[mem]
                for j in (np.nonzero(g < 0)[0] + lo).tolist():
                    # the member uses closest in time to this account's use of the value
                    gap = np.maximum(m_first - last[j], first[j] - m_last)
                    if gap.min() > window_s:
                        continue
                    share = cnt / (hi - lo - 1)
                    key = (int(pa[j]), gi)
                    evidence[key] = evidence.get(key, 0.0) + float(idf[j]) * share
        best: dict[int, tuple[float, int]] = {}
        for (a, gi), e in evidence.items():
            if e >= min_evidence and e > best.get(a, (0.0, -1))[0]:
                best[a] = (e, gi)
        if not best:
            break
        for a, (_e, gi) in best.items():
            owner[a] = gi
    return owner
