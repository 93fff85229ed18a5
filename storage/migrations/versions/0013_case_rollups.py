"""Daily roll-ups of the case statistics (cases/rollups.py), back-filled from the cases in Asia/Shanghai days.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

from cases.rollups import rebuild_statement

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The zone the back-fill counts days in; a service configured with another one rebuilds them
# (`cases.rollups.rebuild`) and until then counts the cases themselves.
ZONE = "Asia/Shanghai"


def upgrade() -> None:
    op.create_table(
        "case_rollups",
        sa.Column("grain", sa.String(length=8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("township_id", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.Boolean(), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in (
            "received", "accepted", "resolved", "partly", "satisfied", "basically", "unsatisfied", "late",
        )),
        sa.Column("days_sum", sa.Float(), nullable=False),
        sa.Column("days_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "grain", "day", "township_id", "sealed", "dimension", "key", name=op.f("pk_case_rollups")
        ),
    )  # fmt: skip
    op.create_table(
        "case_rollup_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_rollup_state")),
    )
    bind = op.get_bind()
    op.execute(sa.text(rebuild_statement(bind.dialect.name, ZoneInfo(ZONE))))
    op.execute(sa.text("INSERT INTO case_rollup_state (id, zone) VALUES (1, :zone)").bindparams(zone=ZONE))


def downgrade() -> None:
    op.drop_table("case_rollup_state")
    op.drop_table("case_rollups")
