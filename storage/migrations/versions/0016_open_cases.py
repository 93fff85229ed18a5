"""The cases whose clock runs now (``open_cases``, cases/rollups.py), back-filled from the cases.

The dashboard's "overdue now" and the 催办 list's counts and first rows read these few per cent of
cases instead of every case of a period.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types
from cases.rollups import open_cases_statement

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "open_cases",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("township_id", sa.Integer(), nullable=True),
        sa.Column("village_id", sa.Integer(), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("sealed", sa.Boolean(), nullable=False),
        sa.Column("resolution_due", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_open_cases_case_id_cases")),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_open_cases")),
    )
    op.create_index("ix_open_cases_status_created_at", "open_cases", ["status", "created_at"])
    op.create_index("ix_open_cases_resolution_due", "open_cases", ["resolution_due"])
    op.execute(sa.text(open_cases_statement(op.get_bind().dialect.name)))


def downgrade() -> None:
    op.drop_table("open_cases")
