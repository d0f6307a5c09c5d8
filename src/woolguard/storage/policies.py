"""Policy versions: every saved policy document is kept; one version per policy is active.

Saving never overwrites: it adds version ``n + 1``. Activating a version deactivates the others in the
same transaction (a partial unique index makes two active versions impossible); rolling back activates
the newest version older than the active one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from woolguard.storage.database import Database
from woolguard.storage.schema import DEFAULT_TENANT, policies


@dataclass(frozen=True)
class PolicyVersion:
    policy_id: str
    version: int
    body: str
    active: bool
    created_at: datetime

    @property
    def ref(self) -> str:
        """``policy_id@version``, as decisions record it."""
        return f"{self.policy_id}@{self.version}"


def _version(row: Any) -> PolicyVersion:
    return PolicyVersion(row.policy_id, row.version, row.body, bool(row.active), row.created_at)


def _activate(conn: Connection, tenant: str, policy_id: str, version: int) -> None:
    c = policies.c
    mine = (c.tenant_id == tenant, c.policy_id == policy_id)
    found = conn.execute(select(c.id).where(*mine, c.version == version)).scalar()
    if found is None:
        raise LookupError(f"policy {policy_id}@{version} does not exist for tenant {tenant!r}")
    conn.execute(update(policies).where(*mine, c.active).values(active=False))
    conn.execute(update(policies).where(c.id == found).values(active=True))


def save_policy(db: Database, policy_id: str, body: str, *, tenant: str = DEFAULT_TENANT,
                activate: bool = False) -> PolicyVersion:
    """Store ``body`` as the next version of ``policy_id`` (and make it active if asked)."""
    c = policies.c
    for _attempt in range(5):
        try:
            with db.begin() as conn:
                latest = conn.execute(select(func.max(c.version)).where(
                    c.tenant_id == tenant, c.policy_id == policy_id)).scalar()
                version = (latest or 0) + 1
                conn.execute(policies.insert().values(tenant_id=tenant, policy_id=policy_id,
                                                      version=version, body=body, active=False))
                if activate:
                    _activate(conn, tenant, policy_id, version)
            return get_policy(db, policy_id, version, tenant=tenant)  # type: ignore[return-value]
        except IntegrityError:  # someone saved the same version number first: take the next one
            continue
    raise RuntimeError(f"could not save policy {policy_id!r}: too many concurrent saves")


def activate_policy(db: Database, policy_id: str, version: int, *, tenant: str = DEFAULT_TENANT) -> None:
    with db.begin() as conn:
        _activate(conn, tenant, policy_id, version)


def get_policy(db: Database, policy_id: str, version: int | None = None, *,
               tenant: str = DEFAULT_TENANT) -> PolicyVersion | None:
    """One version, or the active one when ``version`` is None."""
    c = policies.c
    where = [c.tenant_id == tenant, c.policy_id == policy_id]
    where.append(c.active if version is None else c.version == version)
    with db.connect() as conn:
        row = conn.execute(select(policies).where(*where)).first()
    return _version(row) if row is not None else None


def active_policy(db: Database, policy_id: str, *, tenant: str = DEFAULT_TENANT) -> PolicyVersion | None:
    return get_policy(db, policy_id, tenant=tenant)


def list_versions(db: Database, policy_id: str | None = None, *,
                  tenant: str = DEFAULT_TENANT) -> list[PolicyVersion]:
    """Versions oldest first (of one policy, or of all the tenant's policies)."""
    c = policies.c
    where = [c.tenant_id == tenant]
    if policy_id is not None:
        where.append(c.policy_id == policy_id)
    with db.connect() as conn:
        rows = conn.execute(select(policies).where(*where).order_by(c.policy_id, c.version))
        return [_version(r) for r in rows]


def rollback_policy(db: Database, policy_id: str, *, tenant: str = DEFAULT_TENANT) -> PolicyVersion:
    """Activate the newest version older than the active one; returns it."""
    c = policies.c
    mine = (c.tenant_id == tenant, c.policy_id == policy_id)
    with db.begin() as conn:
        current = conn.execute(select(c.version).where(*mine, c.active)).scalar()
        if current is None:
            raise LookupError(f"policy {policy_id!r} has no active version to roll back from")
        previous = conn.execute(select(func.max(c.version)).where(*mine, c.version < current)).scalar()
        if previous is None:
            raise LookupError(f"policy {policy_id}@{current} is the first version: nothing to roll back to")
        _activate(conn, tenant, policy_id, previous)
    return get_policy(db, policy_id, previous, tenant=tenant)  # type: ignore[return-value]
