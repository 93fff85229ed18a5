"""One active worker: the process that fires broadcasts and talks to Asterisk.

Whatever sends an Originate or starts a broadcast must run in exactly one
process, even when someone starts a second ``serve`` by mistake. That process
holds a lock: a file lock beside the SQLite database, or a PostgreSQL advisory
lock held by a dedicated connection. The others serve pages and the API only
(standby) and keep trying, so a standby takes over when the active one dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import asyncpg
from sqlalchemy.engine import make_url

from common.tasks import BackgroundTasks
from storage.db import DatabaseConfig, is_sqlite

log = logging.getLogger(__name__)

# An arbitrary 64-bit key, the same in every process of one deployment.
ADVISORY_LOCK_KEY = 0x636E78_6163746976  # "cnx" "activ"


class WorkerLock(Protocol):
    description: str

    async def try_acquire(self) -> bool: ...

    async def still_held(self) -> bool: ...

    async def release(self) -> None: ...


class FileWorkerLock:
    """flock(2) on a file; the kernel releases it when the process dies, however it dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file lock {path}"
        self._fd: int | None = None

    async def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    async def still_held(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class PostgresWorkerLock:
    """A session-level advisory lock on a connection kept only for this purpose.

    If that connection dies, PostgreSQL drops the lock, and another process may
    take it: so losing the connection means losing the role (see WorkerElection).
    """

    def __init__(self, database_url: str, *, connect_timeout_s: float = 10.0) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._timeout = connect_timeout_s
        self.description = f"PostgreSQL advisory lock on {url.render_as_string(hide_password=True)}"
        self._connection: asyncpg.Connection | None = None

    async def try_acquire(self) -> bool:
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(self._dsn, timeout=self._timeout)
        acquired = await self._connection.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_LOCK_KEY)
        if not acquired:
            await self._close()
        return bool(acquired)

    async def still_held(self) -> bool:
        if self._connection is None or self._connection.is_closed():
            return False
        try:
            await self._connection.fetchval("SELECT 1", timeout=self._timeout)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            await self._close()
            return False
        return True

    async def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close(timeout=self._timeout)
            self._connection = None

    async def release(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            with contextlib.suppress(Exception):
                await self._connection.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
        await self._close()


def worker_lock(config: DatabaseConfig) -> WorkerLock:
    """The lock of this installation's database: a file beside SQLite, an advisory lock on PostgreSQL."""
    if is_sqlite(config.url):
        return FileWorkerLock(config.lock_file)
    return PostgresWorkerLock(config.url, connect_timeout_s=config.connect_timeout_s)


Role = Literal["active", "standby"]

# After a failed start, the next attempt waits the election interval doubled per failure, up to this.
MAX_RETRY_S = 60.0


class WorkerElection:
    """Keeps trying to hold the lock; starts the worker services when it does, stops them if it is lost.

    Whatever goes wrong in a step — the lock's database, or a worker service whose ``start``
    raises (a database error, a bug) — is caught here: what started is stopped again, the lock
    is released so that a standby can take over, the error shows in :meth:`health`, and the
    next attempt waits longer each time (the election interval doubled per failure, at most
    :data:`MAX_RETRY_S`). The watch task itself never dies of an error.
    """

    def __init__(
        self,
        lock: WorkerLock,
        *,
        on_elected: Callable[[], Awaitable[None]],
        on_demoted: Callable[[], Awaitable[None]],
        interval_s: float,
        max_retry_s: float = MAX_RETRY_S,
    ) -> None:
        self._lock = lock
        self._on_elected = on_elected
        self._on_demoted = on_demoted
        self._interval = interval_s
        self._max_retry = max(interval_s, max_retry_s)
        self._tasks = BackgroundTasks("worker-election")
        self.role: Role = "standby"
        self.last_error: str | None = None
        self.failures = 0
        self._retry_at: float | None = None  # loop time before which no new attempt is made
        self.elected = asyncio.Event()  # set while this process is the active worker

    async def start(self) -> None:
        """Try once now (so a lone process is active before it serves), then keep watching."""
        await self._step()
        self._tasks.spawn(self._watch(), "watch")

    async def _step(self) -> None:
        loop = asyncio.get_running_loop()
        if self._retry_at is not None and loop.time() < self._retry_at:
            return
        try:
            if self.role == "standby":
                if await self._lock.try_acquire():
                    self.role = "active"
                    log.info("this process is the active worker (%s)", self._lock.description)
                    await self._on_elected()
                    self.elected.set()
            elif not await self._lock.still_held():
                self.role = "standby"
                self.elected.clear()
                log.error("lost the active-worker lock (%s); stopping worker services", self._lock.description)
                await self._on_demoted()
        # Whatever a worker service's start raised (SQLAlchemy, asyncpg, OSError, a bug): rolled back, logged
        # with its error, shown in /healthz and retried; the watch task must never die with the lock held.
        except Exception as exc:  # noqa: BLE001
            await self._failed(exc)
            return
        self.last_error = None
        self.failures = 0
        self._retry_at = None

    async def _failed(self, exc: Exception) -> None:
        """Roll back: stop what started, give the lock up, and wait longer before the next attempt."""
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        delay = min(self._max_retry, self._interval * 2 ** (self.failures - 1))
        self._retry_at = asyncio.get_running_loop().time() + delay
        log.error(
            "worker election: %s; worker services stopped, lock released, next attempt in %.1f s",
            self.last_error,
            delay,
            exc_info=exc,
        )
        was_active, self.role = self.role == "active", "standby"
        self.elected.clear()
        if was_active:
            try:
                await self._on_demoted()
            except Exception:
                log.exception("worker election: stopping the worker services after a failure failed too")
        try:
            await self._lock.release()
        except Exception:
            log.exception("worker election: releasing the lock failed")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._step()
            except Exception:  # _step catches its own; this only keeps the watch alive whatever happens
                log.exception("worker election step failed")

    async def stop(self) -> None:
        await self._tasks.close()
        if self.role == "active":
            self.elected.clear()
            await self._on_demoted()
            self.role = "standby"
        await self._lock.release()

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = {"status": "ok", "role": self.role, "lock": self._lock.description}
        if self.last_error:
            # A failed start (or a lock database that does not answer) while no worker runs here.
            result["status"] = "degraded"
            result["last_error"] = self.last_error
            result["failures"] = self.failures
            if self._retry_at is not None:
                result["retry_in_s"] = round(max(0.0, self._retry_at - asyncio.get_running_loop().time()), 1)
        return result
