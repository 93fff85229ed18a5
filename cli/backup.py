"""Backup and restore from the command line: ``backup DIR`` (while the service runs), ``restore DIR`` (stopped)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, OperationalError

from broadcast.part import BroadcastConfig
from cli.base import CommandError, Commands, safe_url
from hotline.part import recordings_directory
from phonecast.part import recordings_directory as phonecast_recordings
from server import Runtime, ensure_ready, opened_runtime
from settings import Settings
from storage import backup, migrate
from storage.db import DatabaseConfig
from storage.models import Case
from storage.worker_lock import worker_lock
from tts.part import SpeechConfig


def backup_directories(settings: Settings) -> dict[str, Path]:
    """What a backup copies besides the database: recordings (hotline, broadcast, 手机喊话) and produced audio."""
    recordings = recordings_directory(settings)
    directories = {"recordings": recordings}
    notice_recordings = BroadcastConfig.from_settings(settings).recordings_dir
    if notice_recordings.resolve() != recordings.resolve():
        directories["notice_recordings"] = notice_recordings
    directories["phone_recordings"] = phonecast_recordings(settings)
    if settings.cases.backup_audio:
        directories["audio"] = SpeechConfig.from_settings(settings).cache_dir
    return directories


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _backup_failed(exc: backup.BackupError) -> CommandError:
    """The Chinese sentence for the person at the console, and the technical detail after it."""
    return CommandError(f"{exc.message}（{exc.detail}）" if exc.detail else exc.message)


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return _backup(settings, args)
    except backup.BackupError as exc:
        raise _backup_failed(exc) from None


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return _restore(settings, args)
    except backup.BackupError as exc:
        raise _backup_failed(exc) from None


def _backup(settings: Settings, args: argparse.Namespace) -> int:
    async def revision() -> str | None:
        async with opened_runtime(settings) as runtime:
            await ensure_ready(runtime)
            return await migrate.current_revision(runtime.engine)

    current = asyncio.run(revision())
    print(f"backing up {safe_url(settings)} (revision {current}) into {args.directory}", file=sys.stderr)
    manifest = backup.backup(
        settings.database_url,
        args.directory,
        backup_directories(settings),
        revision=current,
        pg_dump=settings.cases.pg_dump,
        timeout_s=settings.cases.backup_timeout_s,
        progress=_progress,
    )
    size = manifest.database_file.bytes + sum(entry.bytes for entry in manifest.files)
    counts = ", ".join(f"{count} {table}" for table, count in manifest.counts.items())
    print(
        f"backup complete: {args.directory} — database ({manifest.database_kind}{', ' + counts if counts else ''}), "
        f"{len(manifest.files)} files, {size / 1e6:.1f} MB; manifest.json lists every file with its SHA-256"
    )
    return 0


def _restore(settings: Settings, args: argparse.Namespace) -> int:
    """Verify the whole backup, make sure no service runs here, then put it back and migrate to this version."""
    manifest = backup.verify(args.directory, progress=_progress)
    known = {script.revision for script in ScriptDirectory.from_config(migrate.alembic_config("")).walk_revisions()}
    if manifest.revision is not None and manifest.revision not in known:
        raise CommandError(
            f"the backup is at database revision {manifest.revision}, unknown to this version: restore it with the "
            "version of cunxiang that made it (or a newer one)"
        )

    async def run() -> int:
        lock = worker_lock(DatabaseConfig.from_settings(settings))
        if not await lock.try_acquire():
            raise CommandError("the service is running on this database: stop it first (systemctl stop cunxiang)")
        try:
            async with opened_runtime(settings) as runtime:
                existing = await _existing_cases(runtime)
            if existing and not args.force:
                raise CommandError(
                    f"this installation already holds {existing} cases; restoring would replace them "
                    "(add --force to do it anyway: the current recordings are kept beside the restored ones)"
                )
            await asyncio.to_thread(
                backup.restore,
                args.directory,
                settings.database_url,
                backup_directories(settings),
                pg_restore=settings.cases.pg_restore,
                timeout_s=settings.cases.backup_timeout_s,
                progress=_progress,
            )
            await migrate.upgrade(settings.database_url)
        finally:
            await lock.release()
        return 0

    asyncio.run(run())
    print(
        f"restored {args.directory} (made {manifest.created_at}): database and {len(manifest.files)} files, "
        f"checksums verified; database now at revision {migrate.head_revision()}"
    )
    return 0


async def _existing_cases(runtime: Runtime) -> int:
    """How many cases the target already holds (0 for a fresh or empty database)."""
    try:
        if await migrate.current_revision(runtime.engine) is None:
            return 0
        async with runtime.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(Case)) or 0)
    except (OperationalError, DBAPIError):
        return 0


def add_commands(commands: Commands) -> None:
    backup_command = commands.add_parser(
        "backup", help="copy the database (while the service runs), recordings and produced audio into DIR"
    )
    backup_command.add_argument("directory", type=Path, metavar="DIR", help="a new or empty directory")
    backup_command.set_defaults(func=cmd_backup)
    restore_command = commands.add_parser(
        "restore", help="check a backup's checksums and restore it (the service must be stopped)"
    )
    restore_command.add_argument("directory", type=Path, metavar="DIR", help="a directory made by cunxiang backup")
    restore_command.add_argument(
        "--force", action="store_true", help="replace an installation that already holds cases"
    )
    restore_command.set_defaults(func=cmd_restore)
