"""Cases: the workflow beside each case, its append-only history, the holiday table, saved views, calls placed.

``case_events`` is append-only on both databases (triggers from
storage/append_only.py). ``case_holidays`` starts with the State Council's
holiday arrangements for 2025 and 2026 (放假 and 调休上班 days); it is data, kept
up to date by admins under 节假日设置 each December when the next year's
notice is published. Indexes on ``cases`` serve the case list, the overdue
lists and the statistics (measured with bench/cases.py at a million cases).

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-25 22:01:18.512852
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import storage.types
from storage.append_only import allow_update_and_delete, forbid_update_and_delete

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (first day, last day, name) of each holiday period, and the make-up working days (调休上班),
# as published by the General Office of the State Council for 2025 (国办发明电〔2024〕12号) and 2026.
HOLIDAY_PERIODS = [
    ("2025-01-01", "2025-01-01", "元旦"),
    ("2025-01-28", "2025-02-04", "春节"),
    ("2025-04-04", "2025-04-06", "清明节"),
    ("2025-05-01", "2025-05-05", "劳动节"),
    ("2025-05-31", "2025-06-02", "端午节"),
    ("2025-10-01", "2025-10-08", "国庆节、中秋节"),
    ("2026-01-01", "2026-01-03", "元旦"),
    ("2026-02-15", "2026-02-23", "春节"),
    ("2026-04-04", "2026-04-06", "清明节"),
    ("2026-05-01", "2026-05-05", "劳动节"),
    ("2026-06-19", "2026-06-21", "端午节"),
    ("2026-09-25", "2026-09-27", "中秋节"),
    ("2026-10-01", "2026-10-07", "国庆节"),
]
MAKE_UP_WORKDAYS = [
    ("2025-01-26", "春节调休"),
    ("2025-02-08", "春节调休"),
    ("2025-04-27", "劳动节调休"),
    ("2025-09-28", "国庆节调休"),
    ("2025-10-11", "国庆节调休"),
    ("2026-01-04", "元旦调休"),
    ("2026-02-14", "春节调休"),
    ("2026-02-28", "春节调休"),
    ("2026-05-09", "劳动节调休"),
    ("2026-09-20", "国庆节调休"),
    ("2026-10-10", "国庆节调休"),
]


def _holiday_rows() -> list[dict[str, object]]:
    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    for first, last, name in HOLIDAY_PERIODS:
        day, end = date.fromisoformat(first), date.fromisoformat(last)
        while day <= end:
            rows.append({"day": day, "kind": "holiday", "name": name, "updated_at": now, "updated_by": "migration"})
            day += timedelta(days=1)
    for day_text, name in MAKE_UP_WORKDAYS:
        rows.append(
            {"day": date.fromisoformat(day_text), "kind": "workday", "name": name, "updated_at": now,
             "updated_by": "migration"}
        )  # fmt: skip
    return rows


def upgrade() -> None:
    op.create_table(
        "case_holidays",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.CheckConstraint("kind IN ('holiday', 'workday')", name=op.f("ck_case_holidays_kind")),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_case_holidays")),
    )
    op.create_table(
        "case_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("created_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_case_views_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_views")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_case_views_user_id_name")),
    )
    with op.batch_alter_table("case_views", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_views_user_id"), ["user_id"], unique=False)

    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('created', 'triaged', 'accepted', 'rejected', 'assigned', 'transferred', "
            "'extension_requested', 'extension_approved', 'extension_denied', 'resolved', 'followed_up', "
            "'reopened', 'closed', 'noted', 'urged', 'callback', 'survey')",
            name=op.f("ck_case_events_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_events_case_id_cases"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_case_events_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_events")),
    )
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.create_index("ix_case_events_case_id_id", ["case_id", "id"], unique=False)

    op.create_table(
        "case_ledger",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("acceptance_due", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("rejected_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("rejected_reason", sa.Text(), nullable=True),
        sa.Column("leader_name", sa.String(length=64), nullable=True),
        sa.Column("assigned_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("resolution_due", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("extension_state", sa.String(length=16), nullable=False),
        sa.Column("extension_days", sa.Integer(), nullable=False),
        sa.Column("extension_requested_days", sa.Integer(), nullable=True),
        sa.Column("extension_reason", sa.Text(), nullable=True),
        sa.Column("extension_requested_by", sa.Integer(), nullable=True),
        sa.Column("extension_decided_by", sa.Integer(), nullable=True),
        sa.Column("resolved_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("result_told_via", sa.String(length=16), nullable=True),
        sa.Column("result_told_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("followup_due", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("followed_up_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("satisfaction", sa.String(length=24), nullable=True),
        sa.Column("followup_method", sa.String(length=16), nullable=True),
        sa.Column("closed_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("updated_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "extension_state IN ('none', 'requested', 'approved', 'denied')",
            name=op.f("ck_case_ledger_extension_state"),
        ),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('resolved', 'partly_resolved')", name=op.f("ck_case_ledger_outcome")
        ),
        sa.CheckConstraint(
            "satisfaction IS NULL OR satisfaction IN ('satisfied', 'basically_satisfied', 'unsatisfied')",
            name=op.f("ck_case_ledger_satisfaction"),
        ),
        sa.CheckConstraint("extension_days >= 0", name=op.f("ck_case_ledger_extension_days")),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_ledger_case_id_cases"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["extension_decided_by"],
            ["users.id"],
            name=op.f("fk_case_ledger_extension_decided_by_users"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["extension_requested_by"],
            ["users.id"],
            name=op.f("fk_case_ledger_extension_requested_by_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_case_ledger")),
    )
    with op.batch_alter_table("case_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_case_ledger_extension_state", ["extension_state"], unique=False)
        batch_op.create_index("ix_case_ledger_followup_due", ["followup_due"], unique=False)
        batch_op.create_index(
            "ix_case_ledger_open_due",
            ["resolution_due"],
            unique=False,
            sqlite_where=sa.text("accepted_at IS NOT NULL AND resolved_at IS NULL"),
            postgresql_where=sa.text("accepted_at IS NOT NULL AND resolved_at IS NULL"),
        )
        batch_op.create_index("ix_case_ledger_resolution_due", ["resolution_due"], unique=False)

    op.create_table(
        "survey_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("answer", sa.String(length=4), nullable=True),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("placed_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('placing', 'answered', 'completed', 'no_key', 'no_answer', 'busy', 'failed', 'unknown')",
            name=op.f("ck_survey_attempts_state"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_survey_attempts_case_id_cases"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_attempts")),
        sa.UniqueConstraint("case_id", "round", "attempt", name=op.f("uq_survey_attempts_case_id_round_attempt")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_survey_attempts_channel_id")),
    )
    with op.batch_alter_table("survey_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_survey_attempts_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_survey_attempts_state"), ["state"], unique=False)

    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("missed_call_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("operator_endpoint", sa.String(length=128), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("dial_status", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("requested_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("placed_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("answered_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('requested', 'placing', 'ringing', 'answered', 'operator_unanswered', "
            "'villager_unanswered', 'busy', 'failed', 'not_connected', 'expired', 'unknown')",
            name=op.f("ck_callback_attempts_state"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_callback_attempts_case_id_cases"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["missed_call_id"],
            ["missed_calls.id"],
            name=op.f("fk_callback_attempts_missed_call_id_missed_calls"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_callback_attempts_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_callback_attempts_channel_id")),
    )
    with op.batch_alter_table("callback_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_callback_attempts_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_callback_attempts_state"), ["state"], unique=False)

    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index("ix_cases_township_id_created_at", ["township_id", "created_at"], unique=False)
        batch_op.create_index("ix_cases_township_id_status", ["township_id", "status", "created_at"], unique=False)
        batch_op.create_index("ix_cases_status_created_at", ["status", "created_at"], unique=False)
        batch_op.create_index(
            "ix_cases_sealed_test_call_township_id", ["sealed", "test_call", "township_id", "created_at"], unique=False
        )

    # The history is evidence: no code path and no hand-run SQL may change or remove it.
    forbid_update_and_delete("case_events")
    holidays = sa.table(
        "case_holidays",
        sa.column("day", sa.Date()),
        sa.column("kind", sa.String()),
        sa.column("name", sa.String()),
        sa.column("updated_at", storage.types.UtcDateTime()),
        sa.column("updated_by", sa.String()),
    )
    op.bulk_insert(holidays, _holiday_rows())


def downgrade() -> None:
    allow_update_and_delete("case_events")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_sealed_test_call_township_id")
        batch_op.drop_index("ix_cases_status_created_at")
        batch_op.drop_index("ix_cases_township_id_status")
        batch_op.drop_index("ix_cases_township_id_created_at")
    with op.batch_alter_table("callback_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_callback_attempts_state"))
        batch_op.drop_index(batch_op.f("ix_callback_attempts_case_id"))

    op.drop_table("callback_attempts")
    with op.batch_alter_table("survey_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_survey_attempts_state"))
        batch_op.drop_index(batch_op.f("ix_survey_attempts_case_id"))

    op.drop_table("survey_attempts")
    with op.batch_alter_table("case_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_case_ledger_resolution_due")
        batch_op.drop_index("ix_case_ledger_open_due")
        batch_op.drop_index("ix_case_ledger_followup_due")
        batch_op.drop_index("ix_case_ledger_extension_state")

    op.drop_table("case_ledger")
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.drop_index("ix_case_events_case_id_id")

    op.drop_table("case_events")
    with op.batch_alter_table("case_views", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_views_user_id"))

    op.drop_table("case_views")
    op.drop_table("case_holidays")
