"""Official warnings (CAP 1.2): sources, messages, refusals, the policy table with its defaults; villages get
their statistical codes and coordinates, zones the 测试分区 flag; the demo county gets its invented GB/T 2260 code.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_policy_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=True),
        sa.Column("severities", sa.JSON(), nullable=False),
        sa.Column("urgencies", sa.JSON(), nullable=False),
        sa.Column("certainties", sa.JSON(), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("repeat_every_min", sa.Integer(), nullable=True),
        sa.Column("max_plays", sa.Integer(), nullable=False),
        sa.Column("repeats_in_quiet_hours", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=255), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('auto', 'review', 'record')", name=op.f("ck_alert_policy_rules_action")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_policy_rules")),
    )
    with op.batch_alter_table("alert_policy_rules", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_policy_rules_position"), ["position"], unique=False)

    op.create_table(
        "alert_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("token_hash", sa.String(length=128), nullable=True),
        sa.Column("url", sa.String(length=1024), nullable=True),
        sa.Column("folder", sa.String(length=1024), nullable=True),
        sa.Column("poll_interval_s", sa.Integer(), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=True),
        sa.Column("etag", sa.String(length=255), nullable=True),
        sa.Column("last_modified", sa.String(length=64), nullable=True),
        sa.Column("silent_after_s", sa.Integer(), nullable=True),
        sa.Column("last_message_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_heartbeat_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_polled_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('push', 'pull', 'folder', 'manual')", name=op.f("ck_alert_sources_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_alert_sources_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_alert_sources_token_hash")),
    )
    op.create_table(
        "alert_refusals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("received_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=1024), nullable=False),
        sa.Column("excerpt", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["alert_sources.id"],
            name=op.f("fk_alert_refusals_source_id_alert_sources"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_refusals")),
    )
    with op.batch_alter_table("alert_refusals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_refusals_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_refusals_source_id"), ["source_id"], unique=False)

    op.create_table(
        "alert_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("identifier", sa.String(length=255), nullable=False),
        sa.Column("sender", sa.String(length=255), nullable=False),
        sa.Column("sent", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("msg_type", sa.String(length=8), nullable=False),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("event", sa.String(length=255), nullable=False),
        sa.Column("severity", sa.String(length=12), nullable=False),
        sa.Column("urgency", sa.String(length=12), nullable=False),
        sa.Column("certainty", sa.String(length=12), nullable=False),
        sa.Column("headline", sa.Text(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("expires", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("received_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("xml", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=True),
        sa.Column("policy_rule_id", sa.Integer(), nullable=True),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("matched", sa.JSON(), nullable=False),
        sa.Column("zone_ids", sa.JSON(), nullable=False),
        sa.Column("spoken_lead", sa.String(length=255), nullable=True),
        sa.Column("spoken_text", sa.Text(), nullable=True),
        sa.Column("notice_id", sa.Integer(), nullable=True),
        sa.Column("broadcast_ids", sa.JSON(), nullable=False),
        sa.Column("plays", sa.Integer(), nullable=False),
        sa.Column("next_play_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("replaced_by_id", sa.Integer(), nullable=True),
        sa.Column("ended_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('recorded', 'pending', 'aired', 'rejected', 'cancelled', 'superseded', 'expired')",
            name=op.f("ck_alert_messages_state"),
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name=op.f("fk_alert_messages_decided_by_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["policy_rule_id"],
            ["alert_policy_rules.id"],
            name=op.f("fk_alert_messages_policy_rule_id_alert_policy_rules"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["replaced_by_id"],
            ["alert_messages.id"],
            name=op.f("fk_alert_messages_replaced_by_id_alert_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["alert_sources.id"],
            name=op.f("fk_alert_messages_source_id_alert_sources"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_messages")),
        sa.UniqueConstraint("sender", "identifier", name="uq_alert_messages_sender_identifier"),
    )
    with op.batch_alter_table("alert_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_messages_next_play_at"), ["next_play_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_messages_received_at"), ["received_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_messages_source_id"), ["source_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_messages_state"), ["state"], unique=False)

    with op.batch_alter_table("villages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code", sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column("latitude", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("longitude", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_villages_code"), ["code"], unique=False)

    with op.batch_alter_table("zones", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_test", sa.Boolean(), nullable=False, server_default=sa.false()))

    _seed_policy()
    # The demo county's marker was the code "DEMO"; it now has a well-formed (invented) administrative code.
    op.execute("UPDATE counties SET code = '159901' WHERE code = 'DEMO'")


def _seed_policy() -> None:
    """The defaults (docs/alerts.md): Extreme/Severe and Immediate/Expected air by themselves, Moderate waits."""
    rules = sa.table(
        "alert_policy_rules",
        sa.column("position", sa.Integer()),
        sa.column("event", sa.String()),
        sa.column("severities", sa.JSON()),
        sa.column("urgencies", sa.JSON()),
        sa.column("certainties", sa.JSON()),
        sa.column("action", sa.String()),
        sa.column("repeat_every_min", sa.Integer()),
        sa.column("max_plays", sa.Integer()),
        sa.column("repeats_in_quiet_hours", sa.Boolean()),
        sa.column("note", sa.String()),
        sa.column("updated_at", storage.types.UtcDateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    common = {"event": None, "certainties": [], "repeats_in_quiet_hours": False, "updated_at": now}
    op.bulk_insert(
        rules,
        [
            {
                **common,
                "position": 10,
                "severities": ["Extreme", "Severe"],
                "urgencies": ["Immediate", "Expected"],
                "action": "auto",
                "repeat_every_min": 30,
                "max_plays": 3,
                "note": "默认：特别严重、严重且紧急或即将发生的预警自动播出",
            },
            {
                **common,
                "position": 20,
                "severities": ["Moderate"],
                "urgencies": [],
                "action": "review",
                "repeat_every_min": 60,
                "max_plays": 2,
                "note": "默认：较重的预警由审核人放行后播出",
            },
            {
                **common,
                "position": 30,
                "severities": [],
                "urgencies": [],
                "action": "record",
                "repeat_every_min": None,
                "max_plays": 1,
                "note": "默认：其余仅记录",
            },
        ],
    )


def downgrade() -> None:
    op.execute("UPDATE counties SET code = 'DEMO' WHERE code = '159901'")
    with op.batch_alter_table("zones", schema=None) as batch_op:
        batch_op.drop_column("is_test")

    with op.batch_alter_table("villages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_villages_code"))
        batch_op.drop_column("longitude")
        batch_op.drop_column("latitude")
        batch_op.drop_column("code")

    with op.batch_alter_table("alert_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_messages_state"))
        batch_op.drop_index(batch_op.f("ix_alert_messages_source_id"))
        batch_op.drop_index(batch_op.f("ix_alert_messages_next_play_at"))
        batch_op.drop_index(batch_op.f("ix_alert_messages_received_at"))

    op.drop_table("alert_messages")
    with op.batch_alter_table("alert_refusals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_refusals_source_id"))
        batch_op.drop_index(batch_op.f("ix_alert_refusals_received_at"))

    op.drop_table("alert_refusals")
    op.drop_table("alert_sources")
    with op.batch_alter_table("alert_policy_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_policy_rules_position"))

    op.drop_table("alert_policy_rules")
