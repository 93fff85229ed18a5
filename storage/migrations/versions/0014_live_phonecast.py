"""手机喊话 II (实时): a broadcast may be a live call holding its zones, or that call's recording afterwards for the
speakers that cannot play live; the 喊话记录 row says live, how it ended and what the 4G terminals got after.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 12:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("live_part", sa.String(8), nullable=True))
    with op.batch_alter_table("phone_broadcasts") as batch:
        batch.add_column(sa.Column("live", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("ended_by", sa.String(12), nullable=True))
        batch.add_column(sa.Column("after_speakers", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("after_broadcast_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_phone_broadcasts_after_broadcast_id_broadcasts",
            "broadcasts",
            ["after_broadcast_id"],
            ["id"],
            ondelete="RESTRICT",
        )


def downgrade() -> None:
    with op.batch_alter_table("phone_broadcasts") as batch:
        batch.drop_constraint("fk_phone_broadcasts_after_broadcast_id_broadcasts", type_="foreignkey")
        batch.drop_column("after_broadcast_id")
        batch.drop_column("after_speakers")
        batch.drop_column("ended_by")
        batch.drop_column("live")
    with op.batch_alter_table("broadcasts") as batch:
        batch.drop_column("live_part")
