"""Alarms without the AMI link or the worker: a call placed by call file, and the worker_down alarm.

``alarm_calls.via`` says how a call went out: ``ami`` (Originate on the worker's link) or ``spool`` (a call
file in Asterisk's outgoing spool, its outcome read back from files by whichever process looks). The alarm
kinds gain ``worker_down`` (no worker heartbeat for longer than ``ops.worker_down_after_s``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 12:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS_BEFORE = ("emergency_failed", "disk", "ami_down", "alert_source_silent")
KINDS_AFTER = (*KINDS_BEFORE, "worker_down")


def _kinds(kinds: tuple[str, ...]) -> str:
    return f"kind IN ({', '.join(repr(kind) for kind in kinds)})"


def upgrade() -> None:
    with op.batch_alter_table("ops_alarms", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_ops_alarms_kind"), type_="check")
        batch_op.create_check_constraint(op.f("ck_ops_alarms_kind"), _kinds(KINDS_AFTER))
    with op.batch_alter_table("alarm_calls", schema=None) as batch_op:
        batch_op.add_column(sa.Column("via", sa.String(8), nullable=False, server_default="ami"))


def downgrade() -> None:
    op.execute("DELETE FROM ops_alarms WHERE kind = 'worker_down'")
    with op.batch_alter_table("alarm_calls", schema=None) as batch_op:
        batch_op.drop_column("via")
    with op.batch_alter_table("ops_alarms", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_ops_alarms_kind"), type_="check")
        batch_op.create_check_constraint(op.f("ck_ops_alarms_kind"), _kinds(KINDS_BEFORE))
