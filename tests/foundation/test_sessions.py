"""Sessions live on the server: signing out, a user or an admin ending one, expiry — a copied cookie dies with it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event, func, select, update

from server import Runtime
from storage.models import AuditEntry, UserSession
from tests.conftest import BOTH_DATABASES, ClientFactory, UserFactory
from tests.foundation.seed import seed_tree
from tests.support.http import ApiClient

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


def session_cookie(client: ApiClient) -> str:
    cookies = client.client.session.cookie_jar.filter_cookies(client.client.make_url("/"))
    return cookies["cunxiang_session"].value


async def thief_with(new_client: ClientFactory, cookie: str) -> TestClient:  # type: ignore[type-arg]
    """Another browser holding a copy of someone's cookie."""
    thief = (await new_client()).client
    thief.session.cookie_jar.update_cookies({"cunxiang_session": cookie}, thief.make_url("/"))
    return thief


async def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(
    runtime: Runtime, new_client: ClientFactory, make_user: UserFactory
) -> None:
    username, password = await make_user("admin", county_wide=True)
    admin = await (await new_client()).login(username, password)
    thief = await thief_with(new_client, session_cookie(admin))
    assert (await thief.get("/api/v1/session")).status == 200  # a copy works while the session lives

    assert (await admin.delete("/api/v1/session")).status == 200

    assert (await thief.get("/api/v1/session")).status == 401
    write = await thief.post("/api/v1/counties", json={"name": "偷来的县"})
    assert write.status == 401
    page = await thief.get("/admin/users", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"].startswith("/login")
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(UserSession)) == 0
        logouts = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "logout")
        )
    assert logouts == 1


async def test_the_logout_form_ends_the_session_too(new_client: ClientFactory, make_user: UserFactory) -> None:
    username, password = await make_user("staff", county_wide=True)
    staff = await (await new_client()).login(username, password)
    thief = await thief_with(new_client, session_cookie(staff))
    html = await (await staff.get("/")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token
    response = await staff.client.post("/logout", data={"csrf_token": token.group(1)}, allow_redirects=False)
    assert response.status == 303
    assert (await thief.get("/api/v1/session")).status == 401


async def test_a_user_sees_their_sessions_and_ends_the_others(
    new_client: ClientFactory, make_user: UserFactory
) -> None:
    username, password = await make_user("operator", county_wide=True)
    office = await (await new_client()).login(username, password)
    phone = await (await new_client()).login(username, password)
    devices = await office.get_json("/api/v1/session/devices")
    assert len(devices) == 2
    assert [device["current"] for device in devices].count(True) == 1
    assert all(device["ip"] == "127.0.0.1" and device["device"] for device in devices)

    ended = await office.post_json("/api/v1/session/devices/end-others", {})
    assert ended == {"ended": 1}
    assert (await phone.get("/api/v1/session")).status == 401
    assert (await office.get("/api/v1/session")).status == 200
    assert len(await office.get_json("/api/v1/session/devices")) == 1


async def test_a_user_cannot_end_someone_elses_session(new_client: ClientFactory, make_user: UserFactory) -> None:
    first_name, first_password = await make_user("staff", county_wide=True)
    second_name, second_password = await make_user("staff", county_wide=True)
    first = await (await new_client()).login(first_name, first_password)
    second = await (await new_client()).login(second_name, second_password)
    [theirs] = await second.get_json("/api/v1/session/devices")
    refused = await first.delete(f"/api/v1/session/devices/{theirs['id']}")
    assert refused.status == 404
    assert (await second.get("/api/v1/session")).status == 200


async def test_an_admin_sees_a_users_sessions_and_ends_one_or_all(
    runtime: Runtime, new_client: ClientFactory, make_user: UserFactory
) -> None:
    username, password = await make_user("leader", county_wide=True)
    first = await (await new_client()).login(username, password)
    second = await (await new_client()).login(username, password)
    admin_name, admin_password = await make_user("admin", county_wide=True)
    admin = await (await new_client()).login(admin_name, admin_password)
    user_id = first.me["id"]

    sessions = await admin.get_json(f"/api/v1/users/{user_id}/sessions")
    assert len(sessions) == 2 and not any(s["current"] for s in sessions)
    newest = max(sessions, key=lambda s: s["id"])
    assert (await admin.delete(f"/api/v1/users/{user_id}/sessions/{newest['id']}")).status == 200
    assert (await second.get("/api/v1/session")).status == 401
    assert (await first.get("/api/v1/session")).status == 200

    assert (
        await admin.client.delete(f"/api/v1/users/{user_id}/sessions", headers={"X-CSRF-Token": admin.csrf}) is not None
    )
    assert (await first.get("/api/v1/session")).status == 401
    assert (await admin.get("/api/v1/session")).status == 200
    # Non-admins may not look.
    other = await (await new_client()).login(username, password)
    assert (await other.get(f"/api/v1/users/{user_id}/sessions")).status == 403
    async with runtime.sessions() as session:
        actions = set((await session.scalars(select(AuditEntry.action))).all())
    assert {"session.end", "session.end_all"} <= actions


async def test_an_unused_session_ends_after_the_idle_time(
    runtime: Runtime, new_client: ClientFactory, make_user: UserFactory
) -> None:
    username, password = await make_user("staff", county_wide=True)
    staff = await (await new_client()).login(username, password)
    idle = timedelta(seconds=runtime.settings.server.session_idle_s + 1)
    async with runtime.sessions.begin() as session:
        await session.execute(update(UserSession).values(last_seen_at=datetime.now(UTC) - idle))
    assert (await staff.get("/api/v1/session")).status == 401


async def test_a_password_change_ends_the_other_sessions_on_the_server(
    runtime: Runtime, new_client: ClientFactory, make_user: UserFactory
) -> None:
    username, password = await make_user("staff", county_wide=True)
    first = await (await new_client()).login(username, password)
    second = await (await new_client()).login(username, password)
    await first.post_json("/api/v1/session/password", {"old_password": password, "new_password": "Another-good-one-77"})
    assert (await second.get("/api/v1/session")).status == 401
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(UserSession)) == 1


async def test_a_signed_in_request_costs_one_statement_to_know_who_asks(
    runtime: Runtime, new_client: ClientFactory, make_user: UserFactory
) -> None:
    # Every page and API call a signed-in person makes starts here. The session, its user and the user's roles
    # and townships were four statements (in the hang-up → case benchmark a quarter of all the service's
    # statements in a 20-call burst went to knowing who asked).
    tree = await seed_tree(runtime)
    username, password = await make_user("staff", "approver", township_ids=list(tree.township_ids))
    person = await (await new_client()).login(username, password)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    engine = runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        me = await person.get_json("/api/v1/session")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    reads = [statement for statement in statements if statement.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1, reads
    # What the joined read found is the whole person: both roles, both townships, each once.
    assert sorted(me["roles"]) == ["approver", "staff"]
    assert sorted(me["township_ids"]) == sorted(tree.township_ids)
