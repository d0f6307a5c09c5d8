"""Gang runs: the gang table of each detector run, its evidence and members, per tenant.

:func:`run_gangs` reads a tenant's decision log (:func:`~woolguard.storage.decision_log.iter_decisions`),
turns every decided event into links (:class:`woolguard.gangs.links.LinkBuffer`), runs the detectors
(:func:`woolguard.gangs.campaign.detect_buffer`) and saves the result with :func:`save_gang_run`, in one
transaction: readers see a whole run or none of it. The newest run of a tenant is the one in force:
:func:`latest_gangs` lists its gangs and :func:`account_gang_map` gives the engines' ``gang_score`` /
``gang_size`` per account. :func:`list_gang_members` puts a gang's members on a review or block list.

Times are epoch ms, like the rest of storage (the detectors work in seconds; they are converted here).
Gang ids are unique per database; every read takes the tenant, so no tenant reaches another's gangs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select

from woolguard.storage.database import Database
from woolguard.storage.schema import DEFAULT_TENANT, gang_members, gang_runs, gangs

if TYPE_CHECKING:  # the detectors pull numpy / scipy / scikit-network: imported only when a run is made
    from woolguard.gangs.campaign import CampaignGangs

#: Most timeline entries kept per gang (the detectors give at most 50).
MAX_TIMELINE = 200


def _attribute_rows(shared: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
    out: dict[str, int] = {}
    for a, n in shared:  # an invitation hub names its inviter first and may list it again
        out.setdefault(str(a), int(n))
    return [{"attribute": a, "members": n} for a, n in out.items()]


def save_gang_run(db: Database, found: CampaignGangs, *, tenant: str = DEFAULT_TENANT, since_ms: int | None = None,
                  until_ms: int | None = None, events: int = 0, seconds: float = 0.0, source: str = "",
                  params: dict[str, Any] | None = None) -> int:
    """Store a detector result (:class:`~woolguard.gangs.campaign.CampaignGangs`) as a new run of ``tenant``;
    returns the run id. Members get the account's hot-path ``(gang_score, gang_size)`` of this run."""
    engine_map = found.engine_map()
    members = {str(m) for g in found.gangs for m in g.members}
    run = {"tenant_id": tenant, "since_ms": since_ms, "until_ms": until_ms, "events": int(events),
           "accounts": len(found.accounts), "links": int(found.meta.get("links", 0)),
           "gangs": len(found.gangs), "members": len(members), "seconds": float(seconds), "source": source,
           "params": params or {}}
    with db.begin() as conn:
        run_id = conn.execute(insert(gang_runs).values(**run)).inserted_primary_key[0]
        for rank, g in enumerate(found.gangs):
            row = {"tenant_id": tenant, "run_id": run_id, "rank": rank, "detector": str(g.detector),
                   "size": int(g.size), "score": float(g.score),
                   "shared_attributes": _attribute_rows(g.shared_attributes),
                   "first_ts": int(g.first_ts) * 1000, "last_ts": int(g.last_ts) * 1000,
                   "money": round(float(g.money), 2),
                   "timeline": [{"ts": int(e.ts) * 1000, "account": str(e.account), "attribute": str(e.attribute)}
                                for e in g.timeline[:MAX_TIMELINE]]}
            gang_id = conn.execute(insert(gangs).values(**row)).inserted_primary_key[0]
            accts = sorted({str(m) for m in g.members})
            if accts:
                conn.execute(insert(gang_members), [
                    {"gang_id": gang_id, "account_id": a, "tenant_id": tenant, "run_id": run_id,
                     "gang_score": engine_map.get(a, (0, 0))[0], "gang_size": engine_map.get(a, (0, 0))[1]}
                    for a in accts])
    return int(run_id)


def run_gangs(db: Database, tenant: str = DEFAULT_TENANT, *, since_ms: int | None = None,
              until_ms: int | None = None, source: str = "", **detect_kw: Any) -> dict[str, Any]:
    """Detect gangs in ``tenant``'s decision log between ``since_ms`` (inclusive) and ``until_ms``
    (exclusive), save the run and return it (:func:`get_run`). ``detect_kw`` go to ``detect_buffer``."""
    from woolguard.gangs.campaign import detect_buffer
    from woolguard.gangs.links import LinkBuffer

    t0 = time.perf_counter()
    buf = LinkBuffer()
    for row in _decided_events(db, tenant, since_ms, until_ms):
        buf.add(row)
    found = detect_buffer(buf, **detect_kw)
    seconds = time.perf_counter() - t0
    run_id = save_gang_run(db, found, tenant=tenant, since_ms=since_ms, until_ms=until_ms, events=buf.events,
                           seconds=seconds, source=source, params={k: _plain(v) for k, v in detect_kw.items()})
    run = get_run(db, tenant, run_id)
    assert run is not None
    return run


def _decided_events(db: Database, tenant: str, since_ms: int | None, until_ms: int | None) -> Iterable[Any]:
    from woolguard.storage.decision_log import iter_decisions

    for row in iter_decisions(db, tenant, since=since_ms, until=until_ms):
        ev = row["event"]
        if ev:
            yield ev


def _plain(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool | type(None)) else str(v)


def _run_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


def get_run(db: Database, tenant: str, run_id: int) -> dict[str, Any] | None:
    c = gang_runs.c
    with db.connect() as conn:
        row = conn.execute(select(gang_runs).where(c.tenant_id == tenant, c.id == run_id)).first()
    return _run_dict(row) if row is not None else None


def latest_run(db: Database, tenant: str = DEFAULT_TENANT) -> dict[str, Any] | None:
    """The tenant's newest run (the one in force), or None."""
    c = gang_runs.c
    with db.connect() as conn:
        row = conn.execute(select(gang_runs).where(c.tenant_id == tenant).order_by(c.id.desc()).limit(1)).first()
    return _run_dict(row) if row is not None else None


def list_runs(db: Database, tenant: str = DEFAULT_TENANT, limit: int = 20) -> list[dict[str, Any]]:
    """The tenant's runs, newest first."""
    c = gang_runs.c
    with db.connect() as conn:
        rows = conn.execute(select(gang_runs).where(c.tenant_id == tenant).order_by(c.id.desc()).limit(limit))
        return [_run_dict(r) for r in rows]


def latest_run_ids(db: Database) -> dict[str, int]:
    """``tenant -> newest run id`` for every tenant with a run (one cheap query; the service's poll)."""
    c = gang_runs.c
    with db.connect() as conn:
        return {t: int(i) for t, i in conn.execute(select(c.tenant_id, func.max(c.id)).group_by(c.tenant_id))}


def latest_gangs(db: Database, tenant: str = DEFAULT_TENANT, *, run_id: int | None = None,
                 detector: str | None = None, min_score: float = 0.0, limit: int | None = None) -> list[dict[str, Any]]:
    """The gangs of the tenant's newest run (or of ``run_id``), strongest first, without members."""
    if run_id is None:
        run = latest_run(db, tenant)
        if run is None:
            return []
        run_id = run["id"]
    c = gangs.c
    where = [c.tenant_id == tenant, c.run_id == run_id]
    if detector is not None:
        where.append(c.detector == detector)
    if min_score > 0:
        where.append(c.score >= min_score)
    query = select(gangs).where(*where).order_by(c.rank)
    if limit is not None:
        query = query.limit(limit)
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def get_gang(db: Database, tenant: str, gang_id: int, *, members: bool = True) -> dict[str, Any] | None:
    """One gang of ``tenant`` with its evidence and (``members=True``) its members, or None."""
    c = gangs.c
    with db.connect() as conn:
        row = conn.execute(select(gangs).where(c.tenant_id == tenant, c.id == gang_id)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        if members:
            m = gang_members.c
            out["members"] = [dict(r._mapping) for r in conn.execute(
                select(m.account_id, m.gang_score, m.gang_size)
                .where(m.tenant_id == tenant, m.gang_id == gang_id).order_by(m.account_id))]
    return out


def gang_member_ids(db: Database, tenant: str, gang_id: int) -> list[str] | None:
    """The account ids of a gang of ``tenant`` (None when the tenant has no such gang)."""
    g = get_gang(db, tenant, gang_id)
    return None if g is None else [r["account_id"] for r in g["members"]]


def account_gang_map(db: Database, tenant: str = DEFAULT_TENANT,
                     run_id: int | None = None) -> dict[str, tuple[int, int]]:
    """``account -> (gang_score 0-100, gang_size)`` from the tenant's newest run (or ``run_id``): what
    :attr:`woolguard.engine.Engine.gangs` reads. Empty when the tenant has no run."""
    m = gang_members.c
    if run_id is None:
        c = gang_runs.c
        sub = select(func.max(c.id)).where(c.tenant_id == tenant).scalar_subquery()
        where = [m.tenant_id == tenant, m.run_id == sub]
    else:
        where = [m.tenant_id == tenant, m.run_id == run_id]
    out: dict[str, tuple[int, int]] = {}
    with db.connect() as conn:
        for acct, score, size in conn.execute(select(m.account_id, m.gang_score, m.gang_size).where(*where)):
            old = out.get(acct)
            if old is None or (score, size) > old:
                out[acct] = (int(score), int(size))
    return out


def list_gang_members(db: Database, tenant: str, gang_id: int, list_kind: str, *, ttl_ms: int | None = None,
                      reason: str | None = None, campaign_id: str | None = None, created_by: str = "gangs",
                      now_ms: int | None = None) -> list[int] | None:
    """Put every member account of a gang on the ``review`` or ``block`` list (reason ``gang <id>`` unless
    given); returns the entry ids, or None when ``tenant`` has no such gang. Re-listing refreshes."""
    from woolguard.storage.lists import add_entry

    if list_kind not in ("review", "block"):
        raise ValueError(f"a gang goes on the review or block list, not {list_kind!r}")
    members = gang_member_ids(db, tenant, gang_id)
    if members is None:
        return None
    why = reason or f"gang {gang_id}"
    return [add_entry(db, list_kind, "account", a, tenant=tenant, campaign_id=campaign_id, reason=why,
                      ttl_ms=ttl_ms, created_by=created_by, now_ms=now_ms) for a in members]
