"""Co-timing: accounts that start their sessions in the same few minutes, again and again.

A paid crowd (众包) acts on its leader's word: each instruction in the chat group sends dozens of real
people, on their own phones and networks, to the campaign within minutes. One member at one time looks
like anyone; the ring shows as a group of accounts that keep turning up *together* across separate
instructions. This is the lockstep idea of CopyCatch (Beutel, Xu, Guruswami, Palow, Faloutsos,
*CopyCatch: Stopping Group Attacks by Spotting Lockstep Behavior in Social Networks*, WWW 2013) with
time windows as the shared "pages": clean-room, on sparse matrices.

1. Session starts: an account's first event, and every event after ``gap_s`` of silence.
2. Account × window incidence, windows of ``window_s``. Windows busier than ``max_window_accounts``
   (default ``2·sqrt(N)`` for N accounts, at least 100) are skipped: two accounts meet by chance in two
   windows of ``d`` accounts about ``d² / N`` times, so only quieter windows say anything (the opening
   rush and the evening peak are left out; an instruction outside them is not).
3. Two accounts are tied when they start sessions in ``min_shared`` (2) or more common windows.
4. The ``min_core``-core of the tie graph (every account tied to at least ``min_core`` others that are
   tied as well) is clustered with Louvain; each group of ``min_size`` or more scores
   ``(1 - exp(-n / 8)) × (0.5 + 0.5 × min(1, 2 × density))``, density being the share of member pairs tied.

Genuine people who come back at the same time of day meet a few others by chance; they do not form a
dense core of dozens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sknetwork.topology import get_core_decomposition

from woolguard.gangs.communities import louvain_labels


@dataclass(frozen=True)
class CoTimingGroup:
    accounts: np.ndarray  # account codes (as given)
    score: float
    density: float
    windows: int  # windows in which two or more members started a session


def session_starts(account: np.ndarray, ts: np.ndarray, gap_s: int = 1800) -> tuple[np.ndarray, np.ndarray]:
    """``(account, ts)`` of each session start: an account's first event and each event after ``gap_s``
    seconds of silence. ``account`` integer codes, ``ts`` seconds."""
    account = np.asarray(account, dtype=np.int64)
    ts = np.asarray(ts, dtype=np.int64)
    if account.size == 0:
        return account, ts
    o = np.lexsort((ts, account))
    a, t = account[o], ts[o]
    start = np.r_[True, (a[1:] != a[:-1]) | (t[1:] - t[:-1] > gap_s)]
    return a[start], t[start]


def cotiming_groups(
    account: np.ndarray,
    ts: np.ndarray,
    *,
    window_s: int = 600,
    gap_s: int = 1800,
    min_shared: int = 2,
    min_core: int = 8,
    min_size: int = 5,
    max_window_accounts: int | None = None,
    seed: int = 0,
) -> list[CoTimingGroup]:
    """Groups of accounts (integer codes ``account``, event times ``ts`` in seconds) that start sessions
    together in ``min_shared`` or more quiet windows, see the module docstring."""
    sa, st = session_starts(account, ts, gap_s)
    if sa.size == 0:
        return []
    acc_codes, row = np.unique(sa, return_inverse=True)
    n = acc_codes.size
    win = (st - st.min()) // window_s
    a = sp.csr_matrix((np.ones(sa.size, dtype=np.float32), (row, win)), shape=(n, int(win.max()) + 1))
    a.data[:] = 1.0
    deg = np.asarray(a.sum(axis=0)).ravel()
    cap = max_window_accounts if max_window_accounts is not None else max(100, int(2 * np.sqrt(n)))
    quiet = (deg >= 2) & (deg <= cap)
    a = sp.csr_matrix(a[:, np.nonzero(quiet)[0]])
    if a.nnz == 0:
        return []
    shared = sp.csr_matrix(a @ a.T)
    shared.setdiag(0)
    shared.data = (shared.data >= min_shared).astype(np.float32)
    shared.eliminate_zeros()
    if shared.nnz == 0:
        return []
    core = get_core_decomposition(shared)
    keep = np.nonzero(core >= min_core)[0]
    if keep.size < min_size:
        return []
    sub = sp.csr_matrix(shared[keep][:, keep])
    labels = louvain_labels(sub, seed=seed)
    out = []
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(labels.max() + 2)) if labels.max() >= 0 else []
    for c in range(len(bounds) - 1):
        idx = order[bounds[c]:bounds[c + 1]]
        m = idx.size
        if m < min_size:
            continue
        ties = sub[idx][:, idx].nnz
        density = ties / (m * (m - 1))
        score = (1.0 - np.exp(-m / 8.0)) * (0.5 + 0.5 * min(1.0, 2.0 * density))
        rows = keep[idx]
        windows = int((np.asarray(a[rows].sum(axis=0)).ravel() >= 2).sum())
        out.append(CoTimingGroup(acc_codes[rows], float(score), float(density), windows))
    return out
