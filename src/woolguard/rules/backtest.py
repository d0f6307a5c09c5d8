"""Backtest: replay a period of stored feature rows through a candidate policy (and/or model) and say, against
the active ones, what would change: claims caught, genuine friction, money saved, by rule and by reason.

The decision log keeps every feature of every decision, so a backtest never recomputes windows: it evaluates
rules over feature rows. Evaluation is vectorised with Polars. A rule's CEL expression is a pure function of the
features it reads, so it is run once per *distinct combination* of those values in the period (the same
memoisation as :meth:`woolguard.rules.policy.Policy.evaluate`, over the whole period at once) and the verdicts are
mapped back onto the rows with ``is_in`` (one read feature: its values; several: a 64-bit hash of the
combination, collisions being astronomically unlikely). Rules that read the same features share the distinct
combinations. Scores add up, levels come from the policy's thresholds and tier relief, outcomes from its level
actions and review holds (``review: true``), exactly as in :class:`woolguard.engine.Engine`; list hits are not
replayed (lists change over time).

Rows: a Polars frame with one column per feature the policies read, plus ``kind``, ``tier``, ``label`` (1 fraud,
0 genuine, -1 unknown) and ``value`` (money at stake, yuan). ``model_score`` is the stored one unless a candidate
model is given, whose scores replace it for the candidate side.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import polars as pl

from woolguard.events import PAYOUT_KINDS, Outcome
from woolguard.rules.policy import Policy

_OUTCOMES = [Outcome.PASS, Outcome.VERIFY, Outcome.REVIEW, Outcome.REJECT]
_OUTCOME_CODE = {o: i for i, o in enumerate(_OUTCOMES)}


def _py(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


class _Memo:
    """Distinct value combinations per tuple of features, shared by the rules that read them."""

    def __init__(self, df: pl.DataFrame):
        self.df = df
        self._uniq: dict[tuple[str, ...], pl.DataFrame] = {}

    def uniques(self, refs: tuple[str, ...]) -> pl.DataFrame:
        hit = self._uniq.get(refs)
        if hit is None:
            hit = self._uniq[refs] = self.df.select(refs).unique()
        return hit


def rule_masks(df: pl.DataFrame, policy: Policy, memo: _Memo | None = None) -> dict[str, np.ndarray]:
    """``{rule id: bool array}``: whether each rule fires on each row (its kinds included)."""
    memo = memo or _Memo(df)
    exprs: list[pl.Expr] = []
    ids: list[str] = []
    for rule in policy.rules:
        refs = tuple(rule.refs)
        program = policy.program_for(next(iter(rule.kinds))) if rule.kinds else None
        compiled = None
        if program is not None:
            compiled = next((c for c in program if c.rule.id == rule.id), None)
        if compiled is None:
            from woolguard.rules.policy import _compiled

            compiled = _compiled(rule)
        if not refs:
            verdict = compiled.program.execute({}) is True
            expr = pl.lit(verdict)
        else:
            uniq = memo.uniques(refs)
            rows = uniq.rows()
            true_rows = []
            for combo in rows:
                try:
                    if compiled.program.execute({n: _py(v) for n, v in zip(refs, combo, strict=True)}) is True:
                        true_rows.append(combo)
                except Exception:  # a rule error never fires (the engine logs it as engine.rule_error)
                    continue
            if len(refs) == 1:
                expr = pl.col(refs[0]).is_in(pl.Series([r[0] for r in true_rows], dtype=df.schema[refs[0]]).implode())
            elif not true_rows:
                expr = pl.lit(False)
            else:
                hashes = pl.DataFrame(true_rows, schema={n: df.schema[n] for n in refs}, orient="row").select(
                    pl.struct(refs).hash(7).alias("h"))["h"]
                expr = pl.struct(refs).hash(7).is_in(hashes.implode())
        if rule.kinds is not None:
            expr = expr & pl.col("kind").is_in([k.value for k in rule.kinds])
        exprs.append(expr.fill_null(False).alias(rule.id))
        ids.append(rule.id)
    fired = df.select(exprs) if exprs else pl.DataFrame()
    return {rid: fired[rid].to_numpy() for rid in ids}


def decide_rows(df: pl.DataFrame, policy: Policy, memo: _Memo | None = None) -> dict[str, Any]:
    """Score, level and outcome of every row under ``policy``, and each rule's firing mask."""
    masks = rule_masks(df, policy, memo)
    n = df.height
    score = np.zeros(n, dtype=np.int64)
    forced = np.zeros(n, dtype=np.int64)
    hold = np.zeros(n, dtype=bool)
    for rule in policy.rules:
        if rule.shadow:
            continue
        m = masks[rule.id]
        if rule.score:
            score += m * rule.score
        if rule.level:
            np.maximum(forced, np.where(m, rule.level, 0), out=forced)
        if rule.review:
            hold |= m
    eff = score.copy()
    if policy.tier_relief:
        tier = df["tier"].to_numpy()
        for t, relief in policy.tier_relief.items():
            eff[tier == t] -= relief
    level = np.zeros(n, dtype=np.int64)
    for i, cut in enumerate(policy.thresholds, start=1):
        level[eff >= cut] = i
    np.maximum(level, forced, out=level)
    table = np.array([_OUTCOME_CODE[policy.action(lv).outcome] for lv in range(5)], dtype=np.int8)
    outcome = table[level]
    # a rule with ``review: true`` holds a decision that would pass or verify for an analyst, as in the engine
    soft = (outcome == _OUTCOME_CODE[Outcome.PASS]) | (outcome == _OUTCOME_CODE[Outcome.VERIFY])
    outcome[hold & soft] = _OUTCOME_CODE[Outcome.REVIEW]
    return {"score": score, "level": level, "outcome": outcome, "masks": masks}


def _side(label: np.ndarray, value: np.ndarray, payout: np.ndarray, outcome: np.ndarray) -> dict[str, Any]:
    gang = payout & (label == 1)
    gen = payout & (label == 0)
    rej = outcome == _OUTCOME_CODE[Outcome.REJECT]
    chal = (outcome == _OUTCOME_CODE[Outcome.VERIFY]) | (outcome == _OUTCOME_CODE[Outcome.REVIEW])
    ng, nn = int(gang.sum()), int(gen.sum())

    def pct(a: np.ndarray, b: int) -> float:
        return round(100.0 * int(a.sum()) / b, 3) if b else 0.0

    return {
        "gang_claims": ng, "gang_rejected": int((gang & rej).sum()), "gang_challenged": int((gang & chal).sum()),
        "gang_rejected_pct": pct(gang & rej, ng), "gang_stopped_or_challenged_pct": pct(gang & (rej | chal), ng),
        "genuine_claims": nn, "genuine_rejected": int((gen & rej).sum()), "genuine_challenged": int((gen & chal).sum()),
        "genuine_rejected_pct": pct(gen & rej, nn), "genuine_friction_pct": pct(gen & (rej | chal), nn),
        "money_saved": round(float(value[gang & rej].sum()), 2),
        "money_challenged": round(float(value[gang & chal].sum()), 2),
        "genuine_value_rejected": round(float(value[gen & rej].sum()), 2),
    }


def backtest(df: pl.DataFrame, active: Policy, candidate: Policy, *, candidate_model_score: np.ndarray | None = None,
             reasons_of: dict[str, str] | None = None,
             candidate_actor_score: np.ndarray | None = None) -> dict[str, Any]:
    """What ``candidate`` (with ``candidate_model_score`` if given) changes against ``active`` over ``df``.

    ``candidate_actor_score``: the candidate model's ``model_actor_score`` (default: its ``model_score``). Rows
    logged before the actor score existed get their ``model_score`` as ``model_actor_score`` (what a model without
    context features gives)."""
    t0 = time.perf_counter()
    if "model_score" in df.columns and "model_actor_score" not in df.columns:
        df = df.with_columns(pl.col("model_score").alias("model_actor_score"))
    memo = _Memo(df)
    a = decide_rows(df, active, memo)
    cdf = df
    if candidate_model_score is not None:
        cms = np.asarray(candidate_model_score, dtype=np.int64)
        cas = cms if candidate_actor_score is None else np.asarray(candidate_actor_score, dtype=np.int64)
        cdf = df.with_columns(pl.Series("model_score", cms), pl.Series("model_actor_score", cas))
    c = decide_rows(cdf, candidate, memo if candidate_model_score is None else _Memo(cdf))
    label = df["label"].to_numpy() if "label" in df.columns else np.full(df.height, -1)
    value = df["value"].to_numpy() if "value" in df.columns else np.zeros(df.height)
    payout = df["kind"].is_in([k.value for k in PAYOUT_KINDS]).to_numpy()
    out: dict[str, Any] = {"events": df.height, "payout_events": int(payout.sum()),
                           "active": {"policy": active.ref, **_side(label, value, payout, a["outcome"])},
                           "candidate": {"policy": candidate.ref, **_side(label, value, payout, c["outcome"])}}
    out["delta"] = {k: round(out["candidate"][k] - out["active"][k], 3) for k in out["active"]
                    if isinstance(out["active"][k], int | float) and not isinstance(out["active"][k], bool)}
    changed = payout & (a["outcome"] != c["outcome"])
    moves: dict[str, int] = {}
    if changed.any():
        pairs = a["outcome"][changed].astype(np.int64) * 4 + c["outcome"][changed]
        for code, cnt in zip(*np.unique(pairs, return_counts=True), strict=True):
            moves[f"{_OUTCOMES[code // 4].value}->{_OUTCOMES[code % 4].value}"] = int(cnt)
    out["changed_outcomes"] = moves
    out["by_rule"] = _by_rule(a["masks"], c["masks"], active, candidate, label, payout, value)
    reasons_of = reasons_of or {}
    by_reason: dict[str, dict[str, int]] = {}
    for side, pol, res in (("active", active, a), ("candidate", candidate, c)):
        for rule in pol.rules:
            if rule.shadow:
                continue
            m = res["masks"][rule.id] & payout
            r = by_reason.setdefault(rule.reason, {})
            r[f"{side}_gang"] = r.get(f"{side}_gang", 0) + int((m & (label == 1)).sum())
            r[f"{side}_genuine"] = r.get(f"{side}_genuine", 0) + int((m & (label == 0)).sum())
    out["by_reason"] = by_reason
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _by_rule(am: dict[str, np.ndarray], cm: dict[str, np.ndarray], active: Policy, candidate: Policy,
             label: np.ndarray, payout: np.ndarray, value: np.ndarray) -> list[dict[str, Any]]:
    ids = list(dict.fromkeys([r.id for r in active.rules] + [r.id for r in candidate.rules]))
    rows = []
    for rid in ids:
        row: dict[str, Any] = {"rule": rid}
        for side, masks in (("active", am), ("candidate", cm)):
            m = masks.get(rid)
            if m is None:
                row[side] = None
                continue
            m = m & payout
            row[side] = {"gang": int((m & (label == 1)).sum()), "genuine": int((m & (label == 0)).sum()),
                         "value": round(float(value[m & (label == 1)].sum()), 2)}
        rows.append(row)
    return rows


def frame_from_table(tab: Any, names: Iterable[str]) -> pl.DataFrame:
    """A backtest frame from a :class:`woolguard.model.features.FeatureTable` (replayed or read back)."""
    cols: dict[str, Any] = {}
    for n in names:
        v = tab.columns[n]
        cols[n] = pl.Series(n, v)
    cols["kind"] = pl.Series("kind", tab.kind)
    cols["label"] = pl.Series("label", tab.label.astype(np.int8))
    cols["value"] = pl.Series("value", tab.value)
    cols["ts"] = pl.Series("ts", tab.ts)
    return pl.DataFrame(cols)


def frame_from_decision_log(db: Any, tenant: str = "default", since: int | None = None, until: int | None = None,
                            names: Iterable[str] | None = None) -> pl.DataFrame:
    """A backtest frame from the decision log: each decision's stored features, its kind and value, and a label
    (the latest account label from the labels table, else the recorded ``truth``, else -1)."""
    from woolguard.storage.decision_log import iter_decisions
    from woolguard.storage.labels import latest_labels

    acct_labels = latest_labels(db, tenant)
    rows: list[dict[str, Any]] = []
    for d in iter_decisions(db, tenant, since, until):
        f = dict(d["features"] or {})
        lab = acct_labels.get(d["account_id"])
        if lab is not None:
            label = 1 if lab == "fraud" else 0
        elif d.get("truth"):
            label = 0 if d["truth"] == "genuine" else 1
        else:
            label = -1
        f["kind"] = d["kind"]
        f["label"] = label
        f["value"] = (f.get("value_fen") or 0) / 100.0
        f["ts"] = d["ts"]
        rows.append(f)
    df = pl.DataFrame(rows, infer_schema_length=None)
    if names is not None:
        keep = [n for n in dict.fromkeys([*names, "kind", "label", "value", "ts"]) if n in df.columns]
        df = df.select(keep)
    return df
