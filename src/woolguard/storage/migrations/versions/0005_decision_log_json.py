"""Decision log: ``reasons``, ``features`` and ``event`` as ``json`` instead of ``jsonb`` on PostgreSQL.

The decision log is written once per decision and read back a row at a time; ``jsonb``'s binary
conversion made up more than half of the server's CPU per logged decision (measured with ``COPY`` of
500-row batches: 50 µs per row with ``jsonb``, 22 µs with ``json``). ``json`` keeps the text as written,
still validates it, and still supports ``->`` / ``->>`` in analysts' queries (cast to ``jsonb`` for
containment). SQLite stores JSON as text either way: nothing changes there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = ("reasons", "features", "event")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in _COLUMNS:
        op.alter_column("decisions", column, type_=sa.JSON(), existing_type=JSONB(),
                        existing_nullable=False, postgresql_using=f"{column}::json")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in _COLUMNS:
        op.alter_column("decisions", column, type_=JSONB(), existing_type=sa.JSON(),
                        existing_nullable=False, postgresql_using=f"{column}::jsonb")
