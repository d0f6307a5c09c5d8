"""Labels: feedback that an event or an account is fraud or genuine (reviews, complaints, gangs)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from woolguard.storage.database import Database
from woolguard.storage.schema import DEFAULT_TENANT, labels

TARGET_TYPES = ("event", "account")
LABELS = ("fraud", "genuine")


def add_label(db: Database, target_type: str, target_id: str, label: str, *, tenant: str = DEFAULT_TENANT,
              source: str = "", note: str = "", ts: int | None = None) -> int:
    """Record one label; returns its id. The latest label of a target wins when they disagree."""
    if target_type not in TARGET_TYPES:
        raise ValueError(f"target type {target_type!r} is not one of {', '.join(TARGET_TYPES)}")
    if label not in LABELS:
        raise ValueError(f"label {label!r} is not one of {', '.join(LABELS)}")
    with db.begin() as conn:
        return conn.execute(labels.insert().values(
            tenant_id=tenant, target_type=target_type, target_id=target_id, label=label, source=source,
            note=note, ts=int(time.time() * 1000) if ts is None else ts)).inserted_primary_key[0]


def list_labels(db: Database, tenant: str = DEFAULT_TENANT, *, target_type: str | None = None,
                target_id: str | None = None, since: int | None = None) -> list[dict[str, Any]]:
    """Labels oldest first."""
    c = labels.c
    where = [c.tenant_id == tenant]
    if target_type is not None:
        where.append(c.target_type == target_type)
    if target_id is not None:
        where.append(c.target_id == target_id)
    if since is not None:
        where.append(c.ts >= since)
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(labels).where(*where).order_by(c.ts, c.id))]


def latest_labels(db: Database, tenant: str = DEFAULT_TENANT, target_type: str = "account") -> dict[str, str]:
    """``{target_id: label}`` with each target's most recent label, for training."""
    return {row["target_id"]: row["label"] for row in list_labels(db, tenant, target_type=target_type)}
