"""Campaigns: versions, prize tiers, counters, code batches, used codes, coupons, challenges, ledger.

Revision ID: 0003
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
# The gangs tables landed after this revision, as 0004; there is no 0002.
down_revision = "0001"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _s(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(), nullable=nullable)


def _b(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        _s("tenant_id"), _s("id"), _s("kind"), _s("name"),
        sa.Column("version", sa.Integer(), nullable=False),
        _b("start_ms"), _b("end_ms"), _b("budget_fen"), _b("spent_fen"),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_campaigns"),
    )
    op.create_table(
        "campaign_versions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        _s("tenant_id"), _s("campaign_id"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rules", JSONType, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_campaign_versions"),
        sa.UniqueConstraint("tenant_id", "campaign_id", "version", name="uq_campaign_versions"),
    )
    op.create_table(
        "prize_tiers",
        _s("tenant_id"), _s("campaign_id"), _s("tier_id"), _b("amount_fen"), _b("count"), _b("remaining"),
        sa.PrimaryKeyConstraint("tenant_id", "campaign_id", "tier_id", name="pk_prize_tiers"),
    )
    op.create_table(
        "campaign_counters",
        _s("tenant_id"), _s("campaign_id"), _s("scope"), _s("key"),
        sa.Column("day", sa.Integer(), nullable=False), _b("used"),
        sa.PrimaryKeyConstraint("tenant_id", "campaign_id", "scope", "key", "day", name="pk_campaign_counters"),
    )
    op.create_table(
        "code_batches",
        _s("tenant_id"),
        sa.Column("batch_id", sa.Integer(), autoincrement=False, nullable=False),
        _s("campaign_id"), _s("product"), _s("line"), _b("count"), _created_at(),
        sa.PrimaryKeyConstraint("tenant_id", "batch_id", name="pk_code_batches"),
    )
    op.create_table(
        "used_codes",
        _s("tenant_id"), _s("code"),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        _b("serial"), _s("campaign_id"), _s("account_id"), _s("event_id"), _s("decision_id", True), _b("ts"),
        _s("status"), _s("tier_id", True), _b("amount_fen"),
        sa.PrimaryKeyConstraint("tenant_id", "code", name="pk_used_codes"),
        sa.UniqueConstraint("tenant_id", "event_id", name="uq_used_codes_event"),
    )
    op.create_table(
        "coupons",
        _s("tenant_id"), _s("id"), _s("campaign_id"), _s("tier_id"), _s("account_id"), _s("event_id"),
        _s("decision_id", True), _b("face_fen"), _b("min_order_fen"), _b("claimed_ts"), _b("expires_ms"),
        _s("status"), _s("order_id", True), _b("order_amount_fen", True), _b("discount_fen"),
        _b("redeemed_ts", True), sa.Column("redemptions", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_coupons"),
        sa.UniqueConstraint("tenant_id", "event_id", name="uq_coupons_event"),
    )
    op.create_index("ix_coupons_tenant_account", "coupons", ["tenant_id", "account_id"])
    op.create_table(
        "challenges",
        _s("tenant_id"), _s("id"), _s("campaign_id"), _s("action"), _s("outcome"), _s("challenge", True),
        _s("event_id"), _s("decision_id"), _s("account_id"),
        sa.Column("request", JSONType, nullable=False),
        _b("ts"), _b("deadline_ms", True), _s("status"), _b("resolved_ts", True), _s("resolved_by", True),
        sa.Column("result", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_challenges"),
        sa.UniqueConstraint("tenant_id", "event_id", name="uq_challenges_event"),
    )
    op.create_index("ix_challenges_tenant_status", "challenges", ["tenant_id", "status", "outcome"])
    op.create_table(
        "ledger",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        _s("tenant_id"), _s("campaign_id"), _s("entry"), _s("kind"), _b("amount_fen"), _s("tier_id", True),
        sa.Column("day", sa.Integer(), nullable=False), _b("ts"),
        _s("account_id", True), _s("device_id", True), _s("phone", True), _s("code", True),
        _s("coupon_id", True), _s("event_id", True), _s("decision_id", True), _s("outcome", True), _s("reason"),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_ledger"),
        sa.UniqueConstraint("tenant_id", "entry", name="uq_ledger_entry"),
    )
    op.create_index("ix_ledger_campaign_day", "ledger", ["tenant_id", "campaign_id", "day"])
    op.create_index("ix_ledger_account", "ledger", ["tenant_id", "account_id"])


def downgrade() -> None:
    for name in ("ledger", "challenges", "coupons", "used_codes", "code_batches", "campaign_counters",
                 "prize_tiers", "campaign_versions", "campaigns"):
        op.drop_table(name)
