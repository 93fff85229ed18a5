"""Never lost, never twice: replays after a stop, two "not started" states, what each speaker was given.

* ``broadcast_zones.replay_of`` (UNIQUE) links a 重播 to the row the service's stop cut or left queued,
  and ``replay_pending`` marks rows whose replay the next worker must decide;
* states 9 未开始（被抢占） and 10 未开始（服务停止） join the as-run states (the CHECK constraints widen);
* ``broadcast_speakers.packets_sent`` / ``played_s``: what a speaker was given of the item;
* ``worker_heartbeats``: a worker service's last sign of life, so the next one knows when it stopped.

On SQLite, widening a CHECK constraint rebuilds the table (batch mode), which drops its triggers:
the as-run tables' no-delete triggers are created again afterwards.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 09:12:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AS_RUN_TABLES = ("broadcasts", "broadcast_zones", "broadcast_speakers")
OLD_CHECK = "state BETWEEN 0 AND 8"
NEW_CHECK = "state BETWEEN 0 AND 10"


def _forbid_delete(table: str) -> None:
    """The as-run tables' trigger of migration 0003, as it was (a record of what played is never removed)."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        op.execute(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} rows are never deleted'); END"
        )


def _widen_state_check(table: str, check: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f(f"ck_{table}_state"), type_="check")
        batch_op.create_check_constraint("state", check)


def upgrade() -> None:
    for table in AS_RUN_TABLES:
        _widen_state_check(table, NEW_CHECK)
    with op.batch_alter_table("broadcast_zones", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replay_of", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("replay_pending", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index(batch_op.f("ix_broadcast_zones_replay_pending"), ["replay_pending"], unique=False)
        batch_op.create_unique_constraint(batch_op.f("uq_broadcast_zones_replay_of"), ["replay_of"])
        batch_op.create_foreign_key(
            batch_op.f("fk_broadcast_zones_replay_of_broadcast_zones"),
            "broadcast_zones",
            ["replay_of"],
            ["id"],
            ondelete="RESTRICT",
        )
    with op.batch_alter_table("broadcast_speakers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("packets_sent", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("played_s", sa.Float(), nullable=True))
    op.create_table(
        "worker_heartbeats",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("alive_at", storage.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", storage.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("process", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_heartbeats")),
    )
    for table in AS_RUN_TABLES:
        _forbid_delete(table)


def downgrade() -> None:
    op.drop_table("worker_heartbeats")
    with op.batch_alter_table("broadcast_speakers", schema=None) as batch_op:
        batch_op.drop_column("played_s")
        batch_op.drop_column("packets_sent")
    with op.batch_alter_table("broadcast_zones", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_broadcast_zones_replay_of_broadcast_zones"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_broadcast_zones_replay_of"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_broadcast_zones_replay_pending"))
        batch_op.drop_column("replay_pending")
        batch_op.drop_column("replay_of")
    for table in AS_RUN_TABLES:
        _widen_state_check(table, OLD_CHECK)
    for table in AS_RUN_TABLES:
        _forbid_delete(table)
