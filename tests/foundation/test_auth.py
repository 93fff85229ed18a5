"""Signing in: sessions, cookies, CSRF, throttling, disabling and resets."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from server import Runtime
from storage.models import AuditEntry, User
from tests.conftest import BOTH_DATABASES, ClientFactory, UserFactory

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


async def test_the_login_page_signs_in_with_a_form_and_sets_a_protected_cookie(
    new_client: ClientFactory, make_user: UserFactory
) -> None:
    username, password = await make_user("staff", county_wide=True)
    client = await new_client()
    page = await client.get("/login?next=/admin/areas")
    html = await page.text()
    assert "登录" in html
    token = csrf_from(html)
    response = await client.client.post(
        "/login",
        data={"csrf_token": token, "username": username, "password": password, "next": "/account/password"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == "/account/password"
    cookie = response.headers["Set-Cookie"]
    assert "cunxiang_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    home = await client.get("/")
    assert home.status == 200
    assert username in await home.text()


async def test_a_login_form_without_the_csrf_token_is_refused(
    new_client: ClientFactory, make_user: UserFactory
) -> None:
    username, password = await make_user("staff", county_wide=True)
    client = await new_client()
    await client.get("/login")
    response = await client.client.post("/login", data={"username": username, "password": password})
    assert response.status == 403
    assert "页面已过期" in await response.text()


async def test_next_never_leads_off_site(new_client: ClientFactory, make_user: UserFactory) -> None:
    username, password = await make_user("staff", county_wide=True)
    client = await new_client()
    token = csrf_from(await (await client.get("/login")).text())
    response = await client.client.post(
        "/login",
        data={"csrf_token": token, "username": username, "password": password, "next": "//evil.example/"},
        allow_redirects=False,
    )
    assert response.headers["Location"] == "/"


async def test_wrong_passwords_are_refused_then_slowed_down_and_audited(
    runtime: Runtime, new_client: ClientFactory, make_user: UserFactory
) -> None:
    username, password = await make_user("staff", county_wide=True)
    client = await new_client()
    free = runtime.settings.security.login_free_attempts
    for _ in range(free):
        response = await client.post("/api/v1/session", json={"username": username, "password": "wrong-password-x"})
        assert response.status == 401
        assert (await response.json())["error"]["message"] == "用户名或密码不正确"
    # Now even the right password must wait.
    response = await client.post("/api/v1/session", json={"username": username, "password": password})
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "秒后再试" in (await response.json())["error"]["message"]
    async with runtime.sessions() as session:
        failures = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "login.failed")
        )
    assert failures == free


async def test_unknown_usernames_are_slowed_down_per_address(runtime: Runtime, new_client: ClientFactory) -> None:
    """Many names from one address (password spraying): the address's own allowance runs out."""
    client = await new_client()
    statuses = []
    for attempt in range(runtime.settings.security.login_address_free_attempts + 1):
        response = await client.post(
            "/api/v1/session", json={"username": f"nobody{attempt}", "password": "whatever-it-is"}
        )
        statuses.append(response.status)
    assert statuses[-1] == 429
    assert set(statuses[:-1]) == {401}


async def test_disabling_a_user_ends_their_sessions(new_client: ClientFactory, make_user: UserFactory) -> None:
    username, password = await make_user("operator", county_wide=True)
    operator = await (await new_client()).login(username, password)
    admin_name, admin_password = await make_user("admin", county_wide=True)
    admin = await (await new_client()).login(admin_name, admin_password)
    user_id = operator.me["id"]
    await admin.patch_json(f"/api/v1/users/{user_id}", {"active": False})
    assert (await operator.get("/api/v1/session")).status == 401
    again = await (await new_client()).client.post("/api/v1/session", json={"username": username, "password": password})
    assert again.status == 401


async def test_a_password_reset_ends_old_sessions_and_the_new_password_works(
    new_client: ClientFactory, make_user: UserFactory
) -> None:
    username, password = await make_user("leader", county_wide=True)
    leader = await (await new_client()).login(username, password)
    admin_name, admin_password = await make_user("admin", county_wide=True)
    admin = await (await new_client()).login(admin_name, admin_password)
    body = await admin.post_json(f"/api/v1/users/{leader.me['id']}/password", {})
    new_password = body["password"]
    assert new_password and new_password != password
    assert (await leader.get("/api/v1/session")).status == 401
    await (await new_client()).login(username, new_password)


async def test_changing_ones_own_password_keeps_this_session_and_checks_strength(
    new_client: ClientFactory, make_user: UserFactory
) -> None:
    username, password = await make_user("staff", county_wide=True)
    first = await (await new_client()).login(username, password)
    second = await (await new_client()).login(username, password)
    weak = await first.post("/api/v1/session/password", json={"old_password": password, "new_password": "1234567890"})
    assert weak.status == 400
    assert "password" in (await weak.json())["error"]["fields"]
    await first.post_json(
        "/api/v1/session/password", {"old_password": password, "new_password": "A-much-better-one-42"}
    )
    assert (await first.get("/api/v1/session")).status == 200
    assert (await second.get("/api/v1/session")).status == 401


async def test_passwords_are_stored_as_argon2id_hashes(runtime: Runtime, make_user: UserFactory) -> None:
    username, password = await make_user("staff", county_wide=True)
    async with runtime.sessions() as session:
        stored = await session.scalar(select(User.password_hash).where(User.username == username))
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert password not in stored


async def test_a_json_request_from_another_origin_is_refused(new_client: ClientFactory, make_user: UserFactory) -> None:
    username, password = await make_user("admin", county_wide=True)
    admin = await (await new_client()).login(username, password)
    response = await admin.client.post(
        "/api/v1/counties", json={"name": "跨站县"}, headers={"Origin": "https://evil.example"}
    )
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "csrf.origin"


async def test_a_bodyless_delete_needs_the_csrf_header(new_client: ClientFactory, make_user: UserFactory) -> None:
    username, password = await make_user("admin", county_wide=True)
    admin = await (await new_client()).login(username, password)
    county = await admin.post_json("/api/v1/counties", {"name": "删县"}, expect=201)
    township = await admin.post_json("/api/v1/townships", {"county_id": county["id"], "name": "删乡"}, expect=201)
    refused = await admin.client.delete(f"/api/v1/townships/{township['id']}")
    assert refused.status == 403
    accepted = await admin.delete(f"/api/v1/townships/{township['id']}")
    assert accepted.status == 204
