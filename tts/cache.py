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

The cache has a size limit. :meth:`AudioCache.evict` removes entries nobody
keeps, least recently used first. **Kept audio is never evicted**, whatever the
limit; any part of the service says what it needs kept in one of two ways:

* a *keeper* (:meth:`AudioCache.add_keeper`): a name and an async function
  returning keys, asked at every eviction and usage check — for what the
  database says must stay (approved notices' audio; pending notices' previews;
  queued and playing items), seen alike by every process;
* a *keep set* (:meth:`AudioCache.keep_set`): keys one piece of work in this
  process needs right now (a render being approved, the item a zone plays, the
  audio of a speaker test), held until the set is closed::

      with cache.keep_set("approval of notice 12") as keep:
          result = await producer.render_text(text, keep=keep)   # kept from the moment it exists
          ...                                                    # until the database keeps it

Parents of a kept entry (the speech an item was made from) are kept too. When
what must be kept does not fit under the limit, nothing is evicted to make room:
:meth:`AudioCache.ensure_room` refuses new kept audio with :class:`CacheFull`
(how many bytes are needed), unless the caller may overflow (an emergency is
never refused for space: it is kept over the limit, and :meth:`AudioCache.health`
reports the overflow and the refusals as ``degraded``).
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from common.errors import Conflict

log = logging.getLogger(__name__)

# A keeper: returns the keys it needs kept (asked at every eviction and usage check).
KeptKeys = Callable[[], Awaitable[Iterable[str]]]
# How long a usage figure (a scan of the cache) is reused by health checks and the 待办 panel.
USAGE_TTL_S: Final = 10.0
MIB: Final = 1024 * 1024

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
    kept_bytes: int = 0


@dataclass(frozen=True)
class CacheUsage:
    """What the cache holds: everything, what must be kept (kept keys and their parents), and the limit."""

    total_bytes: int
    kept_bytes: int
    max_bytes: int

    @property
    def room_for_kept(self) -> int:
        """Bytes more that could be kept under the limit (0 when full)."""
        return max(0, self.max_bytes - self.kept_bytes)

    @property
    def overflow_bytes(self) -> int:
        """How far what must be kept is over the limit (emergencies may put it there)."""
        return max(0, self.kept_bytes - self.max_bytes)


class CacheFull(Conflict):
    """New audio that must be kept does not fit: the message says how much space is needed."""

    default_code = "audio.cache_full"

    def __init__(self, needed_bytes: int, item_bytes: int, usage: CacheUsage) -> None:
        self.needed_bytes = needed_bytes
        self.item_bytes = item_bytes
        self.usage = usage
        super().__init__(
            f"音频缓存已满：这条的音频约 {_mb(item_bytes)}，而必须保留的音频已有 {_mb(usage.kept_bytes)}"
            f"（上限 {_mb(usage.max_bytes)}），还需要腾出约 {_mb(needed_bytes)} 的空间。"
            "请先归档不再播出的通知，或请管理员调大音频缓存（audio.cache_max_mb）。",
            detail=(
                f"kept {usage.kept_bytes} B + new {item_bytes} B > limit {usage.max_bytes} B: {needed_bytes} B needed"
            ),
        )


def _mb(size: int) -> str:
    return f"{max(size, 0) / MIB:.1f} MB"


class KeepSet:
    """Keys one piece of work in this process needs now: never evicted while they are in the set.

    Made by :meth:`AudioCache.keep_set`; closing it (or leaving its ``with`` block) lets them go.
    """

    def __init__(self, cache: AudioCache, name: str) -> None:
        self.name = name
        self._cache = cache
        self.keys: set[str] = set()

    def add(self, keys: Iterable[str]) -> None:
        self.keys.update(key for key in keys if key)

    def discard(self, keys: Iterable[str]) -> None:
        self.keys.difference_update(keys)

    def close(self) -> None:
        self.keys.clear()
        self._cache._release(self)

    def __enter__(self) -> KeepSet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Staging:
    """A private directory to write one entry into; :meth:`AudioCache.commit` publishes it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def audio_path(self, suffix: str) -> Path:
        return self.directory / f"{_AUDIO_STEM}.{suffix.lstrip('.')}"


class AudioCache:
    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._keepers: dict[str, KeptKeys] = {}
        self._keep_sets: list[KeepSet] = []
        self._usage: tuple[float, CacheUsage] | None = None
        # The last refusal for space (bytes needed), until what must be kept fits again.
        self._refused_bytes: int | None = None
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

    # -- what must be kept ------------------------------------------------------------------

    def add_keeper(self, name: str, keys: KeptKeys) -> None:
        """Register ``keys`` (an async function) under ``name``: what it returns is never evicted.

        For audio the database says must stay, in every process: approved notices' items,
        pending notices' previews, queued and playing broadcasts. A second keeper with the
        same name replaces the first.
        """
        self._keepers[name] = keys
        self._usage = None

    def keep_set(self, name: str) -> KeepSet:
        """A set of keys this process needs kept now (close it, or use ``with``, to let them go)."""
        keep = KeepSet(self, name)
        self._keep_sets.append(keep)
        return keep

    @contextlib.contextmanager
    def keeping(self, keys: Iterable[str], name: str = "in use") -> Iterator[KeepSet]:
        """Keep ``keys`` for the duration of a ``with`` block."""
        with self.keep_set(name) as keep:
            keep.add(keys)
            yield keep

    def _release(self, keep: KeepSet) -> None:
        with contextlib.suppress(ValueError):
            self._keep_sets.remove(keep)

    async def kept_keys(self) -> set[str]:
        """Every key that must not be evicted now (keepers and keep sets; parents are added at the scan)."""
        kept: set[str] = set()
        for keep in self._keep_sets:
            kept.update(keep.keys)
        for name, keeper in list(self._keepers.items()):
            try:
                kept.update(await keeper())
            except Exception as exc:
                # Without its answer nothing can be evicted safely: treat everything as kept this time.
                raise RuntimeError(f"audio cache keeper {name!r} failed: {exc}") from exc
        return kept

    async def usage(self, *, fresh: bool = False) -> CacheUsage:
        """Bytes held, bytes that must be kept, and the limit (a scan, reused for a few seconds)."""
        loop = asyncio.get_running_loop()
        if not fresh and self._usage is not None and loop.time() - self._usage[0] < USAGE_TTL_S:
            return self._usage[1]
        kept = await self.kept_keys()
        total, kept_bytes, _same = await asyncio.to_thread(self._measure_sync, kept, set())
        usage = CacheUsage(total_bytes=total, kept_bytes=kept_bytes, max_bytes=self.max_bytes)
        self._usage = (loop.time(), usage)
        if self._refused_bytes is not None and usage.room_for_kept >= self._refused_bytes:
            self._refused_bytes = None
        return usage

    async def ensure_room(self, new_keys: Iterable[str] = (), *, extra_bytes: int = 0, overflow: bool = False) -> None:
        """Check that ``new_keys`` (already in the cache) and ``extra_bytes`` more can be kept under the limit.

        Raises :class:`CacheFull` with the bytes to free when they cannot (nothing is evicted to
        make room: everything else there is kept too); with ``overflow`` (an emergency) it never
        raises, and the overflow shows in :meth:`health`.
        """
        wanted = set(new_keys)
        # What was kept before these keys (they may already be in a keep set), and with them.
        kept = await self.kept_keys() - wanted
        total, kept_bytes, with_new = await asyncio.to_thread(self._measure_sync, kept, wanted)
        usage = CacheUsage(total_bytes=total, kept_bytes=kept_bytes, max_bytes=self.max_bytes)
        self._usage = None
        item_bytes = with_new - kept_bytes + extra_bytes
        over = kept_bytes + item_bytes - self.max_bytes
        if over <= 0:
            self._refused_bytes = None
            return
        if overflow:
            log.warning(
                "audio cache: keeping %d bytes over its limit of %d (an emergency is never refused for space)",
                over,
                self.max_bytes,
            )
            return
        self._refused_bytes = over
        raise CacheFull(over, item_bytes, usage)

    async def health(self) -> dict[str, Any]:
        """For /healthz: ``degraded`` when what must be kept is over the limit or new audio was refused for space."""
        usage = await self.usage()
        result: dict[str, Any] = {
            "status": "ok",
            "total_mb": round(usage.total_bytes / MIB, 1),
            "kept_mb": round(usage.kept_bytes / MIB, 1),
            "max_mb": round(self.max_bytes / MIB, 1),
            "full": False,
        }
        if usage.overflow_bytes:
            result.update(status="degraded", full=True, overflow_mb=round(usage.overflow_bytes / MIB, 1))
            result["detail"] = f"kept audio is {_mb(usage.overflow_bytes)} over the limit (emergencies are kept)"
        elif self._refused_bytes is not None:
            result.update(status="degraded", full=True, needed_mb=round(self._refused_bytes / MIB, 1))
            result["detail"] = f"full: new audio refused, {_mb(self._refused_bytes)} more needed"
        return result

    def full(self) -> tuple[bool, int]:
        """(full, bytes needed) from the last usage figure and refusal, without scanning (for pages)."""
        if self._refused_bytes is not None:
            return True, self._refused_bytes
        if self._usage is not None and self._usage[1].overflow_bytes:
            return True, self._usage[1].overflow_bytes
        return False, 0

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

    @staticmethod
    def _closure(entries: list[tuple[float, int, str, Path, list[str]]], kept: set[str]) -> set[str]:
        """The kept keys and the parents of every kept entry that is present."""
        closure = set(kept)
        for _used, _size, key, _directory, parents in entries:
            if key in kept:
                closure.update(parents)
        return closure

    def _measure_sync(self, kept: set[str], more: set[str]) -> tuple[int, int, int]:
        """(bytes held, bytes kept, bytes kept if ``more`` were kept too), from one scan."""
        entries = self._scan()
        closure = self._closure(entries, kept)
        with_more = self._closure(entries, kept | more)
        total = sum(size for _used, size, *_rest in entries)
        kept_bytes = sum(size for _used, size, key, *_rest in entries if key in closure)
        kept_with_more = sum(size for _used, size, key, *_rest in entries if key in with_more)
        return total, kept_bytes, kept_with_more

    async def maybe_evict(self) -> EvictionReport | None:
        """Evict if this process believes the cache is over its limit (cheap when it is not)."""
        if self._approx_bytes is None:
            self._approx_bytes = await asyncio.to_thread(self.total_bytes)
        if self._approx_bytes <= self.max_bytes:
            return None
        return await self.evict()

    async def evict(self) -> EvictionReport:
        """Bring the cache under its size limit, removing entries nobody keeps, least recently used first."""
        if self._evicting is None:
            self._evicting = asyncio.Lock()
        async with self._evicting:
            try:
                kept = await self.kept_keys()
            except RuntimeError:
                log.exception("audio cache: a keeper failed; nothing is evicted this time")
                return EvictionReport(removed=0, freed_bytes=0, total_bytes=self._approx_bytes or 0)
            report = await asyncio.to_thread(self._evict_sync, kept)
            self._approx_bytes = report.total_bytes
            self._usage = None
            return report

    def _evict_sync(self, kept: set[str]) -> EvictionReport:
        self._remove_stale_staging()
        entries = self._scan()
        total = sum(size for _used, size, *_rest in entries)
        keep = self._closure(entries, kept)
        kept_bytes = sum(size for _used, size, key, *_rest in entries if key in keep)
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
                "audio cache holds %d bytes, over its limit of %d, but everything left is kept",
                total,
                self.max_bytes,
            )
        return EvictionReport(removed=removed, freed_bytes=freed, total_bytes=total, kept_bytes=kept_bytes)

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
