"""Rendered audio on disk, addressed by what went into it.

An entry's key is a hash of everything that changes its bytes (normalised
text, engine, voice, prosody, production parameters, pipeline version), so a
key never goes stale: change anything and the key changes. Layout::

    <root>/entries/ab/abcdef…/audio.mp3    the audio
    <root>/entries/ab/abcdef…/meta.json    what it is (engine, duration, loudness, parents…)
    <root>/staging/<random>/               entries being written

An entry is written in full into ``staging/``, fsynced, then renamed into
``entries/`` in one step, so no process ever sees half an entry; if two
processes race, the first rename wins and the loser's copy is dropped. Within
a process, :meth:`AudioCache.lock` serialises work on one key so the same text
rendered five times at once is rendered once.

The cache has a size limit. :meth:`AudioCache.evict` removes entries nothing
references, least recently used first: ``referenced`` is a hook the owners
(broadcast notices, hotline prompts) supply, returning the keys they still
need. Parents of a referenced entry (the speech an item was made from) are
kept too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

ReferencedKeys = Callable[[], Awaitable[set[str]]]

_META: Final = "meta.json"
_AUDIO_STEM: Final = "audio"
# Staging directories older than this belong to a process that died mid-write.
STALE_STAGING_S: Final = 3600.0


def cache_key(kind: str, parts: Mapping[str, Any]) -> str:
    """A stable key: SHA-256 of the kind and the parts as canonical JSON."""
    canonical = json.dumps({"kind": kind, **parts}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path  # the audio file
    meta: dict[str, Any] = field(compare=False)


@dataclass(frozen=True)
class EvictionReport:
    removed: int
    freed_bytes: int
    total_bytes: int


class Staging:
    """A private directory to write one entry into; :meth:`AudioCache.commit` publishes it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def audio_path(self, suffix: str) -> Path:
        return self.directory / f"{_AUDIO_STEM}.{suffix.lstrip('.')}"


class AudioCache:
    def __init__(self, root: Path, *, max_bytes: int, referenced: ReferencedKeys | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._referenced = referenced
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}
        # Serialises eviction; one pass at a time is enough.
        self._evicting: asyncio.Lock | None = None
        # What this process believes the cache holds: scanned on the first eviction check,
        # then kept up to date by commits. Other processes' writes are seen at the next scan.
        self._approx_bytes: int | None = None

    @property
    def entries_dir(self) -> Path:
        return self.root / "entries"

    @property
    def staging_dir(self) -> Path:
        return self.root / "staging"

    def set_referenced(self, referenced: ReferencedKeys) -> None:
        """Install the hook that names the keys still in use (supplied by broadcast/hotline)."""
        self._referenced = referenced

    def entry_dir(self, key: str) -> Path:
        return self.entries_dir / key[:2] / key

    # -- reading ----------------------------------------------------------------------------

    def get(self, key: str, *, touch: bool = True) -> CacheEntry | None:
        """The complete entry for ``key``, or None. A hit counts as a use for eviction."""
        directory = self.entry_dir(key)
        try:
            meta = json.loads((directory / _META).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("audio cache entry %s is unreadable; ignoring it", key)
            return None
        path = directory / meta["file"]
        if not path.exists():
            return None
        if touch:
            with contextlib.suppress(OSError):
                os.utime(directory / _META)
        return CacheEntry(key, path, meta)

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """Hold the in-process lock for ``key`` (work on one key happens once at a time)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._lock_users[key] = self._lock_users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._lock_users[key] -= 1
            if self._lock_users[key] == 0:
                del self._lock_users[key]
                del self._locks[key]

    # -- writing ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def staging(self) -> AsyncIterator[Staging]:
        """A fresh staging directory, removed on exit whatever happened (committed or not)."""
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        directory = self.staging_dir / uuid.uuid4().hex
        directory.mkdir()
        try:
            yield Staging(directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    async def commit(self, key: str, staging: Staging, audio: Path, meta: Mapping[str, Any]) -> CacheEntry:
        """Publish ``audio`` (a file inside ``staging``) under ``key``, atomically.

        The staging directory is consumed: its content moves into the cache.
        """
        if audio.parent != staging.directory:
            raise ValueError("the audio must be written inside the staging directory")
        record = {**meta, "key": key, "file": audio.name, "created": time.time()}
        size = await asyncio.to_thread(self._commit_sync, key, staging, record)
        if self._approx_bytes is not None:
            self._approx_bytes += size
        entry = self.get(key, touch=False)
        if entry is None:  # pragma: no cover - the rename just succeeded or another process's entry exists
            raise RuntimeError(f"audio cache entry {key} vanished right after it was written")
        return entry

    def _commit_sync(self, key: str, staging: Staging, record: dict[str, Any]) -> int:
        # Move the prepared content into a directory of its own: the staging directory
        # itself stays where it is, so its owner's cleanup never races our rename.
        ready = self.staging_dir / f"{uuid.uuid4().hex}.ready"
        ready.mkdir()
        try:
            for item in staging.directory.iterdir():
                os.replace(item, ready / item.name)
            meta_path = ready / _META
            meta_path.write_text(json.dumps(record, ensure_ascii=False, sort_keys=True), encoding="utf-8")
            size = 0
            for item in ready.iterdir():
                _fsync_file(item)
                size += item.stat().st_size
            _fsync_dir(ready)
            target = self.entry_dir(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(ready, target)
            except OSError:
                if not (target / _META).exists():
                    raise
                # Another process published the same key first; its bytes are as good as ours.
                return 0
            _fsync_dir(target.parent)
            return size
        finally:
            shutil.rmtree(ready, ignore_errors=True)

    # -- size limit -------------------------------------------------------------------------

    def _scan(self) -> list[tuple[float, int, str, Path, list[str]]]:
        """(last use, size, key, directory, parents) of every complete entry."""
        found: list[tuple[float, int, str, Path, list[str]]] = []
        if not self.entries_dir.exists():
            return found
        for shard in self.entries_dir.iterdir():
            if not shard.is_dir():
                continue
            for directory in shard.iterdir():
                meta_path = directory / _META
                try:
                    last_used = meta_path.stat().st_mtime
                    meta = json.loads(meta_path.read_text(encoding="utf-8"))
                    size = sum(item.stat().st_size for item in directory.iterdir())
                except (OSError, ValueError):
                    continue  # half-removed or being removed by another process
                found.append((last_used, size, directory.name, directory, list(meta.get("parents", []))))
        return found

    def total_bytes(self) -> int:
        return sum(size for _used, size, *_rest in self._scan())

    async def maybe_evict(self) -> EvictionReport | None:
        """Evict if this process believes the cache is over its limit (cheap when it is not)."""
        if self._approx_bytes is None:
            self._approx_bytes = await asyncio.to_thread(self.total_bytes)
        if self._approx_bytes <= self.max_bytes:
            return None
        return await self.evict()

    async def evict(self) -> EvictionReport:
        """Bring the cache under its size limit, removing unreferenced entries, least recently used first."""
        if self._evicting is None:
            self._evicting = asyncio.Lock()
        async with self._evicting:
            referenced = set(await self._referenced()) if self._referenced else set()
            report = await asyncio.to_thread(self._evict_sync, referenced)
            self._approx_bytes = report.total_bytes
            return report

    def _evict_sync(self, referenced: set[str]) -> EvictionReport:
        self._remove_stale_staging()
        entries = self._scan()
        total = sum(size for _used, size, *_rest in entries)
        keep = set(referenced)
        for _used, _size, key, _directory, parents in entries:
            if key in referenced:
                keep.update(parents)
        removed = freed = 0
        for _used, size, key, directory, _parents in sorted(entries):
            if total <= self.max_bytes:
                break
            if key in keep or key in self._locks:
                continue
            # Rename first, so a reader never finds a directory with its meta but half its audio.
            doomed = self.staging_dir / f"{uuid.uuid4().hex}.evicted"
            try:
                os.rename(directory, doomed)
            except OSError:
                continue
            shutil.rmtree(doomed, ignore_errors=True)
            total -= size
            freed += size
            removed += 1
        if total > self.max_bytes:
            log.warning(
                "audio cache holds %d bytes, over its limit of %d, but everything left is in use",
                total,
                self.max_bytes,
            )
        return EvictionReport(removed=removed, freed_bytes=freed, total_bytes=total)

    def _remove_stale_staging(self) -> None:
        if not self.staging_dir.exists():
            return
        cutoff = time.time() - STALE_STAGING_S
        for item in self.staging_dir.iterdir():
            with contextlib.suppress(OSError):
                if item.stat().st_mtime < cutoff:
                    shutil.rmtree(item, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
