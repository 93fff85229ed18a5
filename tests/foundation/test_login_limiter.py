"""The login limiter behind a reverse proxy: the real client counts, names are not told apart, processes agree."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from server import Runtime, build_runtime, create_app
from settings import SecuritySettings, ServerSettings
from storage.models import AuditEntry
from tests.conftest import BOTH_DATABASES, SYSTEM, make_settings

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)

PROXY = ServerSettings(trusted_proxies=("127.0.0.1",))
# Waits long enough that no wait runs out while a test is still asking (answers stay comparable).
SLOW = SecuritySettings(password_time_cost=1, password_memory_kib=1024, password_parallelism=1, login_base_delay_s=60)
PASSWORD = "Correct-horse-battery-9"


class Service:
    """One process of the service (its own runtime and app) on the test's database."""

    def __init__(self, runtime: Runtime, client: TestClient[Any, Any]) -> None:
        self.runtime = runtime
        self.client = client

    async def login(self, username: str, password: str, *, client_ip: str | None = None) -> tuple[int, str]:
        headers = {"X-Forwarded-For": client_ip} if client_ip else {}
        response = await self.client.post(
            "/api/v1/session", json={"username": username, "password": password}, headers=headers
        )
        return response.status, response.headers.get("Retry-After", "")


@pytest.fixture
async def start_service(tmp_path: Path, database_url: str) -> AsyncIterator[Callable[..., Awaitable[Service]]]:
    started: list[tuple[Runtime, TestClient[Any, Any]]] = []

    async def start(**overrides: Any) -> Service:
        settings = make_settings(tmp_path / "data", database_url, **({"security": SLOW} | overrides))
        runtime = build_runtime(settings)
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings, runtime=runtime)))
        await client.start_server()
        started.append((runtime, client))
        return Service(runtime, client)

    yield start
    for _runtime, client in started:
        await client.close()


async def add_user(service: Service, username: str) -> None:
    await service.runtime.accounts.create_user(
        SYSTEM, username=username, display_name=username, password=PASSWORD, roles=["staff"], county_wide=True
    )


async def test_behind_the_proxy_one_clerks_failures_do_not_lock_out_the_office(
    start_service: Callable[..., Awaitable[Service]],
) -> None:
    service = await start_service(server=PROXY)
    await add_user(service, "clerk.a")
    await add_user(service, "clerk.b")
    # A dozen failures from one desk, with names that exist and names that do not.
    for attempt in range(12):
        await service.login("clerk.a" if attempt % 2 else f"nobody{attempt}", "wrong-password", client_ip="10.1.0.5")
    status, _ = await service.login("clerk.b", PASSWORD, client_ip="10.1.0.6")
    assert status == 200
    # The audit log names the desk, not the proxy.
    async with service.runtime.sessions() as session:
        entries = (await session.scalars(select(AuditEntry).where(AuditEntry.action.like("login%")))).all()
    assert {entry.ip for entry in entries} == {"10.1.0.5", "10.1.0.6"}


async def test_a_forwarded_address_from_an_untrusted_peer_is_not_believed(
    start_service: Callable[..., Awaitable[Service]],
) -> None:
    service = await start_service()
    free = service.runtime.settings.security.login_free_attempts
    for attempt in range(free):
        await service.login("clerk.x", "wrong-password", client_ip=f"10.9.0.{attempt}")
    # Each attempt claimed another address; without a trusted proxy they all came from 127.0.0.1.
    status, _ = await service.login("clerk.x", "wrong-password", client_ip="10.9.0.99")
    assert status == 429
    async with service.runtime.sessions() as session:
        ips = set((await session.scalars(select(AuditEntry.ip))).all())
    assert ips == {"127.0.0.1"}


async def test_a_name_that_exists_and_one_that_does_not_get_the_same_answers(
    start_service: Callable[..., Awaitable[Service]],
) -> None:
    service = await start_service(server=PROXY)
    await add_user(service, "real.person")
    free = service.runtime.settings.security.login_free_attempts
    known = [await service.login("real.person", "wrong-password", client_ip="10.2.0.1") for _ in range(free + 2)]
    unknown = [await service.login("made.up", "wrong-password", client_ip="10.2.0.2") for _ in range(free + 2)]
    assert [status for status, _ in known] == [401] * free + [429, 429]
    assert known == unknown


async def test_the_owner_signs_in_from_a_clean_address_while_the_account_is_attacked_elsewhere(
    start_service: Callable[..., Awaitable[Service]],
) -> None:
    service = await start_service(server=PROXY)
    await add_user(service, "targeted")
    security = service.runtime.settings.security
    # Guesses from many addresses: the account's own count passes its allowance.
    for attempt in range(security.login_name_free_attempts + 2):
        await service.login("targeted", f"guess-{attempt}", client_ip=f"203.0.113.{attempt % 4}")
    # An attacking address is held back even with the right password…
    status, retry_after = await service.login("targeted", PASSWORD, client_ip="203.0.113.1")
    assert status == 429 and int(retry_after) >= 1
    # …a fresh attacking address gets no more than its own first guess…
    assert (await service.login("targeted", "another-guess", client_ip="198.51.100.7"))[0] == 401
    assert (await service.login("targeted", "and-another", client_ip="198.51.100.7"))[0] == 429
    # …and the owner, at an address without failures, is let in.
    assert (await service.login("targeted", PASSWORD, client_ip="10.3.0.8"))[0] == 200


@pytest.mark.slow  # two services and a password hash per attempt: 13 s in a loaded fast-tier run
async def test_every_process_counts_the_same_failures(start_service: Callable[..., Awaitable[Service]]) -> None:
    active = await start_service(server=PROXY)
    standby = await start_service(server=PROXY)
    await add_user(active, "shared.name")
    free = active.runtime.settings.security.login_free_attempts
    for _ in range(free):
        assert (await active.login("shared.name", "wrong-password", client_ip="10.4.0.1"))[0] == 401
    status, retry_after = await standby.login("shared.name", PASSWORD, client_ip="10.4.0.1")
    assert status == 429 and int(retry_after) >= 1


async def test_a_password_reset_lets_the_account_in_at_once(start_service: Callable[..., Awaitable[Service]]) -> None:
    service = await start_service(server=PROXY)
    await add_user(service, "forgetful")
    for _ in range(service.runtime.settings.security.login_free_attempts):
        await service.login("forgetful", "wrong-password", client_ip="10.5.0.1")
    assert (await service.login("forgetful", PASSWORD, client_ip="10.5.0.1"))[0] == 429
    async with service.runtime.sessions() as session:
        from storage.models import User

        user_id = await session.scalar(select(User.id).where(User.username == "forgetful"))
    assert user_id is not None
    await service.runtime.accounts.reset_password(SYSTEM, user_id, "A-fresh-start-2026")
    assert (await service.login("forgetful", "A-fresh-start-2026", client_ip="10.5.0.1"))[0] == 200
