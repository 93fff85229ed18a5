"""Alerts finished: a feed's entries remembered across restarts, and a broadcast's cancel asked of the worker.

* ``alert_feed_entries`` — each entry link a pull source has fetched, so a restart does not fetch (and, for a
  refused one, record) it again.
* ``broadcasts.cancel_reason`` — a cancel asked by any process (a Cancel pushed to a standby, an admin on
  another process); the active worker's dispatcher stops its plays of that broadcast on its next round.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_feed_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("link_hash", sa.String(length=64), nullable=False),
        sa.Column("link", sa.String(length=1024), nullable=False),
        sa.Column("seen_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["alert_sources.id"],
            name=op.f("fk_alert_feed_entries_source_id_alert_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_feed_entries")),
        sa.UniqueConstraint("source_id", "link_hash", name="uq_alert_feed_entries_source_link"),
    )
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancel_reason", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_column("cancel_reason")
    op.drop_table("alert_feed_entries")
