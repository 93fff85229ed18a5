"""Hotline: cases, their recordings, missed calls, calls by Linkedid, the villager phone registry, worker bookmarks.

UNIQUE on cases.linkedid, missed_calls.linkedid and calls.linkedid is what keeps
"exactly one case per call" true across the live FastAGI request, the AMI call
tracker and reconciliation; recordings.source_name makes attaching a file idempotent.
(Its id was reserved for the hotline; broadcasting's 0003 landed first, so 0002 follows it.)

Revision ID: 0002
Revises: 0003
Create Date: 2026-11-25 21:35:15.368578
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hotline_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_hotline_state")),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=8), nullable=False),
        sa.Column("linkedid", sa.String(length=150), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.Boolean(), nullable=False),
        sa.Column("caller_number", sa.String(length=32), nullable=True),
        sa.Column("caller_withheld", sa.Boolean(), nullable=False),
        sa.Column("caller_name", sa.String(length=64), nullable=True),
        sa.Column("village_id", sa.Integer(), nullable=True),
        sa.Column("township_id", sa.Integer(), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("ivr_choice", sa.String(length=4), nullable=True),
        sa.Column("pin", sa.String(length=8), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("test_call", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "channel IN ('hotline', 'walk_in', 'grid', 'letter', 'online')", name=op.f("ck_cases_channel")
        ),
        sa.CheckConstraint(
            "status IN ('new', 'accepted', 'rejected', 'in_progress', 'resolved', 'followed_up', 'closed')",
            name=op.f("ck_cases_status"),
        ),
        sa.ForeignKeyConstraint(
            ["township_id"], ["townships.id"], name=op.f("fk_cases_township_id_townships"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_cases_unit_id_units"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(
            ["village_id"], ["villages.id"], name=op.f("fk_cases_village_id_villages"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("linkedid", name=op.f("uq_cases_linkedid")),
        sa.UniqueConstraint("number", name=op.f("uq_cases_number")),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_caller_number"), ["caller_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_category"), ["category"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_township_id"), ["township_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_unit_id"), ["unit_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_village_id"), ["village_id"], unique=False)

    op.create_table(
        "villager_phones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("note", sa.String(length=255), nullable=True),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["village_id"], ["villages.id"], name=op.f("fk_villager_phones_village_id_villages"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_villager_phones")),
        sa.UniqueConstraint("number", name=op.f("uq_villager_phones_number")),
    )
    with op.batch_alter_table("villager_phones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_villager_phones_village_id"), ["village_id"], unique=False)

    op.create_table(
        "missed_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("linkedid", sa.String(length=150), nullable=False),
        sa.Column("caller_number", sa.String(length=32), nullable=True),
        sa.Column("caller_withheld", sa.Boolean(), nullable=False),
        sa.Column("caller_name", sa.String(length=64), nullable=True),
        sa.Column("village_id", sa.Integer(), nullable=True),
        sa.Column("township_id", sa.Integer(), nullable=True),
        sa.Column("at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("ivr_choice", sa.String(length=4), nullable=True),
        sa.Column("sealed", sa.Boolean(), nullable=False),
        sa.Column("callback_state", sa.String(length=16), nullable=False),
        sa.Column("callback_attempts", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("test_call", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "callback_state IN ('pending', 'called_back', 'no_number', 'not_needed')",
            name=op.f("ck_missed_calls_callback_state"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_missed_calls_case_id_cases"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["township_id"], ["townships.id"], name=op.f("fk_missed_calls_township_id_townships"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["village_id"], ["villages.id"], name=op.f("fk_missed_calls_village_id_villages"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missed_calls")),
        sa.UniqueConstraint("linkedid", name=op.f("uq_missed_calls_linkedid")),
    )
    with op.batch_alter_table("missed_calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_missed_calls_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_missed_calls_callback_state"), ["callback_state"], unique=False)
        batch_op.create_index(batch_op.f("ix_missed_calls_caller_number"), ["caller_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_missed_calls_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_missed_calls_township_id"), ["township_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_missed_calls_village_id"), ["village_id"], unique=False)

    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("linkedid", sa.String(length=150), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("caller_number", sa.String(length=32), nullable=True),
        sa.Column("caller_withheld", sa.Boolean(), nullable=False),
        sa.Column("started_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=True),
        sa.Column("ivr_choice", sa.String(length=4), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("sealed", sa.Boolean(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("missed_call_id", sa.Integer(), nullable=True),
        sa.Column("settled_by", sa.String(length=16), nullable=False),
        sa.Column("test_call", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('hotline', 'callback', 'survey', 'page')", name=op.f("ck_calls_kind")),
        sa.CheckConstraint(
            "outcome IN ('case', 'missed', 'status_query', 'refused', 'placed')", name=op.f("ck_calls_outcome")
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_calls_case_id_cases"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(
            ["missed_call_id"],
            ["missed_calls.id"],
            name=op.f("fk_calls_missed_call_id_missed_calls"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("linkedid", name=op.f("uq_calls_linkedid")),
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_calls_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_calls_started_at"), ["started_at"], unique=False)

    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("missed_call_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("linkedid", sa.String(length=150), nullable=False),
        sa.Column("source_name", sa.String(length=255), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("empty", sa.Boolean(), nullable=False),
        sa.Column("recorded_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("purged_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('message', 'transfer', 'callback', 'survey')", name=op.f("ck_recordings_kind")),
        sa.CheckConstraint("case_id IS NOT NULL OR missed_call_id IS NOT NULL", name=op.f("ck_recordings_owner")),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_recordings_case_id_cases"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["missed_call_id"],
            ["missed_calls.id"],
            name=op.f("fk_recordings_missed_call_id_missed_calls"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("path", name=op.f("uq_recordings_path")),
        sa.UniqueConstraint("source_name", name=op.f("uq_recordings_source_name")),
    )
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recordings_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_recordings_linkedid"), ["linkedid"], unique=False)
        batch_op.create_index(batch_op.f("ix_recordings_missed_call_id"), ["missed_call_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recordings_missed_call_id"))
        batch_op.drop_index(batch_op.f("ix_recordings_linkedid"))
        batch_op.drop_index(batch_op.f("ix_recordings_case_id"))

    op.drop_table("recordings")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calls_started_at"))
        batch_op.drop_index(batch_op.f("ix_calls_case_id"))

    op.drop_table("calls")
    with op.batch_alter_table("missed_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_missed_calls_village_id"))
        batch_op.drop_index(batch_op.f("ix_missed_calls_township_id"))
        batch_op.drop_index(batch_op.f("ix_missed_calls_case_id"))
        batch_op.drop_index(batch_op.f("ix_missed_calls_caller_number"))
        batch_op.drop_index(batch_op.f("ix_missed_calls_callback_state"))
        batch_op.drop_index(batch_op.f("ix_missed_calls_at"))

    op.drop_table("missed_calls")
    with op.batch_alter_table("villager_phones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_villager_phones_village_id"))

    op.drop_table("villager_phones")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_village_id"))
        batch_op.drop_index(batch_op.f("ix_cases_unit_id"))
        batch_op.drop_index(batch_op.f("ix_cases_township_id"))
        batch_op.drop_index(batch_op.f("ix_cases_status"))
        batch_op.drop_index(batch_op.f("ix_cases_created_at"))
        batch_op.drop_index(batch_op.f("ix_cases_category"))
        batch_op.drop_index(batch_op.f("ix_cases_caller_number"))

    op.drop_table("cases")
    op.drop_table("hotline_state")
