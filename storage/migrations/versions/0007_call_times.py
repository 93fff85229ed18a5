"""Hotline records true through outages: when a case was learnt, whether its number was told, who ended a call.

``cases.created_at`` now holds when a hotline call began (its clocks start
there); ``cases.learnt_at`` when the service registered the case, which after
an outage is later. ``cases.number_told`` is False for a hotline case whose
caller did not hear her number in full (someone calls her back to tell it).
``calls.ended_by`` says whether the caller hung up, our IVR finished, the call
limit ran out, or Asterisk stopped with the call up.

Existing rows: a case's ``learnt_at`` is its ``created_at``; ``number_told``
and ``ended_by`` stay unknown (NULL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 05:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN on both databases (nullable columns): no table is rebuilt.
    op.add_column("cases", sa.Column("learnt_at", storage.types.UtcDateTime(), nullable=True))
    op.add_column("cases", sa.Column("number_told", sa.Boolean(), nullable=True))
    op.execute("UPDATE cases SET learnt_at = created_at")
    op.add_column("calls", sa.Column("ended_by", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("ended_by")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("number_told")
        batch.drop_column("learnt_at")
