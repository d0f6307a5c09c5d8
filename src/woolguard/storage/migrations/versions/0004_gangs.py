"""Gangs: detector runs, the gangs each run found (with their evidence) and their members.

Revision ID: 0004
Revises: 0003
Create Date: 2025-02-15
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "gang_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=True),
        sa.Column("until_ms", sa.BigInteger(), nullable=True),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("accounts", sa.Integer(), nullable=False),
        sa.Column("links", sa.BigInteger(), nullable=False),
        sa.Column("gangs", sa.Integer(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("params", JSONType, nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_gang_runs"),
    )
    op.create_index("ix_gang_runs_tenant", "gang_runs", ["tenant_id", "id"])

    op.create_table(
        "gangs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("detector", sa.String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("shared_attributes", JSONType, nullable=False),
        sa.Column("first_ts", sa.BigInteger(), nullable=False),
        sa.Column("last_ts", sa.BigInteger(), nullable=False),
        sa.Column("money", sa.Float(), nullable=False),
        sa.Column("timeline", JSONType, nullable=False),
        _created_at(),
        sa.ForeignKeyConstraint(["run_id"], ["gang_runs.id"], name="fk_gangs_run_id_gang_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_gangs"),
    )
    op.create_index("ix_gangs_tenant_run", "gangs", ["tenant_id", "run_id", "rank"])

    op.create_table(
        "gang_members",
        sa.Column("gang_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("gang_score", sa.Integer(), nullable=False),
        sa.Column("gang_size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["gang_id"], ["gangs.id"], name="fk_gang_members_gang_id_gangs"),
        sa.PrimaryKeyConstraint("gang_id", "account_id", name="pk_gang_members"),
    )
    op.create_index("ix_gang_members_run", "gang_members", ["tenant_id", "run_id", "account_id"])
    op.create_index("ix_gang_members_account", "gang_members", ["tenant_id", "account_id"])


def downgrade() -> None:
    op.drop_table("gang_members")
    op.drop_table("gangs")
    op.drop_table("gang_runs")
