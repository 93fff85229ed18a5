"""Alarms by phone: the duty list, the alarms raised and every call made about them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "duty_officers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.Column("on_from", sa.Time(), nullable=False),
        sa.Column("on_until", sa.Time(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duty_officers")),
    )
    with op.batch_alter_table("duty_officers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_officers_position"), ["position"], unique=False)

    op.create_table(
        "ops_alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("open_key", sa.String(length=160), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("raised_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("next_position", sa.Integer(), nullable=False),
        sa.Column("next_call_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("calls_made", sa.Integer(), nullable=False),
        sa.Column("closed_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.CheckConstraint(
            "kind IN ('emergency_failed', 'disk', 'ami_down', 'alert_source_silent')", name=op.f("ck_ops_alarms_kind")
        ),
        sa.CheckConstraint(
            "state IN ('open', 'acknowledged', 'cleared', 'unanswered')", name=op.f("ck_ops_alarms_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_alarms")),
        sa.UniqueConstraint("open_key", name=op.f("uq_ops_alarms_open_key")),
    )
    with op.batch_alter_table("ops_alarms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ops_alarms_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_ops_alarms_raised_at"), ["raised_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ops_alarms_state"), ["state"], unique=False)

    op.create_table(
        "alarm_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alarm_id", sa.Integer(), nullable=False),
        sa.Column("officer_id", sa.Integer(), nullable=True),
        sa.Column("officer_name", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("placed_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "state IN ('placing', 'ringing', 'acknowledged', 'heard', 'no_answer', 'busy', 'failed', 'unknown')",
            name=op.f("ck_alarm_calls_state"),
        ),
        sa.ForeignKeyConstraint(
            ["alarm_id"], ["ops_alarms.id"], name=op.f("fk_alarm_calls_alarm_id_ops_alarms"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["officer_id"],
            ["duty_officers.id"],
            name=op.f("fk_alarm_calls_officer_id_duty_officers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_calls")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_alarm_calls_channel_id")),
    )
    with op.batch_alter_table("alarm_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alarm_calls_alarm_id"), ["alarm_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alarm_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alarm_calls_alarm_id"))

    op.drop_table("alarm_calls")
    with op.batch_alter_table("ops_alarms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ops_alarms_state"))
        batch_op.drop_index(batch_op.f("ix_ops_alarms_raised_at"))
        batch_op.drop_index(batch_op.f("ix_ops_alarms_kind"))

    op.drop_table("ops_alarms")
    with op.batch_alter_table("duty_officers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_officers_position"))

    op.drop_table("duty_officers")
