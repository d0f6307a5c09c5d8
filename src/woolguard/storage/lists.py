"""Block, allow and review lists: which accounts, devices, IPs, phone blocks... are listed, until when.

An entry belongs to one campaign or, with ``campaign_id=None``, to all of them. Times are epoch ms and
``now_ms`` can be passed in (the simulator runs on its own clock); expired entries are never returned.
Adding a value that is already on the same list and campaign refreshes its reason and expiry.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, or_, select, update

from woolguard.storage.database import Database
from woolguard.storage.schema import DEFAULT_TENANT
from woolguard.storage.schema import list_entries as _entries

LIST_KINDS = ("block", "allow", "review")
#: The entity types the engine looks up; others are accepted (lowercase words) for custom rules.
ENTITY_TYPES = ("account", "device", "ip", "ip24", "phone", "phone_block", "phone_prefix", "payment",
                "address", "store", "code")
_ENTITY_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _now(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms


def _check(list_kind: str, entity_type: str) -> None:
    if list_kind not in LIST_KINDS:
        raise ValueError(f"list kind {list_kind!r} is not one of {', '.join(LIST_KINDS)}")
    if not _ENTITY_TYPE.match(entity_type):
        raise ValueError(f"entity type {entity_type!r} is not a lowercase word such as "
                         f"{', '.join(ENTITY_TYPES[:6])}")


def _same(tenant: str, list_kind: str, entity_type: str, value: str, campaign_id: str | None) -> list[Any]:
    c = _entries.c
    return [c.tenant_id == tenant, c.list_kind == list_kind, c.entity_type == entity_type, c.value == value,
            c.campaign_id.is_(None) if campaign_id is None else c.campaign_id == campaign_id]


def _active(now: int) -> Any:
    c = _entries.c
    return or_(c.expires_at.is_(None), c.expires_at > now)


def add_entry(db: Database, list_kind: str, entity_type: str, value: str, *,
              tenant: str = DEFAULT_TENANT, campaign_id: str | None = None, reason: str = "",
              ttl_ms: int | None = None, expires_at: int | None = None, created_by: str = "",
              now_ms: int | None = None) -> int:
    """Put ``value`` on a list (until ``expires_at``, or for ``ttl_ms``); returns the entry id."""
    _check(list_kind, entity_type)
    if ttl_ms is not None:
        expires_at = _now(now_ms) + ttl_ms
    fields = {"reason": reason, "expires_at": expires_at, "created_by": created_by}
    where = _same(tenant, list_kind, entity_type, value, campaign_id)
    with db.begin() as conn:
        found = conn.execute(select(_entries.c.id).where(*where)).scalar()
        if found is not None:
            conn.execute(update(_entries).where(_entries.c.id == found).values(**fields))
            return found
        return conn.execute(_entries.insert().values(
            tenant_id=tenant, list_kind=list_kind, entity_type=entity_type, value=value,
            campaign_id=campaign_id, **fields)).inserted_primary_key[0]


def remove_entry(db: Database, list_kind: str, entity_type: str, value: str, *,
                 tenant: str = DEFAULT_TENANT, campaign_id: str | None = None) -> bool:
    """Take ``value`` off a list; True when it was there."""
    with db.begin() as conn:
        result = conn.execute(delete(_entries).where(*_same(tenant, list_kind, entity_type, value,
                                                                campaign_id)))
        return result.rowcount > 0


def list_entries(db: Database, tenant: str = DEFAULT_TENANT, *, list_kind: str | None = None,
                     entity_type: str | None = None, campaign_id: str | None = None,
                     include_global: bool = True, now_ms: int | None = None) -> list[dict[str, Any]]:
    """Entries that have not expired; ``campaign_id`` selects that campaign's (plus global ones)."""
    c = _entries.c
    where = [c.tenant_id == tenant, _active(_now(now_ms))]
    if list_kind is not None:
        where.append(c.list_kind == list_kind)
    if entity_type is not None:
        where.append(c.entity_type == entity_type)
    if campaign_id is not None:
        where.append(or_(c.campaign_id == campaign_id, c.campaign_id.is_(None)) if include_global
                     else c.campaign_id == campaign_id)
    with db.connect() as conn:
        rows = conn.execute(select(_entries).where(*where).order_by(c.id))
        return [dict(r._mapping) for r in rows]


def lookup(db: Database, entity_type: str, values: Sequence[str], *, tenant: str = DEFAULT_TENANT,
           campaign_id: str | None = None, now_ms: int | None = None) -> list[dict[str, Any]]:
    """Active entries (any list kind) for these values, global ones and ``campaign_id``'s."""
    c = _entries.c
    scope = c.campaign_id.is_(None) if campaign_id is None else or_(c.campaign_id.is_(None),
                                                                      c.campaign_id == campaign_id)
    query = select(_entries).where(c.tenant_id == tenant, c.entity_type == entity_type,
                                       c.value.in_(list(values)), scope, _active(_now(now_ms)))
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query.order_by(c.id))]


def purge_expired(db: Database, tenant: str | None = None, *, now_ms: int | None = None) -> int:
    """Delete expired entries (of one tenant, or all); returns how many."""
    c = _entries.c
    where = [c.expires_at.is_not(None), c.expires_at <= _now(now_ms)]
    if tenant is not None:
        where.append(c.tenant_id == tenant)
    with db.begin() as conn:
        return conn.execute(delete(_entries).where(*where)).rowcount
