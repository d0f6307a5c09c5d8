"""Label feedback: what the labels known *at decision time* say about each entity of an event.

A risk system learns late whether a claim or an order was fraud (reviews, chargebacks, confirmed gangs): a label
reaches it ``delay`` after its event. For every event and every entity key (account, device, counterpart, ...)
:func:`label_feedback` gives what a production system could know at that moment: how many earlier events of that
key were labelled, how many of them were fraud, the smoothed fraud rate, and the same with exponential decay over
two half-lives (so that the rate follows drift). This is the causal form of target encoding (CatBoost's ordered
target statistics), and what replaces a raw high-cardinality categorical column.

The leakage rule, strictly: the label of event ``j`` is used for event ``i`` only when ``visible[j]`` and
``ts[j] + delay < ts[i]``. An event never sees its own label (``delay >= 0`` and the inequality is strict). The
caller sets ``visible``: a training split makes the test rows' labels invisible (``woolguard train`` does), so the
test period sees only labels of events before it (and, with ``test_feedback="delayed"``, its own events' labels
older than ``delay``, as a running system would).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: Pseudo-count pulling a key's rate towards the overall rate known at the time.
SMOOTHING = 5.0
STATS = ("lab_n", "lab_pos", "lab_rate")


def is_fraud_evidence(name: str) -> bool:
    """A feedback feature that counts or rates known fraud (``*_lab_pos``, ``*_lab_rate``, ``*_lab_rate_<half-life>``):
    training constrains the model to be monotone increasing in it (``train.monotone_increasing``)."""
    return name.endswith("_lab_pos") or name.endswith("_lab_rate") or "_lab_rate_" in name


def feedback_names(keys: Sequence[str], half_lives: Sequence[int], suffix: Sequence[str]) -> list[str]:
    out: list[str] = []
    for k in keys:
        out += [f"{k}_{s}" for s in STATS]
        for sfx in suffix[: len(half_lives)]:
            out += [f"{k}_lab_n_{sfx}", f"{k}_lab_rate_{sfx}"]
    return out


def label_feedback(ts: np.ndarray, label: np.ndarray, visible: np.ndarray, keys: Mapping[str, Sequence[str | None]],
                   *, delay_ms: int, half_lives_ms: Sequence[int] = (), half_life_names: Sequence[str] = ()
                   ) -> tuple[np.ndarray, list[str]]:
    """Feedback features (rows × (3 + 2·len(half_lives)) per key), rows in the input order.

    ``ts`` epoch ms, ``label`` 1/0/-1 (unlabelled), ``visible`` which rows' labels may ever be used,
    ``keys`` entity name -> one value per row (None: the row has no such entity).
    """
    if delay_ms < 0:
        raise ValueError("label delay must be >= 0")
    n = int(ts.shape[0])
    hl = [float(h) for h in half_lives_ms]
    names = feedback_names(list(keys), half_lives_ms, list(half_life_names) or [f"h{h // 1000}" for h in
                                                                                 half_lives_ms])
    per = 3 + 2 * len(hl)
    out = np.full((n, per * len(keys)), np.nan)
    order = np.argsort(ts, kind="stable")
    known = np.nonzero(visible & (label >= 0))[0]
    release = known[np.argsort(ts[known] + delay_ms, kind="stable")]
    release_ts = ts[release] + delay_ms
    cols = list(keys.values())
    state: list[dict[str, list]] = [{} for _ in cols]
    p = 0
    n_lab = 0
    n_pos = 0
    for i in order:
        t = ts[i]
        while p < release.size and release_ts[p] < t:
            j = release[p]
            p += 1
            tj = float(ts[j])
            yj = int(label[j])
            n_lab += 1
            n_pos += yj
            for q, col in enumerate(cols):
                k = col[j]
                if k is None:
                    continue
                s = state[q].get(k)
                if s is None:
                    s = state[q][k] = [0, 0, tj, [0.0] * len(hl), [0.0] * len(hl)]
                s[0] += 1
                s[1] += yj
                for h, life in enumerate(hl):
                    dec = 0.5 ** ((tj - s[2]) / life)
                    s[3][h] = s[3][h] * dec + 1.0
                    s[4][h] = s[4][h] * dec + yj
                s[2] = tj
        prior = (n_pos + 1.0) / (n_lab + 2.0)
        row = out[i]
        for q, col in enumerate(cols):
            b = per * q
            s = state[q].get(col[i]) if col[i] is not None else None
            if s is None:
                row[b:b + 3] = (0.0, 0.0, prior)
                for h in range(len(hl)):
                    row[b + 3 + 2 * h] = 0.0
                    row[b + 4 + 2 * h] = prior
                continue
            row[b] = s[0]
            row[b + 1] = s[1]
            row[b + 2] = (s[1] + SMOOTHING * prior) / (s[0] + SMOOTHING)
            for h, life in enumerate(hl):
                dec = 0.5 ** ((float(t) - s[2]) / life)
                c = s[3][h] * dec
                row[b + 3 + 2 * h] = c
                row[b + 4 + 2 * h] = (s[4][h] * dec + SMOOTHING * prior) / (c + SMOOTHING)
    return out, names
