"""Case-ledger benchmark: a million cases on SQLite and PostgreSQL, each query against the raw driver in the same run.

    .venv/bin/python -m bench.cases                       # 1,000,000 cases, SQLite and PostgreSQL
    .venv/bin/python -m bench.cases --cases 100000 --db sqlite --runs 100 --skip-replay

(a) Generation, in a spawned process of its own (the measuring process's memory is then
    the service's): cases spread over five years (2022–2026), every state of the workflow
    with its ledger row, 2 % sealed, 0.5 % dial tests; written with ``executemany``
    (SQLite) and ``COPY`` (PostgreSQL), then the roll-ups and open cases back-filled (as
    migrations 0013 and 0016 do) and ANALYZE.
(b) The dashboard and the 催办 list as the service runs them (``Statistics.report`` for the
    page's three periods as the county, a township and an inspector see them;
    ``Ledger.reminders``' first screen and one unit's list), ``--runs`` times each (100:
    count, median, p95, p99, max, nearest rank) with each view's own peak RSS (VmHWM reset
    before it); then the case list's queries (``Ledger.page``), ``--list-runs`` times each.
    Each against the very statements it sent (captured from the engine) run again through
    the raw driver (``sqlite3``; ``asyncpg``) in the same run — and on PostgreSQL the
    server's own ``EXPLAIN ANALYZE`` execution time of those statements.
(c) Recording replay: a five-minute recording fetched whole and in 256 KB
    ranges through the real route (session, scope, sealing, audit, Range)
    against a minimal aiohttp static handler serving the same file, in the
    same run: MB/s and requests/s.

Nothing here reads outside the repository. PostgreSQL is a throwaway cluster (as in the
tests) unless ``--pg-url`` names one.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import secrets
import shutil
import sqlite3
import struct
import tempfile
import time
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.figures import isolate_from_environment, offline_speech, peak_memory, summary, write_results

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI).astimezone(UTC)
FIRST = datetime(2022, 1, 1, tzinfo=SHANGHAI).astimezone(UTC)
TOWNSHIPS = 9
VILLAGES_PER_TOWNSHIP = 11
DEPARTMENTS = 6
# How a county's cases stand by age: recent ones are being worked, old ones closed out — with a few old
# ones still open (积案), which is what the overdue lists are for.
STATUS_BY_AGE: list[tuple[int, list[tuple[str, float]]]] = [
    (60, [("new", 0.08), ("accepted", 0.05), ("rejected", 0.03), ("in_progress", 0.5), ("resolved", 0.12),
          ("followed_up", 0.15), ("closed", 0.07)]),
    (150, [("rejected", 0.03), ("in_progress", 0.05), ("resolved", 0.02), ("followed_up", 0.2), ("closed", 0.7)]),
    (100_000, [("new", 0.001), ("rejected", 0.03), ("in_progress", 0.005), ("followed_up", 0.04), ("closed", 0.924)]),
]  # fmt: skip
CATEGORIES = ["land", "neighbour", "family", "wages", "welfare", "infrastructure", "environment", "policy", "other"]
CHANNELS = [("hotline", 0.7), ("walk_in", 0.15), ("grid", 0.1), ("letter", 0.05)]
SUMMARIES = ["村口的桥裂了", "邻居占了宅基地", "工钱拖欠半年", "低保没有批下来", "饮水管道坏了", "垃圾没人清运"]


def _sqlite_time(value: datetime | None) -> str | None:
    """How SQLAlchemy stores a UtcDateTime on SQLite (naive UTC text): the bench writes the same bytes."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _damm(digits: str) -> str:
    from cases.numbers import damm_check_digit

    return digits + damm_check_digit(digits)


@dataclass
class Generated:
    cases: int
    seconds: float
    ledger_rows: int


def case_rows(count: int, village_ids: list[tuple[int, int]], unit_ids: list[int], seed: int = 7) -> Any:
    """(case tuple, ledger tuple or None) for each case, with datetimes; deterministic."""
    rng = random.Random(seed)
    span = (NOW - FIRST).total_seconds()
    by_age: list[tuple[int, list[str], list[float]]] = [
        (days, [status for status, _ in weights], [weight for _, weight in weights]) for days, weights in STATUS_BY_AGE
    ]
    channels, channel_weights = zip(*CHANNELS, strict=True)
    for index in range(count):
        created = FIRST + timedelta(seconds=span * (index + rng.random()) / count)
        township_id, village_id = rng.choice(village_ids)
        age = (NOW - created).days
        _limit, statuses, weights = next(entry for entry in by_age if age <= entry[0])
        status = rng.choices(statuses, weights)[0]
        channel = rng.choices(channels, channel_weights)[0]
        sealed = rng.random() < 0.02
        category = "discipline" if sealed else rng.choice(CATEGORIES)
        unplaced = status == "new" and channel == "hotline" and rng.random() < 0.5
        unit_id = rng.choice(unit_ids) if status in ("in_progress", "resolved", "followed_up", "closed") else None
        case = (
            index + 1, _damm(str(1_000_000 + index)), f"bench-{index}" if channel == "hotline" else None, channel,
            status, category, sealed, f"138{rng.randrange(10**8):08d}", False, None,
            None if unplaced else village_id, None if unplaced else township_id, unit_id,
            "1" if channel == "hotline" else None, "1234", rng.choice(SUMMARIES), rng.random() < 0.005,
            created, created,
        )  # fmt: skip
        ledger = None
        if status != "new":
            decided = created + timedelta(days=rng.uniform(0.1, 18))
            late = decided - created > timedelta(days=15)
            accepted = None if status == "rejected" else decided
            resolution_due = decided + timedelta(days=60) if accepted else None
            resolved = outcome = satisfaction = followed = closed = None
            if status in ("resolved", "followed_up", "closed"):
                resolved = decided + timedelta(days=rng.uniform(1, 70))
                late = late or (resolution_due is not None and resolved > resolution_due)
                outcome = "partly_resolved" if rng.random() < 0.1 else "resolved"
            if status in ("followed_up", "closed"):
                assert resolved is not None
                followed = resolved + timedelta(days=1.2)
                satisfaction = rng.choices(["satisfied", "basically_satisfied", "unsatisfied"], [0.88, 0.08, 0.04])[0]
                if status == "closed":
                    closed = followed + timedelta(hours=3)
            ledger = (
                index + 1, created + timedelta(days=15), accepted, decided if status == "rejected" else None,
                "不属于受理范围" if status == "rejected" else None, "包案领导" if unit_id else None,
                decided if unit_id else None, resolution_due, "none", 0, None, None, None, None, resolved, outcome,
                "已办结" if resolved else None, "phone" if resolved else None, resolved,
                resolved + timedelta(days=1) if resolved else None, followed, satisfaction,
                "phone" if followed else None, closed, 0, late, created,
            )  # fmt: skip
        yield case, ledger


CASE_COLUMNS = (
    "id, number, linkedid, channel, status, category, sealed, caller_number, caller_withheld, caller_name, "
    "village_id, township_id, unit_id, ivr_choice, pin, summary, test_call, created_at, updated_at"
)
LEDGER_COLUMNS = (
    "case_id, acceptance_due, accepted_at, rejected_at, rejected_reason, leader_name, assigned_at, resolution_due, "
    "extension_state, extension_days, extension_requested_days, extension_reason, extension_requested_by, "
    "extension_decided_by, resolved_at, outcome, result, result_told_via, result_told_at, followup_due, "
    "followed_up_at, satisfaction, followup_method, closed_at, reopen_count, late, updated_at"
)


# -- setting up a database ---------------------------------------------------------------------------


async def prepare(url: str) -> tuple[list[tuple[int, int]], list[int]]:
    """Migrate, and add the county's places and units; returns (township, village) pairs and unit ids."""
    from sqlalchemy import insert

    from storage import migrate
    from storage.db import create_engine
    from storage.models import County, Township, Unit, Village

    await migrate.upgrade(url)
    engine = create_engine(url)
    pairs: list[tuple[int, int]] = []
    units: list[int] = []
    async with engine.begin() as connection:
        now = datetime.now(UTC)
        await connection.execute(insert(County).values(id=1, name="基准县", created_at=now))
        for township in range(1, TOWNSHIPS + 1):
            await connection.execute(insert(Township).values(id=township, county_id=1, name=f"乡{township}",
                                                             created_at=now))  # fmt: skip
            await connection.execute(insert(Unit).values(id=township, name=f"乡{township}政府", kind="township",
                                                         township_id=township, created_at=now))  # fmt: skip
            units.append(township)
            for village in range(VILLAGES_PER_TOWNSHIP):
                village_id = township * 100 + village
                await connection.execute(insert(Village).values(id=village_id, township_id=township,
                                                                name=f"村{village_id}", created_at=now))  # fmt: skip
                pairs.append((township, village_id))
        for department in range(DEPARTMENTS):
            unit_id = 100 + department
            await connection.execute(insert(Unit).values(id=unit_id, name=f"县局{department}", kind="department",
                                                         created_at=now))  # fmt: skip
            units.append(unit_id)
    await engine.dispose()
    return pairs, units


def generate_sqlite(path: Path, count: int, pairs: list[tuple[int, int]], units: list[int]) -> Generated:
    started = time.perf_counter()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-200000")
    case_sql = f"INSERT INTO cases ({CASE_COLUMNS}) VALUES ({', '.join('?' * 19)})"
    ledger_sql = f"INSERT INTO case_ledger ({LEDGER_COLUMNS}) VALUES ({', '.join('?' * 27)})"
    cases: list[tuple[Any, ...]] = []
    ledgers: list[tuple[Any, ...]] = []
    ledger_count = 0

    def flush() -> None:
        connection.executemany(case_sql, cases)
        connection.executemany(ledger_sql, ledgers)
        cases.clear()
        ledgers.clear()

    # Indexes are dropped for the load and built again after it (a sorted build beats a million inserts into
    # each B-tree); the UNIQUE constraints stay, so the data is checked as the service would check it.
    indexes = connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('cases', 'case_ledger') "
        "AND sql IS NOT NULL"
    ).fetchall()
    for name, _sql in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    with connection:
        for case, ledger in case_rows(count, pairs, units):
            cases.append(tuple(_sqlite_time(v) if isinstance(v, datetime) else v for v in case))
            if ledger is not None:
                ledgers.append(tuple(_sqlite_time(v) if isinstance(v, datetime) else v for v in ledger))
                ledger_count += 1
            if len(cases) >= 50_000:
                flush()
        flush()
    for _name, sql in indexes:
        connection.execute(sql)
    connection.execute("ANALYZE")
    connection.close()
    return Generated(count, time.perf_counter() - started, ledger_count)


async def generate_postgres(url: str, count: int, pairs: list[tuple[int, int]], units: list[int]) -> Generated:
    import asyncpg

    started = time.perf_counter()
    connection = await asyncpg.connect(raw_dsn(url))
    cases: list[tuple[Any, ...]] = []
    ledgers: list[tuple[Any, ...]] = []
    ledger_count = 0
    case_columns = [column.strip() for column in CASE_COLUMNS.split(",")]
    ledger_columns = [column.strip() for column in LEDGER_COLUMNS.split(",")]
    indexes = await connection.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('cases', 'case_ledger') "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
    )
    for index in indexes:
        await connection.execute(f'DROP INDEX "{index["indexname"]}"')

    async def flush() -> None:
        await connection.copy_records_to_table("cases", records=cases, columns=case_columns)
        await connection.copy_records_to_table("case_ledger", records=ledgers, columns=ledger_columns)
        cases.clear()
        ledgers.clear()

    for case, ledger in case_rows(count, pairs, units):
        cases.append(case)
        if ledger is not None:
            ledgers.append(ledger)
            ledger_count += 1
        if len(cases) >= 50_000:
            await flush()
    await flush()
    for index in indexes:
        await connection.execute(index["indexdef"])
    await connection.execute("SELECT setval(pg_get_serial_sequence('cases', 'id'), (SELECT max(id) FROM cases))")
    await connection.execute("ANALYZE")
    await connection.close()
    return Generated(count, time.perf_counter() - started, ledger_count)


def raw_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host")
    return f"postgresql://{parsed.username or ''}@/{parsed.database}?host={host}" if host else str(parsed)


# -- measuring the ledger's queries -------------------------------------------------------------------


@dataclass
class Captured:
    statements: list[tuple[str, Any]]


def capture(engine: AsyncEngine) -> Captured:
    captured = Captured([])

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.statements.append((statement, parameters))

    return captured


def quantiles(samples: list[float]) -> tuple[float, float]:
    """Median and p95 (nearest rank, bench/figures.py) of timings in seconds."""
    figures = summary(samples, digits=9)
    return float(figures["median"]), float(figures["p95"])


class RawDriver:
    """The same statements through the plain driver: sqlite3, or asyncpg (plus EXPLAIN ANALYZE)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite: sqlite3.Connection | None = None
        self.pg: Any = None

    async def open(self) -> None:
        from storage.db import is_sqlite, sqlite_path

        if is_sqlite(self.url):
            path = sqlite_path(self.url)
            assert path is not None
            self.sqlite = sqlite3.connect(path)
        else:
            import asyncpg

            self.pg = await asyncpg.connect(raw_dsn(self.url), server_settings={"timezone": "UTC"})

    async def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()
        if self.pg is not None:
            await self.pg.close()

    async def run(self, statements: list[tuple[str, Any]]) -> float:
        started = time.perf_counter()
        for statement, parameters in statements:
            if self.sqlite is not None:
                self.sqlite.execute(statement, parameters).fetchall()
            else:
                await self.pg.fetch(statement, *(parameters or ()))
        return time.perf_counter() - started

    async def explain(self, statements: list[tuple[str, Any]]) -> float | None:
        """The server's own execution time of the statements (PostgreSQL's EXPLAIN ANALYZE), in seconds."""
        if self.pg is None:
            return None
        total = 0.0
        for statement, parameters in statements:
            plan = await self.pg.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", *(parameters or ()))
            import json

            total += json.loads(plan)[0]["Execution Time"] / 1000
        return total


async def measure_queries(url: str, view_runs: int, list_runs: int) -> list[dict[str, Any]]:
    from accounts.principal import Principal
    from cases.clocks import ClockPolicy, HolidayTable
    from cases.ledger import CaseFilters, Ledger
    from cases.sealed import CaseAccess
    from cases.statistics import Statistics
    from common.clock import ManualClock
    from storage.db import create_engine, make_session_factory

    engine = create_engine(url)
    sessions = make_session_factory(engine)
    clock = ManualClock(NOW)
    holidays = HolidayTable(sessions, clock, ClockPolicy(zone=SHANGHAI))
    access = CaseAccess(sessions, clock)
    ledger = Ledger(sessions, clock, holidays, access)
    stats = Statistics(sessions, clock, holidays)

    def person(roles: set[str], townships: set[int] | None) -> Principal:
        return Principal(0, "bench", "bench", frozenset(roles), townships is None, frozenset(townships or ()), False)

    leader = person({"leader"}, None)
    staff = person({"staff"}, {3})
    inspector = person({"inspector"}, None)
    today = NOW.astimezone(SHANGHAI).date()
    # The dashboard page's three periods (今年, 去年, 近十二个月) for the county, a township and an inspector, and
    # the 催办 list's first screen: the goals are set on these, measured ``view_runs`` times each (a p99 needs
    # 100). The list's queries are context, ``list_runs`` times each (one reads every summary: seconds).
    twelve_months = date(today.year - 1, today.month + 1, 1) if today.month < 12 else date(today.year, 1, 1)
    views: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("dashboard: this year + last year (leader)", lambda: stats.report(leader)),
        ("dashboard: one township (staff)", lambda: stats.report(staff)),
        ("dashboard: last year (leader)", lambda: stats.report(leader, date(today.year - 1, 1, 1),
                                                                date(today.year - 1, 12, 31))),
        ("dashboard: twelve months (leader)", lambda: stats.report(leader, twelve_months, today)),
        ("dashboard: this year (inspector, sealed included)", lambda: stats.report(inspector)),
        ("催办 first screen (counts per unit + first 50 rows)", lambda: ledger.reminders(leader)),
        ("催办: one unit's list (up to 1,000 rows)", lambda: ledger.reminders(leader, limit=1000, unit="3")),
    ]  # fmt: skip
    lists: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("list: county, newest first (page 1 + total)", lambda: ledger.page(leader, CaseFilters())),
        ("list: page 200 (offset 9,950)", lambda: ledger.page(leader, CaseFilters(), offset=9_950)),
        ("list: one township + in progress", lambda: ledger.page(leader, CaseFilters(township_id=5,
                                                                                   statuses=("in_progress",)))),
        ("list: township-scoped staff", lambda: ledger.page(staff, CaseFilters())),
        ("list: overdue now", lambda: ledger.page(leader, CaseFilters(deadline="overdue"))),
        ("list: due within 3 days", lambda: ledger.page(leader, CaseFilters(deadline="due_soon", sort="due"))),
        ("list: a case number typed in", lambda: ledger.page(leader, CaseFilters(q=_damm(str(1_123_456))))),
        ("list: category + channel + this month", lambda: ledger.page(leader, CaseFilters(
            category="wages", channel="walk_in", created_from=date(2026, 11, 1), created_to=date(2026, 11, 20)))),
        ("list: words in the summary (full scan)", lambda: ledger.page(leader, CaseFilters(q="宅基地"))),
    ]  # fmt: skip
    raw = RawDriver(url)
    await raw.open()
    results = []
    captured = capture(engine)
    try:
        for label, call, runs in [*((*view, view_runs) for view in views), *((*item, list_runs) for item in lists)]:
            await call()  # warm the caches (both sides get the same warm-up)
            captured.statements.clear()
            await call()
            statements = [(s, p) for s, p in captured.statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
            await raw.run(statements)
            reset_peak_memory()
            ours, plain, cpu = [], [], []
            for _ in range(runs):
                started, cpu_started = time.perf_counter(), time.process_time()
                await call()
                ours.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
                plain.append(await raw.run(statements))
            peak = peak_memory()["peak_rss_mib"]
            explained = await raw.explain(statements)
            median, p95 = quantiles(ours)
            raw_median, raw_p95 = quantiles(plain)
            results.append({
                "query": label, "statements": len(statements), "median_ms": median * 1000, "p95_ms": p95 * 1000,
                "raw_median_ms": raw_median * 1000, "raw_p95_ms": raw_p95 * 1000,
                "explain_ms": explained * 1000 if explained is not None else None,
                "ours_ms": summary(value * 1000 for value in ours),
                "raw_ms": summary(value * 1000 for value in plain),
                "peak_rss_mib": peak,
                # This process's CPU time (all its threads: SQLite's work too, not PostgreSQL's server): on a
                # loaded machine the wall-clock figures wait for a core, this one much less.
                "ours_cpu_ms": summary(value * 1000 for value in cpu),
            })  # fmt: skip
            print(_row(results[-1]), flush=True)
    finally:
        await raw.close()
        await engine.dispose()
    return results


def reset_peak_memory() -> None:
    """Start this process's peak RSS (VmHWM) again from its present RSS: a peak per view, not per run.

    Linux's ``clear_refs`` 5 (since 4.0); where it cannot be written, the figure is the process's peak so far.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _row(result: dict[str, Any]) -> str:
    explain = f"{result['explain_ms']:9.1f}" if result["explain_ms"] is not None else "        –"
    ours = result["ours_ms"]
    p99 = f"{ours['p99']:9.1f}" if "p99" in ours else "        –"
    return (
        f"  {result['query']:<50} {ours['count']:5d} {result['median_ms']:9.1f} {result['p95_ms']:9.1f} {p99} "
        f"{ours['max']:9.1f} {result['raw_median_ms']:9.1f} {result['raw_p95_ms']:9.1f} {explain} "
        f"{result['peak_rss_mib']:8.1f} {result['ours_cpu_ms']['median']:8.1f}   ({result['statements']} statements)"
    )


# -- recording replay ----------------------------------------------------------------------------------


def tone_wav(path: Path, seconds: float) -> None:
    rate = 8000
    one_second = b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * n / rate))) for n in range(rate))
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        for _ in range(int(seconds)):
            writer.writeframes(one_second)


async def measure_replay(requests: int, concurrency: int) -> list[dict[str, Any]]:
    directory = Path(tempfile.mkdtemp(prefix="cx-bench-replay-"))
    try:
        return await _measure_replay(directory, requests, concurrency)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def _measure_replay(directory: Path, requests: int, concurrency: int) -> list[dict[str, Any]]:
    import hashlib

    from aiohttp import ClientSession, CookieJar, web

    from common.clock import SystemClock
    from server import build_runtime, create_app
    from settings import DatabaseSettings, SecuritySettings, Settings
    from storage.audit import Actor
    from storage.migrate import upgrade
    from storage.models import Case, Recording

    url = f"sqlite+aiosqlite:///{directory / 'cunxiang.db'}"
    await upgrade(url)
    # The offline engine only: the replay renders nothing, but a runtime built with the defaults would
    # try the online engine first whenever something did.
    settings = Settings(
        data_dir=directory, asterisk="none", database=DatabaseSettings(url=url), tts=offline_speech(),
        security=SecuritySettings(password_time_cost=1, password_memory_kib=1024, password_parallelism=1),
    )  # fmt: skip
    runtime = build_runtime(settings, clock=SystemClock())
    store = runtime.hotline.store
    store.prepare()
    relative = "2026/11/bench-message.wav"
    path = store.path_of(relative)
    path.parent.mkdir(parents=True)
    tone_wav(path, 300)
    data = path.read_bytes()
    now = datetime.now(UTC)
    async with runtime.sessions() as session:
        case = Case(number=_damm("1234567"), channel="hotline", status="new", category="petition", sealed=False,
                    caller_withheld=False, pin="1234", test_call=False, created_at=now, updated_at=now)  # fmt: skip
        session.add(case)
        await session.flush()
        recording = Recording(case_id=case.id, kind="message", linkedid="bench", source_name="bench.wav",
                              path=relative, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
                              duration_s=300.0, empty=False, recorded_at=now, created_at=now)  # fmt: skip
        session.add(recording)
        await session.commit()
    await runtime.accounts.create_user(Actor(None, "bench"), username="bench-operator", display_name="bench",
                                       password="Bench-password-123", roles=["operator"], county_wide=True)  # fmt: skip

    async def static(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path, headers={"Content-Type": "audio/wav"})

    plain = web.Application()
    plain.router.add_get("/file.wav", static)
    runners = []
    ports = []
    for application in (create_app(settings, runtime=runtime), plain):
        runner = web.AppRunner(application, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        ports.append(runner.addresses[0][1])
    audio_url = f"http://127.0.0.1:{ports[0]}/api/v1/cases/{case.id}/recordings/{recording.id}/audio"
    static_url = f"http://127.0.0.1:{ports[1]}/file.wav"
    results = []
    try:
        # unsafe=True: keep the session cookie of a server addressed by IP (127.0.0.1).
        async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as client:
            credentials = {"username": "bench-operator", "password": "Bench-password-123"}
            login = await client.post(f"http://127.0.0.1:{ports[0]}/api/v1/session", json=credentials)
            assert login.status == 200, await login.text()
            for label, ranged in (
                ("whole file (4.8 MB, each a play: audited)", False),
                ("256 KB ranges (seeks)", True),
            ):
                row: dict[str, Any] = {"case": label}
                for side, target in (("ours", audio_url), ("static", static_url)):
                    count = requests * 4 if ranged else requests
                    elapsed, received = await _fetch_all(client, target, count, concurrency, len(data), ranged)
                    row[f"{side}_mb_s"] = received / elapsed / 1e6
                    row[f"{side}_req_s"] = count / elapsed
                results.append(row)
                print(f"  {label:<44} ours {row['ours_mb_s']:7.1f} MB/s {row['ours_req_s']:7.1f} req/s   static "
                      f"{row['static_mb_s']:7.1f} MB/s {row['static_req_s']:7.1f} req/s   "
                      f"ratio {row['ours_mb_s'] / row['static_mb_s']:.2f}", flush=True)  # fmt: skip
    finally:
        for runner in runners:
            await runner.cleanup()
        await runtime.engine.dispose()
    return results


async def _fetch_all(
    client: Any, target: str, count: int, concurrency: int, size: int, ranged: bool
) -> tuple[float, int]:
    """``count`` GETs of ``target`` over ``concurrency`` connections; (seconds, bytes received)."""
    queue = list(range(count))
    received = 0
    chunk = 262_144

    async def worker() -> None:
        nonlocal received
        while queue:
            index = queue.pop()
            headers = {}
            if ranged:
                start = (index * chunk) % (size - chunk)
                headers["Range"] = f"bytes={start}-{start + chunk - 1}"
            async with client.get(target, headers=headers) as response:
                assert response.status in (200, 206), response.status
                body = await response.read()  # awaited first: `received += len(await …)` loses updates
                received += len(body)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, received


# -- the whole run ----------------------------------------------------------------------------------------


async def fill_rollups(url: str, *, without: bool = False) -> float:
    """The cases were written around the service (executemany, COPY): back-fill the dashboard's roll-ups.

    ``without``: none, and no zone recorded either, so that the dashboard counts the cases (the baseline).
    """
    from sqlalchemy import delete

    from cases.rollups import rebuild
    from storage.db import create_engine, make_session_factory
    from storage.models import CaseRollupState

    engine = create_engine(url)
    started = time.perf_counter()
    try:
        if without:
            async with make_session_factory(engine).begin() as session:
                await session.execute(delete(CaseRollupState))
        else:
            await rebuild(make_session_factory(engine), SHANGHAI)
    finally:
        await engine.dispose()
    return time.perf_counter() - started


def seed(kind: str, url: str, count: int, without_rollups: bool) -> tuple[Generated, float]:
    """Migrate, write ``count`` cases around the service, back-fill the roll-ups and open cases, ANALYZE.

    Run in a process of its own (:func:`seed_elsewhere`): the measuring process's peak memory is then the
    service's queries', not a million generated rows'.
    """
    from storage.db import sqlite_path

    pairs, units = asyncio.run(prepare(url))
    if kind == "sqlite":
        path = sqlite_path(url)
        assert path is not None
        generated = generate_sqlite(Path(path), count, pairs, units)
    else:
        generated = asyncio.run(generate_postgres(url, count, pairs, units))
    rollups_s = asyncio.run(fill_rollups(url, without=without_rollups))
    # The tables the back-fill just wrote need their statistics too (the planner's choice of index).
    if kind == "sqlite":
        path = sqlite_path(url)
        assert path is not None
        with sqlite3.connect(path) as connection:
            connection.execute("ANALYZE")
    else:
        asyncio.run(_analyze_postgres(url))
    return generated, rollups_s


async def _analyze_postgres(url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(raw_dsn(url))
    try:
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def seed_elsewhere(kind: str, url: str, count: int, without_rollups: bool) -> tuple[Generated, float]:
    """:func:`seed` in a fresh process (spawned: nothing of this one's memory is shared or counted)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return await asyncio.wrap_future(pool.submit(seed, kind, url, count, without_rollups))


async def bench_database(
    kind: str, count: int, view_runs: int, list_runs: int, pg_url: str | None, *, without_rollups: bool = False
) -> dict[str, Any]:
    header = (
        f"  {'query':<50} {'count':>5} {'median':>9} {'p95':>9} {'p99':>9} {'max':>9} {'raw med':>9} {'raw p95':>9} "
        f"{'EXPLAIN':>9} {'peak MiB':>8} {'CPU med':>8}   (ms)"
    )
    cluster = None
    directory = Path(tempfile.mkdtemp(prefix=f"cx-bench-cases-{kind}-"))
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / 'cunxiang.db'}"
    elif pg_url:
        url = pg_url
    else:
        from tests.support.postgres import PostgresCluster

        cluster = PostgresCluster.start()
        name = f"cx_bench_{secrets.token_hex(3)}"
        cluster.psql(f"CREATE DATABASE {name}")
        url = cluster.url(name)
    try:
        generated, rollups_s = await seed_elsewhere(kind, url, count, without_rollups)
        rate = generated.cases / generated.seconds
        print(f"\n{kind}: generated {generated.cases:,} cases ({generated.ledger_rows:,} ledger rows) in "
              f"{generated.seconds:.1f} s ({rate:,.0f} cases/s), in a process of its own", flush=True)  # fmt: skip
        print(f"{kind}: roll-ups and open cases back-filled in {rollups_s:.1f} s (as migrations 0013 and 0016 do)",
              flush=True)  # fmt: skip
        print(header)
        queries = await measure_queries(url, view_runs, list_runs)
        return {"cases": generated.cases, "ledger_rows": generated.ledger_rows,
                "generation_s": round(generated.seconds, 1), "rollups_backfill_s": round(rollups_s, 1),
                "queries": queries}  # fmt: skip
    finally:
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--runs", type=int, default=100, help="timed runs of each dashboard and 催办 view (p99: 100)")
    parser.add_argument("--list-runs", type=int, default=15, help="timed runs of each case-list query")
    parser.add_argument("--pg-url", help="postgresql+asyncpg://… of an empty database (default: a throwaway cluster)")
    parser.add_argument("--replay-requests", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument(
        "--without-rollups", action="store_true", help="the dashboard counts the cases (as before migration 0013)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="20,000 cases, 100 runs per view, 5 per list query, 12 replay requests"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    isolate_from_environment()
    if args.quick:
        args.cases, args.list_runs, args.replay_requests = 20_000, 5, 12
    print(f"cases benchmark: {args.cases:,} cases, {args.runs} runs per view, {args.list_runs} per list query, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    results: dict[str, Any] = {"runs_per_view": args.runs, "runs_per_list_query": args.list_runs}
    for kind in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        results[kind] = await bench_database(
            kind, args.cases, args.runs, args.list_runs, args.pg_url, without_rollups=args.without_rollups
        )
    if not args.skip_replay:
        print(f"\nrecording replay ({args.concurrency} concurrent clients; our route vs a bare static handler):")
        results["replay"] = await measure_replay(args.replay_requests, args.concurrency)
    write_results(args.json, results)


if __name__ == "__main__":
    asyncio.run(main())
