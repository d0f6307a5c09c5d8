"""The policy that guards a campaign: its rules' ``policy`` (``policy_id`` or ``policy_id@version``) resolved
against the tenant's stored policies and loaded into an engine, so that the campaign's events are decided
with it (``Engine.set_policy(policy, campaign_id=...)``); other events keep the tenant's active policy.

``policy_id@N`` is that stored version; a bare ``policy_id`` is the tenant's active version of that policy,
else its latest version. A reference that resolves to nothing is refused when the campaign is created or
versioned (:func:`check_ref`, a :class:`~woolguard.campaigns.RulesError` naming ``$.policy``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select

from woolguard.campaigns.models import RulesError
from woolguard.storage.schema import campaign_versions, campaigns_t, policies

PolicyKey = tuple[str, int]


def parse_ref(ref: str) -> tuple[str, int | None]:
    pid, sep, version = ref.partition("@")
    if not pid or (sep and not version.isdigit()):
        raise RulesError(f"policy {ref!r} must be POLICY_ID or POLICY_ID@VERSION", "$.policy")
    return pid, int(version) if sep else None


def resolve(conn: Connection, tenant: str, ref: str) -> PolicyKey | None:
    """The stored (policy_id, version) ``ref`` names in ``tenant``, or None."""
    pid, version = parse_ref(ref)
    c = policies.c
    rows = conn.execute(select(c.version, c.active).where(c.tenant_id == tenant, c.policy_id == pid)).all()
    if version is not None:
        return (pid, version) if any(r.version == version for r in rows) else None
    if not rows:
        return None
    active = [r.version for r in rows if r.active]
    return pid, (active[0] if active else max(r.version for r in rows))


def check_ref(conn: Connection, tenant: str, ref: str | None) -> None:
    """Raise :class:`RulesError` (``$.policy``) if ``ref`` names no stored policy of the tenant."""
    if ref is not None and resolve(conn, tenant, ref) is None:
        raise RulesError(f"no stored policy {ref!r} in tenant {tenant!r} (upload it first: POST /v1/policies or "
                         "woolguard policy …)", "$.policy")


def campaign_policy_keys(conn: Connection, tenant: str) -> dict[str, PolicyKey]:
    """``{campaign_id: (policy_id, version)}`` for the tenant's campaigns whose current rules name a policy
    that resolves (one that does not is skipped: the tenant's policy decides that campaign's events)."""
    ct, cv = campaigns_t.c, campaign_versions.c
    q = (select(ct.id, cv.rules).join(campaign_versions, (cv.tenant_id == ct.tenant_id) & (cv.campaign_id == ct.id)
                                      & (cv.version == ct.version)).where(ct.tenant_id == tenant))
    out: dict[str, PolicyKey] = {}
    for cid, doc in conn.execute(q):
        ref = (doc or {}).get("policy")
        if not ref:
            continue
        try:
            key = resolve(conn, tenant, ref)
        except RulesError:
            key = None
        if key is not None:
            out[cid] = key
    return out


def load_campaign_policies(conn: Connection, tenant: str, engine: Any,
                           build: Callable[[Any, str, PolicyKey], Any] | None = None,
                           keys: dict[str, PolicyKey] | None = None) -> dict[str, PolicyKey]:
    """Load each campaign's own policy into ``engine`` (replacing what was there); returns the keys loaded.

    ``build(engine, body, key)`` makes a Policy from a stored body (default: ``engine.load_policy_text``)."""
    keys = campaign_policy_keys(conn, tenant) if keys is None else keys
    c = policies.c
    loaded: dict[str, Any] = {}
    cache: dict[PolicyKey, Any] = {}
    for cid, key in keys.items():
        if key not in cache:
            body = conn.execute(select(c.body).where(c.tenant_id == tenant, c.policy_id == key[0],
                                                     c.version == key[1])).scalar_one()
            if build is not None:
                cache[key] = build(engine, body, key)
            else:
                policy = engine.load_policy_text(body, f"{key[0]}@{key[1]}")
                policy.id, policy.version = key
                cache[key] = policy
        loaded[cid] = cache[key]
    engine.campaign_policies = loaded  # one assignment: a decision sees the old map or the new one
    return keys

