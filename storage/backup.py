"""Backup and restore: the database (consistent while the service runs), the directories handed in, a manifest.

A backup directory holds::

    database.sqlite3 | database.pgdump   the database
    files/<name>/<relative path>         each directory handed in (recordings, produced audio, …)
    manifest.json                        written last: format, time, database kind and revision,
                                         and every file with its size and SHA-256

How the database is copied while the service keeps running:

* **SQLite**: the online backup API (``sqlite3.Connection.backup``) in one
  step, from a read connection: in WAL mode it reads one consistent snapshot
  while writers carry on; the copy is then checked with ``PRAGMA
  integrity_check``.
* **PostgreSQL**: ``pg_dump --format=custom``, which reads everything in one
  repeatable-read transaction (a consistent snapshot); ``pg_restore`` puts it
  back. The client must be at least the server's major version.

The database is copied first and the files after it, so every recording the
copied database knows of is in the backup (recordings are only ever added,
or deleted by an explicit retention setting).

A restore checks the whole backup before it touches anything: the manifest
must be there (no manifest: a partial backup), every file listed must be
present with its size and checksum, and no file may be there that is not
listed. Directories being replaced are kept beside the new ones
(``<dir>.before-restore-<time>``), never deleted.

This module knows nothing of the domains: the ``backup``/``restore`` commands (``cli/backup.py``) say which
directories to copy and which database to use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy.engine import make_url

from common.errors import CunxiangError
from storage.db import is_sqlite, sqlite_path

FORMAT = 1
MANIFEST = "manifest.json"
FILES = "files"
SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"
CHUNK = 1 << 20

Progress = Callable[[str], None]


class BackupError(CunxiangError):
    """A backup could not be made, or a backup is incomplete, damaged or does not fit; nothing was changed."""

    default_code = "backup.failed"


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the backup directory, POSIX separators
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    created_at: str
    database_kind: str
    database_file: FileEntry
    revision: str | None
    directories: tuple[str, ...]
    files: tuple[FileEntry, ...]
    counts: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "created_at": self.created_at,
            "database": {
                "kind": self.database_kind,
                "revision": self.revision,
                "file": self.database_file.__dict__,
            },
            "directories": list(self.directories),
            "files": [entry.__dict__ for entry in self.files],
            "counts": self.counts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        try:
            database = data["database"]
            return cls(
                created_at=str(data["created_at"]),
                database_kind=str(database["kind"]),
                database_file=FileEntry(**database["file"]),
                revision=database.get("revision"),
                directories=tuple(str(name) for name in data["directories"]),
                files=tuple(FileEntry(**entry) for entry in data["files"]),
                counts={str(key): int(value) for key, value in data.get("counts", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError("备份清单格式不对", detail=f"{MANIFEST} is malformed: {exc!r}") from None


def _silent(_message: str) -> None:
    pass


# -- helpers ------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _copy(source: Path, dest: Path) -> tuple[int, str]:
    """Copy with a checksum of what was written, fsynced; mode 0600 (backups hold private recordings)."""
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    digest = hashlib.sha256()
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with source.open("rb") as reader, os.fdopen(fd, "wb") as writer:
        while block := reader.read(CHUNK):
            digest.update(block)
            writer.write(block)
            size += len(block)
        writer.flush()
        os.fsync(writer.fileno())
    return size, digest.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    """Regular files under ``root``, sorted; temporary files of an unfinished write (``.x.part``) left out."""
    if not root.exists():
        return
    for directory, subdirectories, names in os.walk(root):
        subdirectories.sort()
        for name in sorted(names):
            if name.startswith(".") and name.endswith(".part"):
                continue
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _pg_command(program: str, url: str) -> tuple[list[str], dict[str, str]]:
    """Connection arguments for pg_dump/pg_restore; the password goes in the environment, not the command line."""
    parsed = make_url(url)
    args = [program]
    # A Unix-socket directory comes as ?host=/path (asyncpg's way), a TCP host in the URL's host part.
    query_host = parsed.query.get("host")
    host = parsed.host or (query_host if isinstance(query_host, str) else None)
    if host:
        args += ["--host", host]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    args += ["--dbname", parsed.database or ""]
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return args, env


def _run(args: list[str], env: dict[str, str], timeout_s: float, what: str) -> None:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise BackupError(f"找不到程序 {args[0]}", detail=f"{args[0]} is not installed (needed to {what})") from None
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what}超时", detail=f"{args[0]} took longer than {timeout_s:g} s") from None
    if done.returncode != 0:
        raise BackupError(f"{what}失败", detail=f"{args[0]} exited {done.returncode}: {done.stderr.strip()[-800:]}")


# -- backup -------------------------------------------------------------------------------------


def backup(
    database_url: str,
    target: Path,
    directories: Mapping[str, Path],
    *,
    revision: str | None,
    pg_dump: str = "pg_dump",
    timeout_s: float = 3600.0,
    progress: Progress = _silent,
) -> Manifest:
    """Copy the database and ``directories`` into ``target`` (new or empty) and write the manifest last."""
    if target.exists() and any(target.iterdir()):
        raise BackupError("备份目录不是空的", detail=f"{target} exists and is not empty; choose a new directory")
    for name in directories:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad directory name {name!r}")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(target, 0o700)
    kind = "sqlite" if is_sqlite(database_url) else "postgresql"
    progress(f"database ({kind})")
    if kind == "sqlite":
        database_entry, counts = _backup_sqlite(database_url, target / SQLITE_FILE)
    else:
        args, env = _pg_command(pg_dump, database_url)
        dump = target / PG_FILE
        _run([*args, "--format=custom", "--no-owner", "--no-privileges", "--file", str(dump)], env, timeout_s,
             "导出 PostgreSQL 数据库")  # fmt: skip
        os.chmod(dump, 0o600)
        database_entry = FileEntry(PG_FILE, dump.stat().st_size, _sha256(dump))
        counts = {}
    entries: list[FileEntry] = []
    for name, root in directories.items():
        progress(f"files: {name} ({root})")
        for path in _walk(root):
            relative = PurePosixPath(FILES, name, *path.relative_to(root).parts)
            size, digest = _copy(path, target.joinpath(*relative.parts))
            entries.append(FileEntry(str(relative), size, digest))
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat(),
        database_kind=kind,
        database_file=database_entry,
        revision=revision,
        directories=tuple(directories),
        files=tuple(entries),
        counts=counts,
    )
    _write_json(target / MANIFEST, manifest.as_json())
    return manifest


def _backup_sqlite(database_url: str, dest: Path) -> tuple[FileEntry, dict[str, int]]:
    path = sqlite_path(database_url)
    if path is None or not path.exists():
        raise BackupError("找不到数据库文件", detail=f"no SQLite database at {path}")
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    copy = sqlite3.connect(dest)
    try:
        # One step: a single read transaction, so the copy is one consistent snapshot even while writers run.
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
        check = copy.execute("PRAGMA integrity_check").fetchone()
        if check is None or check[0] != "ok":
            raise BackupError("数据库副本校验失败", detail=f"integrity_check: {check}")
        counts = {}
        for table in ("cases", "recordings", "case_events", "users"):
            with contextlib.suppress(sqlite3.Error):
                row = copy.execute(f"SELECT count(*) FROM {table}").fetchone()
                counts[table] = int(row[0]) if row else 0
    finally:
        copy.close()
        source.close()
    return FileEntry(SQLITE_FILE, dest.stat().st_size, _sha256(dest)), counts


# -- verification and restore ----------------------------------------------------------------


def verify(source: Path, *, progress: Progress = _silent) -> Manifest:
    """The backup's manifest, once every file is checked; :class:`BackupError` if anything does not match."""
    manifest_path = source / MANIFEST
    if not manifest_path.is_file():
        raise BackupError(
            "备份不完整：没有备份清单（manifest.json），可能是备份中途停止了",
            code="backup.partial",
            detail=f"{manifest_path} is missing: the backup did not finish",
        )
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError("备份清单读不出来", code="backup.bad_manifest", detail=str(exc)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError("备份格式不认识", code="backup.bad_manifest", detail=f"format {data.get('format')!r}")
    manifest = Manifest.from_json(data)
    expected = {manifest.database_file.path: manifest.database_file}
    for entry in manifest.files:
        parts = PurePosixPath(entry.path).parts
        if entry.path.startswith("/") or ".." in parts or parts[:1] != (FILES,) or len(parts) < 3:
            raise BackupError("备份清单里有不合法的路径", code="backup.bad_manifest", detail=entry.path)
        expected[entry.path] = entry
    progress(f"checking {len(expected)} files")
    problems: list[str] = []
    for relative, entry in expected.items():
        path = source.joinpath(*PurePosixPath(relative).parts)
        if not path.is_file():
            problems.append(f"missing {relative}")
        elif path.stat().st_size != entry.bytes:
            problems.append(f"size of {relative}: {path.stat().st_size} != {entry.bytes}")
        elif _sha256(path) != entry.sha256:
            problems.append(f"checksum of {relative} differs")
    present = {path.relative_to(source).as_posix() for path in _walk(source) if path.name != MANIFEST}
    problems += [f"not in the manifest: {relative}" for relative in sorted(present - set(expected))]
    if problems:
        raise BackupError(
            f"备份与清单不符（{len(problems)}处），拒绝恢复",
            code="backup.mismatch",
            detail="; ".join(problems[:20]) + (" …" if len(problems) > 20 else ""),
        )
    return manifest


def restore(
    source: Path,
    database_url: str,
    directories: Mapping[str, Path],
    *,
    pg_restore: str = "pg_restore",
    timeout_s: float = 3600.0,
    progress: Progress = _silent,
) -> Manifest:
    """Put a verified backup back: the database, then each directory (the old ones kept aside)."""
    manifest = verify(source, progress=progress)
    kind = "sqlite" if is_sqlite(database_url) else "postgresql"
    if manifest.database_kind != kind:
        raise BackupError(
            f"这是{manifest.database_kind}数据库的备份，不能恢复到{kind}",
            code="backup.wrong_database",
            detail=f"backup of {manifest.database_kind}, target is {kind}",
        )
    unknown = set(manifest.directories) - set(directories)
    if unknown:
        raise BackupError(
            "备份里有本系统不认识的目录", code="backup.unknown_directory", detail=", ".join(sorted(unknown))
        )
    progress("database")
    if kind == "sqlite":
        _restore_sqlite(source / SQLITE_FILE, database_url)
    else:
        args, env = _pg_command(pg_restore, database_url)
        _run(
            [*args, "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
             "--exit-on-error", str(source / PG_FILE)],
            env, timeout_s, "恢复 PostgreSQL 数据库",
        )  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    by_directory: dict[str, list[FileEntry]] = {name: [] for name in manifest.directories}
    for entry in manifest.files:
        by_directory[PurePosixPath(entry.path).parts[1]].append(entry)
    for name, entries in by_directory.items():
        progress(f"files: {name}")
        _restore_directory(source, directories[name], entries, stamp)
    return manifest


def _restore_sqlite(copy: Path, database_url: str) -> None:
    path = sqlite_path(database_url)
    if path is None:
        raise BackupError("数据库地址不是文件", detail=database_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    _copy(copy, temporary)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()
    os.replace(temporary, path)


def _restore_directory(source: Path, dest: Path, entries: list[FileEntry], stamp: str) -> None:
    staging = dest.with_name(f".{dest.name}.restore-{uuid.uuid4().hex}")
    staging.mkdir(parents=True, mode=0o700)
    try:
        for entry in entries:
            parts = PurePosixPath(entry.path).parts[2:]
            size, digest = _copy(source.joinpath(*PurePosixPath(entry.path).parts), staging.joinpath(*parts))
            if size != entry.bytes or digest != entry.sha256:
                raise BackupError("恢复时文件校验失败", detail=f"{entry.path} changed while being restored")
        for directory, _subdirectories, _names in os.walk(staging):
            os.chmod(directory, 0o700)
        if dest.exists():
            if any(dest.iterdir()):
                dest.rename(dest.with_name(f"{dest.name}.before-restore-{stamp}"))
            else:
                dest.rmdir()
        staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
