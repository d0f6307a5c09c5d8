"""Tenants and their API keys: create, issue, revoke, and resolve a presented key to its tenant.

A key is ``wg_`` + 32 random bytes (URL-safe base64). Only its SHA-256 is stored, with its first 10
characters as a name an operator can recognise; the key itself is shown once, when issued.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from woolguard.storage.database import Database
from woolguard.storage.schema import api_keys, tenants

KEY_PREFIX = "wg_"
PREFIX_LEN = 10
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_tenant(db: Database, tenant_id: str, name: str = "") -> None:
    if not TENANT_ID.match(tenant_id):
        raise ValueError(f"tenant id {tenant_id!r} must be lowercase letters, digits, '-' or '_' (1-63)")
    with db.begin() as conn:
        if conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is not None:
            raise ValueError(f"tenant {tenant_id!r} already exists")
        conn.execute(tenants.insert().values(id=tenant_id, name=name or tenant_id, disabled=False))


def list_tenants(db: Database) -> list[dict[str, Any]]:
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(tenants).order_by(tenants.c.id))]


def create_key(db: Database, tenant_id: str, name: str = "") -> str:
    """Issue a key for ``tenant_id``; returns the key (the only time it is ever seen)."""
    with db.begin() as conn:
        row = conn.execute(select(tenants.c.disabled).where(tenants.c.id == tenant_id)).first()
        if row is None:
            raise LookupError(f"tenant {tenant_id!r} does not exist")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        conn.execute(api_keys.insert().values(key_hash=hash_key(key), prefix=key[:PREFIX_LEN],
                                              tenant_id=tenant_id, name=name))
    return key


def revoke_key(db: Database, key_or_prefix: str) -> int:
    """Revoke a key given in full or by its prefix; returns how many keys were revoked."""
    c = api_keys.c
    cond = c.key_hash == hash_key(key_or_prefix) if len(key_or_prefix) > PREFIX_LEN else c.prefix == key_or_prefix
    with db.begin() as conn:
        return conn.execute(update(api_keys).where(cond, c.revoked_at.is_(None))
                            .values(revoked_at=func.now())).rowcount


def list_keys(db: Database, tenant_id: str | None = None) -> list[dict[str, Any]]:
    c = api_keys.c
    query = select(c.prefix, c.tenant_id, c.name, c.created_at, c.revoked_at).order_by(c.tenant_id, c.created_at)
    if tenant_id is not None:
        query = query.where(c.tenant_id == tenant_id)
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


@dataclass(slots=True)
class _Cached:
    tenant: str | None
    until: float


class KeyResolver:
    """Key → tenant, cached for ``ttl_s``. When the database is unreachable a cached answer is kept."""

    def __init__(self, db: Database, ttl_s: float = 5.0):
        self.db = db
        self.ttl_s = ttl_s
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def resolve(self, key: str) -> str | None:
        """The tenant of an active key, None for an unknown or revoked one. Raises when the DB is down
        and the key was never seen."""
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit.until > now:
            return hit.tenant
        try:
            tenant = self._lookup(digest)
        except Exception:
            if hit is not None:  # database down: keep serving what we knew
                return hit.tenant
            raise
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[digest] = _Cached(tenant, now + self.ttl_s)
        return tenant

    def forget(self, key_hash: str | None = None) -> None:
        with self._lock:
            if key_hash is None:
                self._cache.clear()
            else:
                self._cache.pop(key_hash, None)

    def _lookup(self, digest: str) -> str | None:
        c = api_keys.c
        query = (select(c.tenant_id).select_from(api_keys.join(tenants, tenants.c.id == c.tenant_id))
                 .where(c.key_hash == digest, c.revoked_at.is_(None), tenants.c.disabled.is_(False)))
        with self.db.connect() as conn:
            return conn.execute(query).scalar()
