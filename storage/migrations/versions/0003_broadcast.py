"""Broadcasting: notices, schedules and their targets, per-zone RTP settings, the as-run log.

The three as-run tables (broadcasts, broadcast_zones, broadcast_speakers) are
updated as a broadcast progresses but never deleted: a trigger refuses DELETE
on them, on SQLite and PostgreSQL alike.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-25 21:24:44.425021
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AS_RUN_TABLES = ("broadcasts", "broadcast_zones", "broadcast_speakers")


def forbid_delete(table: str) -> None:
    """As-run rows change state as a broadcast progresses, but a record of what played is never removed."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} rows are never deleted'); END"
        )
    else:
        op.execute(
            f"CREATE OR REPLACE FUNCTION {table}_no_delete() RETURNS trigger AS $$ "
            f"BEGIN RAISE EXCEPTION '{table} rows are never deleted'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_no_delete()"
        )


def allow_delete(table: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_no_delete()")


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("township_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=12), nullable=False),
        sa.Column("voice_engine", sa.String(length=16), nullable=True),
        sa.Column("voice_name", sa.String(length=96), nullable=True),
        sa.Column("voice_rate", sa.String(length=8), nullable=True),
        sa.Column("repeats", sa.Integer(), nullable=False),
        sa.Column("recording_file", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("approver_id", sa.Integer(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("audio_keys", sa.JSON(), nullable=True),
        sa.Column("audio_duration_s", sa.Float(), nullable=True),
        sa.Column("audio_engine", sa.String(length=16), nullable=True),
        sa.Column("spoken_text", sa.Text(), nullable=True),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("decided_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('emergency', 'disclosure_party', 'disclosure_village', 'disclosure_finance', "
            "'service', 'policy', 'civility')",
            name=op.f("ck_notices_kind"),
        ),
        sa.CheckConstraint("source IN ('tts', 'recording')", name=op.f("ck_notices_source")),
        sa.CheckConstraint(
            "state IN ('draft', 'pending', 'approved', 'rejected', 'archived')", name=op.f("ck_notices_state")
        ),
        sa.ForeignKeyConstraint(
            ["approver_id"], ["users.id"], name=op.f("fk_notices_approver_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_notices_author_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["township_id"], ["townships.id"], name=op.f("fk_notices_township_id_townships"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notices")),
    )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notices_author_id"), ["author_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_notices_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_notices_township_id"), ["township_id"], unique=False)

    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("township_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("once_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("times", sa.JSON(), nullable=False),
        sa.Column("weekdays", sa.JSON(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('once', 'daily', 'weekly')", name=op.f("ck_schedules_kind")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_schedules_created_by_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.id"], name=op.f("fk_schedules_notice_id_notices"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["township_id"], ["townships.id"], name=op.f("fk_schedules_township_id_townships"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_schedules_enabled"), ["enabled"], unique=False)
        batch_op.create_index(batch_op.f("ix_schedules_notice_id"), ["notice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_schedules_township_id"), ["township_id"], unique=False)

    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=True),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("occurrence_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("origin", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.Column("zone_ids", sa.JSON(), nullable=False),
        sa.Column("audio_keys", sa.JSON(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("started_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("origin IN ('schedule', 'emergency', 'manual', 'test')", name=op.f("ck_broadcasts_origin")),
        sa.CheckConstraint("state BETWEEN 0 AND 8", name=op.f("ck_broadcasts_state")),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.id"], name=op.f("fk_broadcasts_notice_id_notices"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["users.id"], name=op.f("fk_broadcasts_requested_by_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"], ["schedules.id"], name=op.f("fk_broadcasts_schedule_id_schedules"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
    )
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_broadcasts_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcasts_notice_id"), ["notice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcasts_schedule_id"), ["schedule_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcasts_state"), ["state"], unique=False)

    op.create_table(
        "schedule_targets",
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("level IN ('township', 'village', 'zone')", name=op.f("ck_schedule_targets_level")),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_targets_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("schedule_id", "level", "target_id", name=op.f("pk_schedule_targets")),
    )
    op.create_table(
        "zone_broadcast_settings",
        sa.Column("zone_id", sa.Integer(), nullable=False),
        sa.Column("rtp_group", sa.String(length=64), nullable=True),
        sa.Column("rtp_ttl", sa.Integer(), nullable=True),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["zone_id"], ["zones.id"], name=op.f("fk_zone_broadcast_settings_zone_id_zones"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("zone_id", name=op.f("pk_zone_broadcast_settings")),
    )
    op.create_table(
        "broadcast_zones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("broadcast_id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("occurrence_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("zone_id", sa.Integer(), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=False),
        sa.Column("township_id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("scheduled_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("started_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("interrupted_by", sa.Integer(), nullable=True),
        sa.CheckConstraint("state BETWEEN 0 AND 8", name=op.f("ck_broadcast_zones_state")),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcasts.id"],
            name=op.f("fk_broadcast_zones_broadcast_id_broadcasts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.id"], name=op.f("fk_broadcast_zones_notice_id_notices"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_broadcast_zones_schedule_id_schedules"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["township_id"],
            ["townships.id"],
            name=op.f("fk_broadcast_zones_township_id_townships"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["village_id"], ["villages.id"], name=op.f("fk_broadcast_zones_village_id_villages"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"], ["zones.id"], name=op.f("fk_broadcast_zones_zone_id_zones"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast_zones")),
        sa.UniqueConstraint("schedule_id", "occurrence_at", "zone_id", "attempt", name="uq_broadcast_zones_occurrence"),
    )
    with op.batch_alter_table("broadcast_zones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_broadcast_zones_broadcast_id"), ["broadcast_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcast_zones_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcast_zones_notice_id"), ["notice_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcast_zones_scheduled_at"), ["scheduled_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcast_zones_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcast_zones_township_id"), ["township_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcast_zones_village_id"), ["village_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcast_zones_zone_id"), ["zone_id"], unique=False)

    op.create_table(
        "broadcast_speakers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("zone_run_id", sa.Integer(), nullable=False),
        sa.Column("speaker_id", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=255), nullable=False),
        sa.Column("state", sa.Integer(), nullable=False),
        sa.Column("started_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        sa.CheckConstraint("state BETWEEN 0 AND 8", name=op.f("ck_broadcast_speakers_state")),
        sa.ForeignKeyConstraint(
            ["speaker_id"], ["speakers.id"], name=op.f("fk_broadcast_speakers_speaker_id_speakers"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["zone_run_id"],
            ["broadcast_zones.id"],
            name=op.f("fk_broadcast_speakers_zone_run_id_broadcast_zones"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcast_speakers")),
        sa.UniqueConstraint("zone_run_id", "speaker_id", name="uq_broadcast_speakers_speaker"),
    )
    with op.batch_alter_table("broadcast_speakers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_broadcast_speakers_speaker_id"), ["speaker_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_broadcast_speakers_zone_run_id"), ["zone_run_id"], unique=False)

    for table in AS_RUN_TABLES:
        forbid_delete(table)


def downgrade() -> None:
    for table in AS_RUN_TABLES:
        allow_delete(table)
    with op.batch_alter_table("broadcast_speakers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_broadcast_speakers_zone_run_id"))
        batch_op.drop_index(batch_op.f("ix_broadcast_speakers_speaker_id"))

    op.drop_table("broadcast_speakers")
    with op.batch_alter_table("broadcast_zones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_broadcast_zones_zone_id"))
        batch_op.drop_index(batch_op.f("ix_broadcast_zones_village_id"))
        batch_op.drop_index(batch_op.f("ix_broadcast_zones_township_id"))
        batch_op.drop_index(batch_op.f("ix_broadcast_zones_state"))
        batch_op.drop_index(batch_op.f("ix_broadcast_zones_scheduled_at"))
        batch_op.drop_index(batch_op.f("ix_broadcast_zones_notice_id"))
        batch_op.drop_index(batch_op.f("ix_broadcast_zones_kind"))
        batch_op.drop_index(batch_op.f("ix_broadcast_zones_broadcast_id"))

    op.drop_table("broadcast_zones")
    op.drop_table("zone_broadcast_settings")
    op.drop_table("schedule_targets")
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_broadcasts_state"))
        batch_op.drop_index(batch_op.f("ix_broadcasts_schedule_id"))
        batch_op.drop_index(batch_op.f("ix_broadcasts_notice_id"))
        batch_op.drop_index(batch_op.f("ix_broadcasts_created_at"))

    op.drop_table("broadcasts")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schedules_township_id"))
        batch_op.drop_index(batch_op.f("ix_schedules_notice_id"))
        batch_op.drop_index(batch_op.f("ix_schedules_enabled"))

    op.drop_table("schedules")
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notices_township_id"))
        batch_op.drop_index(batch_op.f("ix_notices_state"))
        batch_op.drop_index(batch_op.f("ix_notices_author_id"))

    op.drop_table("notices")
