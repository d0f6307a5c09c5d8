"""The tables woolguard keeps: the decision log, labels, lists, policy versions, tenants and API keys.

Every row carries ``tenant_id`` (``"default"`` for a single-brand install). Domain times (an event's
``ts``, a label's ``ts``, a list entry's ``expires_at``) are epoch milliseconds, the clock the engine and
the simulator use; ``created_at`` columns are the database's own wall-clock audit stamp (UTC).

The schema is created and changed only by the Alembic revisions in ``storage/migrations``; this module
is the model those revisions must match (a test compares them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DEFAULT_TENANT = "default"

#: JSON on SQLite, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar = {dict[str, Any]: JSONType, list[Any]: JSONType}


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, nullable=False, default="")
    created_at: Mapped[datetime] = _now()
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                           server_default=text("false"))


class ApiKey(Base):
    """An API key, stored only as a hash; ``prefix`` (its first characters) names it in the console."""

    __tablename__ = "api_keys"

    key_hash: Mapped[str] = mapped_column(String, primary_key=True)
    prefix: Mapped[str] = mapped_column(String, nullable=False)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String, nullable=False, default="")
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DecisionRow(Base):
    """The append-only decision log: one row per decided event, with every reason and feature."""

    __tablename__ = "decisions"

    id: Mapped[str] = mapped_column(String, primary_key=True)  # the decision_id
    tenant_id: Mapped[str] = mapped_column(String, nullable=False, default=DEFAULT_TENANT)
    event_id: Mapped[str] = mapped_column(String, nullable=False)
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    kind: Mapped[str] = mapped_column(String, nullable=False)
    campaign_id: Mapped[str | None] = mapped_column(String)
    account_id: Mapped[str] = mapped_column(String, nullable=False)
    device_id: Mapped[str | None] = mapped_column(String)
    ip: Mapped[str | None] = mapped_column(String)
    level: Mapped[int] = mapped_column(Integer, nullable=False)
    outcome: Mapped[str] = mapped_column(String, nullable=False)
    challenge: Mapped[str | None] = mapped_column(String)
    score: Mapped[int] = mapped_column(Integer, nullable=False)
    policy: Mapped[str] = mapped_column(String, nullable=False, default="")
    degraded: Mapped[str | None] = mapped_column(String)
    reasons: Mapped[list[Any]] = mapped_column(JSONType, nullable=False)
    features: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    #: The normalised event (never a clear phone number).
    event: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    #: Ground truth of simulated traffic ("genuine" or an archetype); the engine never reads it.
    truth: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        UniqueConstraint("tenant_id", "event_id", name="uq_decisions_tenant_event"),
        Index("ix_decisions_tenant_ts", "tenant_id", "ts"),
        Index("ix_decisions_tenant_account", "tenant_id", "account_id", "ts"),
        Index("ix_decisions_tenant_campaign_ts", "tenant_id", "campaign_id", "ts"),
        Index("ix_decisions_tenant_outcome", "tenant_id", "outcome", "ts"),
    )


class Label(Base):
    """Feedback on an event or an account: fraud or genuine, from a review, a complaint, a gang..."""

    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String, nullable=False, default=DEFAULT_TENANT)
    target_type: Mapped[str] = mapped_column(String, nullable=False)  # event | account
    target_id: Mapped[str] = mapped_column(String, nullable=False)
    label: Mapped[str] = mapped_column(String, nullable=False)  # fraud | genuine
    source: Mapped[str] = mapped_column(String, nullable=False, default="")
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index("ix_labels_tenant_target", "tenant_id", "target_type", "target_id"),
        Index("ix_labels_tenant_ts", "tenant_id", "ts"),
    )


class ListEntry(Base):
    """One value on a block, allow or review list; ``campaign_id`` NULL means every campaign."""

    __tablename__ = "list_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String, nullable=False, default=DEFAULT_TENANT)
    list_kind: Mapped[str] = mapped_column(String, nullable=False)  # block | allow | review
    entity_type: Mapped[str] = mapped_column(String, nullable=False)  # account, device, ip, ip24, phone...
    value: Mapped[str] = mapped_column(String, nullable=False)
    campaign_id: Mapped[str | None] = mapped_column(String)
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    expires_at: Mapped[int | None] = mapped_column(BigInteger)  # epoch ms; NULL = never
    created_at: Mapped[datetime] = _now()
    created_by: Mapped[str] = mapped_column(String, nullable=False, default="")

    __table_args__ = (
        Index("ix_list_entries_lookup", "tenant_id", "entity_type", "value"),
        Index("ix_list_entries_tenant_kind", "tenant_id", "list_kind"),
    )


class PolicyVersion(Base):
    """One saved version of a policy document; at most one version per policy is active."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String, nullable=False, default=DEFAULT_TENANT)
    policy_id: Mapped[str] = mapped_column(String, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False,
                                         server_default=text("false"))

    __table_args__ = (
        UniqueConstraint("tenant_id", "policy_id", "version", name="uq_policies_version"),
        Index("ix_policies_one_active", "tenant_id", "policy_id", unique=True,
              sqlite_where=text("active"), postgresql_where=text("active")),
    )


metadata = Base.metadata
decisions = DecisionRow.__table__
labels = Label.__table__
list_entries = ListEntry.__table__
policies = PolicyVersion.__table__
tenants = Tenant.__table__
api_keys = ApiKey.__table__
