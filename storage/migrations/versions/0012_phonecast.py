"""手机喊话: the 可电话喊话 permission with its own scope, cadres' numbers and PINs, the record of phone broadcasts;
喊话编号 on townships, villages and zones (back-filled); the phone's priority class between 应急 and 公开
(the classes below it move down by one); broadcasts that may start in quiet hours.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 09:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITTEN_KINDS = (
    "emergency",
    "disclosure_party",
    "disclosure_village",
    "disclosure_finance",
    "service",
    "policy",
    "civility",
)
# 喊话编号 widths: two digits for a township, three for a village, four for a zone (the line reads them back).
CODE_WIDTHS = {"townships": 2, "villages": 3, "zones": 4}
PRIORITY_TABLES = ("broadcasts", "broadcast_zones", "schedules")


def _kinds(kinds: Sequence[str]) -> str:
    return f"kind IN ({', '.join(repr(kind) for kind in kinds)})"


def upgrade() -> None:
    op.create_table(
        "phonecast_cadres",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("pin_hash", sa.String(length=255), nullable=True),
        sa.Column("pin_set_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("granted_by", sa.Integer(), nullable=True),
        sa.Column("granted_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["granted_by"], ["users.id"], name=op.f("fk_phonecast_cadres_granted_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_phonecast_cadres_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_phonecast_cadres")),
    )
    op.create_table(
        "phonecast_scopes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=True),
        sa.Column("township_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("(village_id IS NULL) <> (township_id IS NULL)", name=op.f("ck_phonecast_scopes_one_area")),
        sa.ForeignKeyConstraint(
            ["township_id"],
            ["townships.id"],
            name=op.f("fk_phonecast_scopes_township_id_townships"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["phonecast_cadres.user_id"],
            name=op.f("fk_phonecast_scopes_user_id_phonecast_cadres"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["village_id"], ["villages.id"], name=op.f("fk_phonecast_scopes_village_id_villages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phonecast_scopes")),
    )
    with op.batch_alter_table("phonecast_scopes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_phonecast_scopes_user_id"), ["user_id"], unique=False)
    op.create_table(
        "phonecast_numbers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["phonecast_cadres.user_id"],
            name=op.f("fk_phonecast_numbers_user_id_phonecast_cadres"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phonecast_numbers")),
        sa.UniqueConstraint("number", name=op.f("uq_phonecast_numbers_number")),
    )
    with op.batch_alter_table("phonecast_numbers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_phonecast_numbers_user_id"), ["user_id"], unique=False)
    op.create_table(
        "phone_broadcasts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("caller_name", sa.String(length=64), nullable=False),
        sa.Column("caller_masked", sa.String(length=24), nullable=False),
        sa.Column("target_kind", sa.String(length=12), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("target_name", sa.String(length=128), nullable=False),
        sa.Column("target_code", sa.String(length=8), nullable=False),
        sa.Column("zone_ids", sa.JSON(), nullable=False),
        sa.Column("township_id", sa.Integer(), nullable=True),
        sa.Column("recording_file", sa.String(length=255), nullable=True),
        sa.Column("recording_s", sa.Float(), nullable=True),
        sa.Column("notice_id", sa.Integer(), nullable=True),
        sa.Column("broadcast_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("speakers", sa.Integer(), nullable=False),
        sa.Column("unanswered", sa.Integer(), nullable=False),
        sa.Column("quiet_exempt", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("play_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("started_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("review_state", sa.String(length=12), nullable=False),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("reviewed_by", sa.Integer(), nullable=True),
        sa.Column("reviewed_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('received', 'started', 'queued', 'scheduled', 'refused', 'played', 'not_played', 'cancelled')",
            name=op.f("ck_phone_broadcasts_status"),
        ),
        sa.CheckConstraint(
            "review_state IN ('pending', 'reviewed', 'flagged')", name=op.f("ck_phone_broadcasts_review_state")
        ),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_phone_broadcasts_broadcast_id_broadcasts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.id"], name=op.f("fk_phone_broadcasts_notice_id_notices"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_by"], ["users.id"], name=op.f("fk_phone_broadcasts_reviewed_by_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["township_id"],
            ["townships.id"],
            name=op.f("fk_phone_broadcasts_township_id_townships"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_phone_broadcasts_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_broadcasts")),
        sa.UniqueConstraint("call_id", name=op.f("uq_phone_broadcasts_call_id")),
    )
    with op.batch_alter_table("phone_broadcasts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_phone_broadcasts_broadcast_id"), ["broadcast_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_phone_broadcasts_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_phone_broadcasts_play_at"), ["play_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_phone_broadcasts_review_state"), ["review_state"], unique=False)
        batch_op.create_index(batch_op.f("ix_phone_broadcasts_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_phone_broadcasts_township_id"), ["township_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_phone_broadcasts_user_id"), ["user_id"], unique=False)

    for table, width in CODE_WIDTHS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("phonecast_code", sa.String(length=8), nullable=True))
            batch_op.create_index(batch_op.f(f"ix_{table}_phonecast_code"), ["phonecast_code"], unique=True)
        _backfill_codes(table, width)

    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quiet_exempt", sa.Boolean(), nullable=False, server_default=sa.false()))
    # The phone's class takes 2: 公开, 便民 and 宣传 move from 2, 3, 4 to 3, 4, 5 wherever a priority is kept.
    for table in PRIORITY_TABLES:
        op.execute(f"UPDATE {table} SET priority = priority + 1 WHERE priority >= 2")
    # A notice may now be of the phone's kind (never written on the notice pages).
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_notices_kind"), type_="check")
        batch_op.create_check_constraint(op.f("ck_notices_kind"), _kinds((*WRITTEN_KINDS, "phonecast")))


def _backfill_codes(table: str, width: int) -> None:
    """Every existing area gets its 喊话编号 in the order it was made (1, 2, … zero-padded to the width)."""
    bind = op.get_bind()
    ids = [row[0] for row in bind.execute(sa.text(f"SELECT id FROM {table} ORDER BY id"))]
    for position, area_id in enumerate(ids, start=1):
        bind.execute(
            sa.text(f"UPDATE {table} SET phonecast_code = :code WHERE id = :id"),
            {"code": f"{position:0{width}d}", "id": area_id},
        )


def downgrade() -> None:
    op.execute(
        "DELETE FROM notices WHERE kind = 'phonecast' AND id NOT IN (SELECT notice_id FROM broadcasts "
        "WHERE notice_id IS NOT NULL)"
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_notices_kind"), type_="check")
        batch_op.create_check_constraint(op.f("ck_notices_kind"), _kinds(WRITTEN_KINDS))
    for table in PRIORITY_TABLES:
        op.execute(f"UPDATE {table} SET priority = priority - 1 WHERE priority >= 3")
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_column("quiet_exempt")
    for table in CODE_WIDTHS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_phonecast_code"))
            batch_op.drop_column("phonecast_code")
    op.drop_table("phone_broadcasts")
    op.drop_table("phonecast_numbers")
    op.drop_table("phonecast_scopes")
    op.drop_table("phonecast_cadres")
