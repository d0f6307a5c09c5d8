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
    Float,
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
#: The decision log's JSON columns: plain ``json`` (text) on PostgreSQL too, which costs the server less than half
#: of ``jsonb``'s CPU per logged decision (migration 0005).
LogJSON = JSON()

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
    reasons: Mapped[list[Any]] = mapped_column(LogJSON, nullable=False)
    features: Mapped[dict[str, Any]] = mapped_column(LogJSON, nullable=False)
    #: The normalised event (never a clear phone number).
    event: Mapped[dict[str, Any]] = mapped_column(LogJSON, nullable=False)
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


class FeatureSet(Base):
    """The feature names of compact decision-log rows: ``decisions.features`` holds ``[set id, value, ...]``, the
    values in the order of this set's ``names`` (content-addressed: the id is a hash of the names, never
    reused for other names). Rows written before migration 0006 hold a ``{name: value}`` object instead."""

    __tablename__ = "feature_sets"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    names: Mapped[list[Any]] = mapped_column(LogJSON, nullable=False)
    created_at: Mapped[datetime] = _now()


feature_sets = FeatureSet.__table__


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


class GangRun(Base):
    """One run of the gang detectors over a tenant's decision log (``woolguard gangs run``, the API)."""

    __tablename__ = "gang_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String, nullable=False, default=DEFAULT_TENANT)
    since_ms: Mapped[int | None] = mapped_column(BigInteger)  # the decision-log window read (epoch ms)
    until_ms: Mapped[int | None] = mapped_column(BigInteger)
    events: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    accounts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # accounts in the graph
    links: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    gangs: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    members: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # distinct accounts in a gang
    seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    source: Mapped[str] = mapped_column(String, nullable=False, default="")  # cli | api | ...
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (Index("ix_gang_runs_tenant", "tenant_id", "id"),)


class GangRow(Base):
    """A gang found by a run, with its evidence. ``id`` is the gang's public id (unique per database)."""

    __tablename__ = "gangs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String, nullable=False, default=DEFAULT_TENANT)
    run_id: Mapped[int] = mapped_column(ForeignKey("gang_runs.id"), nullable=False)
    rank: Mapped[int] = mapped_column(Integer, nullable=False)  # 0 = the run's strongest gang
    detector: Mapped[str] = mapped_column(String, nullable=False)  # community | invite_hub | lockstep
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)  # in [0, 1]
    #: [{"attribute": "type=value[@bucket]", "members": n}], strongest first
    shared_attributes: Mapped[list[Any]] = mapped_column(JSONType, nullable=False)
    first_ts: Mapped[int] = mapped_column(BigInteger, nullable=False)  # epoch ms
    last_ts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    money: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)  # paid-out value claimed
    #: [{"ts": epoch ms, "account": id, "attribute": "type=value"}], oldest first
    timeline: Mapped[list[Any]] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (Index("ix_gangs_tenant_run", "tenant_id", "run_id", "rank"),)


class GangMember(Base):
    """An account of a gang; ``gang_score`` (0-100) and ``gang_size`` are the account's hot-path values in
    that run (from its strongest gang, which may be another one of the same run)."""

    __tablename__ = "gang_members"

    gang_id: Mapped[int] = mapped_column(ForeignKey("gangs.id"), primary_key=True)
    account_id: Mapped[str] = mapped_column(String, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String, nullable=False, default=DEFAULT_TENANT)
    run_id: Mapped[int] = mapped_column(Integer, nullable=False)
    gang_score: Mapped[int] = mapped_column(Integer, nullable=False)
    gang_size: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (
        Index("ix_gang_members_run", "tenant_id", "run_id", "account_id"),
        Index("ix_gang_members_account", "tenant_id", "account_id"),
    )


gang_runs = GangRun.__table__
gangs = GangRow.__table__
gang_members = GangMember.__table__


metadata = Base.metadata
decisions = DecisionRow.__table__
labels = Label.__table__
list_entries = ListEntry.__table__
policies = PolicyVersion.__table__
tenants = Tenant.__table__
api_keys = ApiKey.__table__


# ---------------------------------------------------------------------------------------------------
# Campaigns, codes, coupons and the budget ledger (woolguard.campaigns; revision 0003). Money is integer
# fen. Counters that must never overrun (prize counts, budgets, caps, limits) are changed only by
# conditional UPDATEs / upserts, so concurrent workers stay exact; see docs/campaigns.md.

#: An auto-increment 64-bit id on PostgreSQL that is still SQLite's INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class CampaignRow(Base):
    """A campaign: its current rules version, the total budget and what has been committed of it."""

    __tablename__ = "campaigns"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    id: Mapped[str] = mapped_column(String, primary_key=True)
    kind: Mapped[str] = mapped_column(String, nullable=False)  # scan | coupon
    name: Mapped[str] = mapped_column(String, nullable=False, default="")
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    start_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    end_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    budget_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    spent_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = _now()


class CampaignVersionRow(Base):
    """Every version of a campaign's rules (the whole document); the campaign row names the current one."""

    __tablename__ = "campaign_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String, nullable=False)
    campaign_id: Mapped[str] = mapped_column(String, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    rules: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = _now()

    __table_args__ = (UniqueConstraint("tenant_id", "campaign_id", "version", name="uq_campaign_versions"),)


class PrizeTierRow(Base):
    """A prize tier (or coupon type) with its count and what is left of it."""

    __tablename__ = "prize_tiers"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String, primary_key=True)
    tier_id: Mapped[str] = mapped_column(String, primary_key=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    remaining: Mapped[int] = mapped_column(BigInteger, nullable=False)


class CampaignCounter(Base):
    """Daily budgets and per-account / device / phone limits: ``day`` 0 is the whole campaign."""

    __tablename__ = "campaign_counters"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String, primary_key=True)
    scope: Mapped[str] = mapped_column(String, primary_key=True)  # budget | account | device | phone
    key: Mapped[str] = mapped_column(String, primary_key=True)
    day: Mapped[int] = mapped_column(Integer, primary_key=True)  # yyyymmdd (campaign time zone), 0 = all
    used: Mapped[int] = mapped_column(BigInteger, nullable=False)


class CodeBatchRow(Base):
    """A batch of one-item-one-code codes printed for a product on a production line (codes are not stored)."""

    __tablename__ = "code_batches"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    batch_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    campaign_id: Mapped[str] = mapped_column(String, nullable=False)
    product: Mapped[str] = mapped_column(String, nullable=False, default="")
    line: Mapped[str] = mapped_column(String, nullable=False, default="")
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = _now()


class UsedCode(Base):
    """A scanned code: who scanned it first, with which event and decision, and what came of it."""

    __tablename__ = "used_codes"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    code: Mapped[str] = mapped_column(String, primary_key=True)
    batch_id: Mapped[int] = mapped_column(Integer, nullable=False)
    serial: Mapped[int] = mapped_column(BigInteger, nullable=False)
    campaign_id: Mapped[str] = mapped_column(String, nullable=False)
    account_id: Mapped[str] = mapped_column(String, nullable=False)
    event_id: Mapped[str] = mapped_column(String, nullable=False)
    decision_id: Mapped[str | None] = mapped_column(String)
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String, nullable=False)
    tier_id: Mapped[str | None] = mapped_column(String)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)

    __table_args__ = (UniqueConstraint("tenant_id", "event_id", name="uq_used_codes_event"),)


class CouponRow(Base):
    """A claimed coupon; redeemed at checkout (核销), reversed by a refund."""

    __tablename__ = "coupons"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    id: Mapped[str] = mapped_column(String, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String, nullable=False)
    tier_id: Mapped[str] = mapped_column(String, nullable=False)
    account_id: Mapped[str] = mapped_column(String, nullable=False)
    event_id: Mapped[str] = mapped_column(String, nullable=False)
    decision_id: Mapped[str | None] = mapped_column(String)
    face_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    min_order_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    claimed_ts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_ms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String, nullable=False)  # issued | redeemed
    order_id: Mapped[str | None] = mapped_column(String)
    order_amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    discount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    redeemed_ts: Mapped[int | None] = mapped_column(BigInteger)
    redemptions: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    __table_args__ = (
        UniqueConstraint("tenant_id", "event_id", name="uq_coupons_event"),
        Index("ix_coupons_tenant_account", "tenant_id", "account_id"),
    )


class ChallengeRow(Base):
    """A payout waiting on a step-up challenge (verify) or on an analyst (review)."""

    __tablename__ = "challenges"

    tenant_id: Mapped[str] = mapped_column(String, primary_key=True)
    id: Mapped[str] = mapped_column(String, primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String, nullable=False)
    action: Mapped[str] = mapped_column(String, nullable=False)  # scan | claim
    outcome: Mapped[str] = mapped_column(String, nullable=False)  # verify | review
    challenge: Mapped[str | None] = mapped_column(String)  # captcha | sms | upsms | face
    event_id: Mapped[str] = mapped_column(String, nullable=False)
    decision_id: Mapped[str] = mapped_column(String, nullable=False)
    account_id: Mapped[str] = mapped_column(String, nullable=False)
    request: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    deadline_ms: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String, nullable=False)  # pending | passed | failed | expired | ...
    resolved_ts: Mapped[int | None] = mapped_column(BigInteger)
    resolved_by: Mapped[str | None] = mapped_column(String)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        UniqueConstraint("tenant_id", "event_id", name="uq_challenges_event"),
        Index("ix_challenges_tenant_status", "tenant_id", "status", "outcome"),
    )


class LedgerRow(Base):
    """The budget ledger: every payout, every refused payout, holds, coupon issues, redemptions, reversals.

    ``entry`` is the idempotency key of the money movement (``scan:<event id>``, ``redeem:<coupon>:<n>``):
    unique per tenant, so a retried request can never write a second row.
    """

    __tablename__ = "ledger"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String, nullable=False)
    campaign_id: Mapped[str] = mapped_column(String, nullable=False)
    entry: Mapped[str] = mapped_column(String, nullable=False)
    kind: Mapped[str] = mapped_column(String, nullable=False)  # paid | refused | held | issued | redeemed | reversed
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    tier_id: Mapped[str | None] = mapped_column(String)
    day: Mapped[int] = mapped_column(Integer, nullable=False)
    ts: Mapped[int] = mapped_column(BigInteger, nullable=False)
    account_id: Mapped[str | None] = mapped_column(String)
    device_id: Mapped[str | None] = mapped_column(String)
    phone: Mapped[str | None] = mapped_column(String)
    code: Mapped[str | None] = mapped_column(String)
    coupon_id: Mapped[str | None] = mapped_column(String)
    event_id: Mapped[str | None] = mapped_column(String)
    decision_id: Mapped[str | None] = mapped_column(String)
    outcome: Mapped[str | None] = mapped_column(String)
    reason: Mapped[str] = mapped_column(String, nullable=False, default="")
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        UniqueConstraint("tenant_id", "entry", name="uq_ledger_entry"),
        Index("ix_ledger_campaign_day", "tenant_id", "campaign_id", "day"),
        Index("ix_ledger_account", "tenant_id", "account_id"),
    )


campaigns_t = CampaignRow.__table__
campaign_versions = CampaignVersionRow.__table__
prize_tiers = PrizeTierRow.__table__
campaign_counters = CampaignCounter.__table__
code_batches = CodeBatchRow.__table__
used_codes = UsedCode.__table__
coupons = CouponRow.__table__
challenges = ChallengeRow.__table__
ledger = LedgerRow.__table__
