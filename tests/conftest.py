"""Fixtures, layered: database → settings → app → server → signed-in clients.

Tests that must hold on both databases set ``pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)``
(or parametrize ``db_kind`` on one test); the rest run on SQLite. PostgreSQL is
a real throwaway cluster started once per test session.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from server import Runtime, build_runtime, create_app
from settings import Settings
from storage.audit import Actor
from storage.migrate import upgrade
from tests.support.http import ApiClient
from tests.support.postgres import PostgresCluster, PostgresUnavailable
from tests.support.required import missing
from tests.support.settings import make_settings

__all__ = ["BOTH_DATABASES", "make_settings"]

# The Asterisk sandbox and the speech fixtures are plugins, registered here once: a session fixture
# defined (or re-exported) in two conftests would be two instances.
pytest_plugins = ["tests.support.asterisk", "tests.support.speech", "tests.support.demo"]

BOTH_DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

# Tests under a directory of this name talk to the real Asterisk sandbox.
ASTERISK_DIRECTORY = "asterisk"
# A marker whose tests run only when asked for by name (``-m evidence``): they prove a past decision.
OPT_IN_MARKERS = ("evidence",)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, hand tests to the workers one at a time (unless ``--maxschedchunk`` says otherwise).

    xdist's default ``load`` scheduling first gives each worker a *consecutive* quarter of the first half of
    the collection: with the slow tests sorted first (below), ``-n 4`` gave two workers 75 slow tests each,
    a third 13 and the fourth none, so the real-time waiting ran on two workers while two sat idle. One at
    a time, every worker takes the next slow test as soon as it is free (41/42/40/40 on the same collection).
    """
    if config.pluginmanager.hasplugin("xdist") and getattr(config.option, "maxschedchunk", 0) is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark by path, in one place (``pytestmark`` in a conftest.py has no effect), and leave out opt-in tests.

    Every test under ``tests/<part>/asterisk/`` is ``asterisk`` and ``slow``; every ``browser`` test is
    ``slow`` (a Chromium starts for it). Tests marked with an opt-in marker are deselected unless the ``-m``
    expression names that marker. The slow tests go first, longest first, so that pytest-xdist's workers
    start the long ones early and the run does not end waiting on one of them (see :func:`_running_order`).
    """
    tests_root = Path(__file__).parent
    expression = config.getoption("markexpr", "") or ""
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    for item in items:
        relative = item.path.relative_to(tests_root).parts if item.path.is_relative_to(tests_root) else ()
        if ASTERISK_DIRECTORY in relative[:-1]:
            item.add_marker(pytest.mark.asterisk)
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
        opted_out = any(item.get_closest_marker(name) and name not in expression for name in OPT_IN_MARKERS)
        (left_out if opted_out else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
    items[:] = _running_order(config, kept)


# How long each slow test took (setup, call and teardown), kept by the cache plugin between runs.
SLOW_SECONDS_KEY = "cunxiang/slow-test-seconds"
# Before a slow test has a time of its own: a call through the IVR takes far longer than a process start.
ASSUMED_SECONDS = {"asterisk": 30.0, "slow": 10.0}


def _running_order(config: pytest.Config, items: list[pytest.Item]) -> list[pytest.Item]:
    """The slow tests first, the longest (as last measured on this machine) first among them; then the rest.

    Handed to the workers one at a time (:func:`pytest_configure`), longest first is the classic greedy
    schedule: a 60 s kill-and-restart test started last would keep the run going 60 s after the other
    workers are done. The sort is stable, so among equals (and in the fast tier) the collection order, hence
    module and fixture locality, stays. Every xdist worker reads the same cache file, so every worker
    orders the collection alike (xdist checks that).
    """
    cache = getattr(config, "cache", None)
    measured: dict[str, float] = cache.get(SLOW_SECONDS_KEY, {}) if cache is not None else {}

    def longest_first(item: pytest.Item) -> tuple[int, float]:
        if not item.get_closest_marker("slow"):
            return (1, 0.0)
        assumed = ASSUMED_SECONDS["asterisk" if item.get_closest_marker("asterisk") else "slow"]
        return (0, -float(measured.get(item.nodeid, assumed)))

    return sorted(items, key=longest_first)


_slow_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Adds up each slow test's time (under xdist the controller sees every worker's reports)."""
    if "slow" in report.keywords:
        _slow_seconds[report.nodeid] = _slow_seconds.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Keeps this run's slow-test times for the next run's order (once, from the controller, not a worker)."""
    cache = getattr(session.config, "cache", None)
    if cache is None or hasattr(session.config, "workerinput") or not _slow_seconds:
        return
    kept: dict[str, float] = cache.get(SLOW_SECONDS_KEY, {})
    kept.update({nodeid: round(seconds, 1) for nodeid, seconds in _slow_seconds.items()})
    cache.set(SLOW_SECONDS_KEY, kept)


_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    try:
        cluster = PostgresCluster.start()
    except PostgresUnavailable as exc:
        missing(f"PostgreSQL not available: {exc}")
    try:
        cluster.psql("CREATE DATABASE cx_template")
        asyncio.run(upgrade(cluster.url("cx_template")))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def db_kind() -> str:
    return "sqlite"


@pytest.fixture
def database_url(db_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A freshly migrated, empty database of the requested kind, for this test alone."""
    if db_kind == "sqlite":
        path = tmp_path / "data" / "cunxiang.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = f"cx_test_{next(_database_numbers)}"
    cluster.psql(f"CREATE DATABASE {name} TEMPLATE cx_template")
    yield cluster.url(name)
    # Dropped as the test ends, not with the cluster at the session's end: a worker's cluster otherwise grows by
    # one copy of the template per test (over 1 GB in a full run) and removing it all made the last test's
    # teardown take 13-37 s, at the very end of the run where nothing else overlaps it.
    cluster.drop_database(name)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "data", database_url)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    built = build_runtime(settings)
    yield built
    # The app disposes the engine when it stops; a test that never started the app must too.
    await built.engine.dispose()


@pytest.fixture
def app(settings: Settings, runtime: Runtime) -> web.Application:
    return create_app(settings, runtime=runtime)


@pytest.fixture
async def server(app: web.Application) -> AsyncIterator[TestServer]:
    test_server = TestServer(app)
    await test_server.start_server()
    try:
        yield test_server
    finally:
        await test_server.close()


ClientFactory = Callable[[], Awaitable[ApiClient]]


@pytest.fixture
async def new_client(server: TestServer) -> AsyncIterator[ClientFactory]:
    """Makes anonymous clients, each with its own cookie jar (one per simulated person)."""
    from aiohttp.test_utils import TestClient

    clients: list[TestClient[Any, Any]] = []

    async def make() -> ApiClient:
        client: TestClient[Any, Any] = TestClient(server)
        await client.start_server()
        clients.append(client)
        return ApiClient(client)

    yield make
    for client in clients:
        await client.close()


SYSTEM = Actor(user_id=None, username="system:test")


UserFactory = Callable[..., Awaitable[tuple[str, str]]]


@pytest.fixture
def make_user(runtime: Runtime) -> UserFactory:
    """Creates a user directly through the account service; returns (username, password)."""
    numbers = itertools.count(1)

    async def make(
        *roles: str,
        township_ids: list[int] | None = None,
        county_wide: bool = False,
        can_emergency: bool = False,
        username: str | None = None,
        phone_endpoint: str | None = None,
    ) -> tuple[str, str]:
        name = username or f"{'-'.join(roles) or 'user'}{next(numbers)}"
        password = f"Pw-{next(numbers)}-correct-horse-staple"
        await runtime.accounts.create_user(
            SYSTEM,
            username=name,
            display_name=name,
            password=password,
            roles=list(roles),
            county_wide=county_wide,
            township_ids=township_ids or [],
            can_emergency=can_emergency,
            phone_endpoint=phone_endpoint,
        )
        return name, password

    return make


@pytest.fixture
async def admin(new_client: ClientFactory, make_user: UserFactory) -> ApiClient:
    username, password = await make_user("admin", county_wide=True)
    return await (await new_client()).login(username, password)
