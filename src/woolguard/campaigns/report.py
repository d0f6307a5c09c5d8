"""Savings per campaign and day, and attack pressure across campaigns and tenants, from the ledger.

Savings (:func:`savings`): per campaign and day, money paid (prizes; coupon redemptions net of refunds),
split into paid to accounts later labelled fraud, to accounts placed in gangs (the ``gang_members`` table,
when the gangs schema is present; else that column is ``None``), and the rest; money refused (saved), and
the estimate of refusals that hit genuine users. Every figure sums ledger rows, so each can be traced to
the rows and from them to the decisions that caused them.

Genuine refusals are estimated per refused row from the best evidence available: the account's (or the
event's) latest label; else the simulated ground truth in the decision log (``decisions.truth``, set only
for simulated traffic); else the genuine share among the campaign's refusals whose status is known. With no
evidence at all the estimate is 0 and ``refused_unknown_fen`` says how much was unjudged.

Pressure (:func:`pressure`): for an operator hosting many brands, campaigns (and tenants) ranked by
the money attacks aimed at them (refused + held + paid to fraud / gang accounts), with the share and volume
of rejected and gang traffic in the decision log, and the trend (last day against the window's daily mean).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from typing import IO, Any

from sqlalchemy import Connection, func, inspect, select

from woolguard.storage.schema import campaigns_t, decisions, labels, ledger

SAVINGS_FIELDS = ("campaign_id", "day", "paid_fen", "paid_count", "paid_genuine_fen", "paid_fraud_fen",
                  "paid_gang_fen", "refused_fen", "refused_count", "refused_genuine_est_fen",
                  "refused_genuine_labelled_fen", "refused_unknown_fen", "saved_net_fen", "held_fen",
                  "issued_fen")
PAID_KINDS = ("paid", "redeemed", "reversed")


def _latest_labels(conn: Connection, tenant: str | None) -> dict[tuple[str, str, str], str]:
    """``{(tenant, target_type, target_id): label}``, the latest label of each target."""
    q = select(labels.c.tenant_id, labels.c.target_type, labels.c.target_id, labels.c.label)
    if tenant is not None:
        q = q.where(labels.c.tenant_id == tenant)
    return {(t, tt, ti): lb for t, tt, ti, lb in conn.execute(q.order_by(labels.c.ts, labels.c.id))}


def gang_accounts(conn: Connection, tenant: str | None) -> set[tuple[str, str]] | None:
    """``{(tenant, account)}`` placed in a gang by each tenant's latest gang run; None without the gangs schema."""
    insp = inspect(conn)
    if not insp.has_table("gang_members"):
        return None
    cols = {c["name"] for c in insp.get_columns("gang_members")}
    if not {"tenant_id", "account_id"} <= cols:
        return None
    from sqlalchemy import column, table

    gm = table("gang_members", column("tenant_id"), column("account_id"), column("run_id"))
    q = select(gm.c.tenant_id, gm.c.account_id)
    if tenant is not None:
        q = q.where(gm.c.tenant_id == tenant)
    if "run_id" in cols:  # only each tenant's latest run
        latest = select(gm.c.tenant_id.label("t"), func.max(gm.c.run_id).label("r")).group_by(gm.c.tenant_id).subquery()
        q = q.join(latest, (latest.c.t == gm.c.tenant_id) & (latest.c.r == gm.c.run_id))
    return {(t, a) for t, a in conn.execute(q)}


def _truths(conn: Connection, tenant: str | None, decision_ids: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    ids = list(decision_ids)
    for i in range(0, len(ids), 500):
        q = select(decisions.c.id, decisions.c.truth).where(decisions.c.id.in_(ids[i:i + 500]),
                                                            decisions.c.truth.is_not(None))
        if tenant is not None:
            q = q.where(decisions.c.tenant_id == tenant)
        out.update(dict(conn.execute(q).all()))
    return out


def _label_of(lbl: dict[tuple[str, str, str], str], tenant: str, row: Any) -> str | None:
    if row.event_id is not None and (tenant, "event", row.event_id) in lbl:
        return lbl[(tenant, "event", row.event_id)]
    if row.account_id is not None:
        return lbl.get((tenant, "account", row.account_id))
    return None


def savings(conn: Connection, tenant: str, campaign_id: str | None = None, since_day: int | None = None,
            until_day: int | None = None) -> list[dict[str, Any]]:
    """One row per campaign and day (see the module doc), oldest first."""
    q = select(ledger.c.campaign_id, ledger.c.day, ledger.c.kind, ledger.c.amount_fen, ledger.c.account_id,
               ledger.c.event_id, ledger.c.decision_id).where(ledger.c.tenant_id == tenant)
    if campaign_id is not None:
        q = q.where(ledger.c.campaign_id == campaign_id)
    if since_day is not None:
        q = q.where(ledger.c.day >= since_day)
    if until_day is not None:
        q = q.where(ledger.c.day <= until_day)
    rows = conn.execute(q).all()
    lbl = _latest_labels(conn, tenant)
    gangs = gang_accounts(conn, tenant)
    truths = _truths(conn, tenant, {r.decision_id for r in rows if r.kind == "refused" and r.decision_id})
    out: dict[tuple[str, int], dict[str, Any]] = {}
    unknown: list[tuple[tuple[str, int], int]] = []
    known: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # campaign -> [genuine fen, judged fen]
    for r in rows:
        key = (r.campaign_id, r.day)
        agg = out.get(key)
        if agg is None:
            agg = out[key] = dict.fromkeys(SAVINGS_FIELDS, 0)
            agg["campaign_id"], agg["day"] = key
            agg["paid_gang_fen"] = None if gangs is None else 0
        amount = r.amount_fen
        if r.kind in PAID_KINDS:
            agg["paid_fen"] += amount
            agg["paid_count"] += 1 if r.kind != "reversed" else -1
            fraud = _label_of(lbl, tenant, r) == "fraud"
            gang = gangs is not None and (tenant, r.account_id) in gangs
            if fraud:
                agg["paid_fraud_fen"] += amount
            if gang:
                agg["paid_gang_fen"] += amount
            if not fraud and not gang:
                agg["paid_genuine_fen"] += amount
        elif r.kind == "refused":
            agg["refused_fen"] += amount
            agg["refused_count"] += 1
            label = _label_of(lbl, tenant, r)
            if label is not None:
                genuine = label == "genuine"
                if genuine:
                    agg["refused_genuine_labelled_fen"] += amount
            elif r.decision_id in truths:
                genuine = truths[r.decision_id] == "genuine"
            else:
                unknown.append((key, amount))
                continue
            k = known[r.campaign_id]
            k[1] += amount
            if genuine:
                k[0] += amount
                agg["refused_genuine_est_fen"] += amount
        elif r.kind == "held":
            agg["held_fen"] += amount
        elif r.kind in ("issued", "released"):  # net of coupons that expired unredeemed
            agg["issued_fen"] += amount
    for key, amount in unknown:
        agg = out[key]
        agg["refused_unknown_fen"] += amount
        genuine_fen, judged_fen = known.get(key[0], (0, 0))
        if judged_fen:
            agg["refused_genuine_est_fen"] += round(amount * genuine_fen / judged_fen)
    for agg in out.values():
        agg["saved_net_fen"] = agg["refused_fen"] - agg["refused_genuine_est_fen"]
    return [out[k] for k in sorted(out)]


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The savings rows summed over days (and campaigns)."""
    out: dict[str, Any] = {}
    for f in SAVINGS_FIELDS[2:]:
        vals = [r[f] for r in rows]
        out[f] = None if vals and all(v is None for v in vals) else sum(v or 0 for v in vals)
    return out


def write_savings_csv(out: IO[str], rows: list[dict[str, Any]]) -> None:
    w = csv.DictWriter(out, fieldnames=SAVINGS_FIELDS)
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r[k] is None else r[k] for k in SAVINGS_FIELDS})


# ---------------------------------------------------------------------------------------------------
# Attack pressure


def pressure(conn: Connection, tenant: str | None = None, since_ms: int | None = None,
             until_ms: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """``{"campaigns": [...], "tenants": [...]}``, each ranked by money targeted, then rejected share."""
    dq = select(decisions.c.tenant_id, decisions.c.campaign_id, decisions.c.outcome, decisions.c.account_id,
                decisions.c.ts).where(decisions.c.campaign_id.is_not(None))
    lq = select(ledger.c.tenant_id, ledger.c.campaign_id, ledger.c.kind, ledger.c.amount_fen, ledger.c.account_id,
                ledger.c.event_id, ledger.c.ts)
    if tenant is not None:
        dq = dq.where(decisions.c.tenant_id == tenant)
        lq = lq.where(ledger.c.tenant_id == tenant)
    if since_ms is not None:
        dq = dq.where(decisions.c.ts >= since_ms)
        lq = lq.where(ledger.c.ts >= since_ms)
    if until_ms is not None:
        dq = dq.where(decisions.c.ts < until_ms)
        lq = lq.where(ledger.c.ts < until_ms)
    gangs = gang_accounts(conn, tenant) or set()
    lbl = _latest_labels(conn, tenant)
    known = {(r.tenant_id, r.id) for r in conn.execute(select(campaigns_t.c.tenant_id, campaigns_t.c.id))}

    def new() -> dict[str, Any]:
        return {"events": 0, "rejected": 0, "challenged": 0, "gang_events": 0, "money_targeted_fen": 0,
                "money_paid_fen": 0, "money_refused_fen": 0, "last_ts": 0, "first_ts": None, "_days": defaultdict(int)}

    camp: dict[tuple[str, str], dict[str, Any]] = defaultdict(new)
    for t, cid, outcome, account, ts in conn.execute(dq):
        a = camp[(t, cid)]
        a["events"] += 1
        hostile = outcome == "reject" or (t, account) in gangs
        if outcome == "reject":
            a["rejected"] += 1
        elif outcome in ("verify", "review"):
            a["challenged"] += 1
        if (t, account) in gangs:
            a["gang_events"] += 1
        if hostile:
            a["_days"][ts // 86_400_000] += 1
        a["last_ts"] = max(a["last_ts"], ts)
        a["first_ts"] = ts if a["first_ts"] is None else min(a["first_ts"], ts)
    for r in conn.execute(lq):
        a = camp[(r.tenant_id, r.campaign_id)]
        if r.kind == "refused":
            a["money_refused_fen"] += r.amount_fen
            a["money_targeted_fen"] += r.amount_fen
        elif r.kind in PAID_KINDS:
            a["money_paid_fen"] += r.amount_fen
            bad = (r.tenant_id, r.account_id) in gangs or lbl.get((r.tenant_id, "account", r.account_id)) == "fraud"
            if bad:
                a["money_targeted_fen"] += r.amount_fen
    rows = []
    for (t, cid), a in camp.items():
        days = a.pop("_days")
        last = max(days) if days else None
        mean = sum(days.values()) / max(1, (max(days) - min(days) + 1)) if days else 0.0
        a["trend"] = round(days[last] / mean, 3) if days and mean else None
        a["first_ts"] = a["first_ts"] or 0
        ev = a["events"]
        a["rejected_share"] = round(a["rejected"] / ev, 4) if ev else 0.0
        a["gang_share"] = round(a["gang_events"] / ev, 4) if ev else 0.0
        rows.append({"tenant_id": t, "campaign_id": cid, "known_campaign": (t, cid) in known, **a})
    key = lambda r: (-r["money_targeted_fen"], -r["rejected_share"], -r["rejected"])  # noqa: E731
    rows.sort(key=key)
    per_tenant: dict[str, dict[str, Any]] = {}
    for r in rows:
        p = per_tenant.setdefault(r["tenant_id"], {"tenant_id": r["tenant_id"], "campaigns": 0, "events": 0,
                                                   "rejected": 0, "gang_events": 0, "money_targeted_fen": 0,
                                                   "money_paid_fen": 0})
        p["campaigns"] += 1
        for f in ("events", "rejected", "gang_events", "money_targeted_fen", "money_paid_fen"):
            p[f] += r[f]
    tenants = list(per_tenant.values())
    for p in tenants:
        p["rejected_share"] = round(p["rejected"] / p["events"], 4) if p["events"] else 0.0
        p["gang_share"] = round(p["gang_events"] / p["events"], 4) if p["events"] else 0.0
    tenants.sort(key=key)
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    for i, p in enumerate(tenants, 1):
        p["rank"] = i
    return {"campaigns": rows, "tenants": tenants}
