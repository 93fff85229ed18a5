"""An attacker's and a careless admin's inputs: every one answers 4xx with its reason, nothing is written, no 500."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from server import Runtime
from storage.models import CaseHoliday, Notice, Township, User
from tests.conftest import BOTH_DATABASES, ClientFactory, UserFactory
from tests.foundation.seed import seed_tree
from tests.support.http import ApiClient

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


async def count(runtime: Runtime, model: type) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


async def raw_request(server: TestServer, head: bytes, body_start: bytes) -> tuple[int, bytes]:
    """Send a request's head and the first bytes of its body, never the rest; the status the server answers."""
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head + body_start)
        await writer.drain()
        async with asyncio.timeout(20):
            status_line = await reader.readline()
            rest = await reader.read(4096)
        return int(status_line.split()[1]), rest
    finally:
        writer.close()


# -- 3: where a sign-in may lead ------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example",
        "/%09/evil.example",
        "/\\evil.example",
        "//evil.example/",
        "https://evil.example/",
        "/%2F%2Fevil.example",
        "/\r\n/evil.example",
        "/api/v1/session",
        "/no/such/page",
    ],
    ids=["tab", "encoded-tab", "backslash", "scheme-relative", "absolute", "encoded-slashes", "crlf", "api", "no-page"],
)
async def test_only_a_page_of_this_service_is_accepted_as_next(
    new_client: ClientFactory, make_user: UserFactory, target: str
) -> None:
    username, password = await make_user("staff", county_wide=True)
    client = await new_client()
    page = await client.get("/login", params={"next": target})
    html = await page.text()
    assert page.status == 200
    assert 'name="next" value="/"' in html
    response = await client.client.post(
        "/login",
        data={"csrf_token": csrf_from(html), "username": username, "password": password, "next": target},
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == "/"


async def test_a_page_of_this_service_is_kept_as_next(new_client: ClientFactory, make_user: UserFactory) -> None:
    username, password = await make_user("admin", county_wide=True)
    client = await new_client()
    html = await (await client.get("/login", params={"next": "/admin/audit?user_id=1"})).text()
    response = await client.client.post(
        "/login",
        data={
            "csrf_token": csrf_from(html),
            "username": username,
            "password": password,
            "next": "/admin/audit?user_id=1",
        },
        allow_redirects=False,
    )
    assert response.headers["Location"] == "/admin/audit?user_id=1"


# -- 4: ids are ASCII digits ----------------------------------------------------------------------

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
MATHEMATICAL = str.maketrans("0123456789", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗")


async def test_an_id_in_other_digits_is_no_alias_and_never_a_crash(runtime: Runtime, admin: ApiClient) -> None:
    tree = await seed_tree(runtime)
    township = str(tree.township_ids[0])
    assert (await admin.get(f"/api/v1/townships/{township}")).status == 200
    for path in (
        f"/api/v1/townships/{township.translate(ARABIC_INDIC)}",
        f"/api/v1/townships/{township.translate(FULLWIDTH)}",
        f"/api/v1/townships/{township.translate(MATHEMATICAL)}",
        f"/api/v1/notices/{'1' * 22}".translate(ARABIC_INDIC),
        f"/admin/townships/{township.translate(ARABIC_INDIC)}",
        f"/api/v1/users/{'9' * 22}".translate(FULLWIDTH),
    ):
        response = await admin.get(path, allow_redirects=False)
        assert response.status == 404, path
    deleted = await admin.delete(f"/api/v1/zones/{str(tree.zone_ids[0]).translate(ARABIC_INDIC)}")
    assert deleted.status == 404
    assert (await admin.get(f"/api/v1/zones/{tree.zone_ids[0]}")).status == 200


# -- 5: nesting, bytes that are not UTF-8, dates at the ends of the calendar -----------------------


async def test_deeply_nested_json_from_anyone_is_400(runtime: Runtime, new_client: ClientFactory) -> None:
    anonymous = await new_client()
    for body in (b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        response = await anonymous.client.post(
            "/api/v1/session", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status in (400, 413), response.status
        assert (await response.json())["error"]["code"] in ("invalid_json", "payload_too_large")


async def test_a_form_that_is_not_utf8_is_400(runtime: Runtime, new_client: ClientFactory) -> None:
    anonymous = await new_client()
    await anonymous.get("/login")
    response = await anonymous.client.post(
        "/login",
        data=b"username=\xff\xfe\xfd&password=%FF&csrf_token=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 400
    assert await count(runtime, User) == 0


async def test_dates_at_the_ends_of_the_calendar_are_refused(runtime: Runtime, admin: ApiClient) -> None:
    tree = await seed_tree(runtime)
    for path in (
        "/api/v1/asrun?since=0001-01-01&until=9999-12-31",
        "/api/v1/asrun?since=9999-12-31",
        f"/api/v1/zones/{tree.zone_ids[0]}/week?start=9999-12-31",
        f"/api/v1/zones/{tree.zone_ids[0]}/week?start=0001-01-01",
        "/api/v1/audit?since=0001-01-01&until=9999-12-31",
        "/api/v1/statistics/cases?date_from=0001-01-01&date_to=9999-12-31",
    ):
        response = await admin.get(path)
        assert response.status == 400, (path, response.status)
        message = (await response.json())["error"]["message"]
        assert "2000年到2099年" in message, message
    holiday = await admin.client.put(
        "/api/v1/holidays/0001-01-01", json={"kind": "holiday", "name": "元旦"}, headers={"X-CSRF-Token": admin.csrf}
    )
    assert holiday.status == 400
    assert await count(runtime, CaseHoliday) > 0  # the shipped table, untouched


# -- 6: a body that arrives in pieces ----------------------------------------------------------------


async def test_a_json_body_sent_in_slow_pieces_is_read_whole(runtime: Runtime, admin: ApiClient) -> None:
    tree = await seed_tree(runtime)
    body = f'{{"county_id": {tree.county_id}, "name": "慢慢来乡"'.encode() + b" " * 6000 + b"}"

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]
            await asyncio.sleep(0.05)

    response = await admin.client.post(
        "/api/v1/townships",
        data=pieces(),
        headers={"Content-Type": "application/json", "Content-Length": str(len(body))},
    )
    assert response.status == 201, await response.text()
    assert (await response.json())["name"] == "慢慢来乡"


# -- 7: no large body is read before it is allowed ---------------------------------------------------


async def test_a_huge_anonymous_form_is_refused_before_its_body_is_read(server: TestServer) -> None:
    head = (
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 51380224\r\n\r\n"
    )
    # Only 1 KB of the 49 MB announced is ever sent: the answer must come without the rest.
    status, _ = await raw_request(server, head, b"username=" + b"a" * 1024)
    assert status == 413


async def test_a_form_larger_than_forms_are_is_refused_even_without_a_length(
    runtime: Runtime, new_client: ClientFactory
) -> None:
    anonymous = await new_client()
    limit = runtime.settings.server.max_form_bytes

    async def chunks() -> AsyncIterator[bytes]:
        yield b"username=x&password="
        for _ in range(limit // 65536 + 2):
            yield b"p" * 65536

    response = await anonymous.client.post(
        "/login", data=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 413


async def test_an_upload_without_the_csrf_header_is_refused_before_its_body_is_read(
    server: TestServer, admin: ApiClient
) -> None:
    cookies = admin.client.session.cookie_jar.filter_cookies(admin.client.make_url("/"))
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in cookies.items())
    head = (
        b"POST /api/v1/notices/1/recording HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\n"
        b"Cookie: " + cookie.encode() + b"\r\n"
        b"Content-Length: 20971520\r\n\r\n"
    )
    status, rest = await raw_request(server, head, b"--xyz\r\n")
    assert status == 403
    assert b"csrf" in rest


# -- 9: control characters are refused when written ---------------------------------------------------


@pytest.mark.parametrize("bad", ["停水\x00通知", "停水\r\n通知", "停水\x1b[2J通知", "停水\u2028通知"], ids=repr)
async def test_control_characters_in_a_notice_title_are_refused(runtime: Runtime, admin: ApiClient, bad: str) -> None:
    tree = await seed_tree(runtime)
    response = await admin.post(
        "/api/v1/notices",
        json={"kind": "service", "title": bad, "body": "第一行\n第二行", "township_id": tree.township_ids[0]},
    )
    assert response.status == 400
    assert (await response.json())["error"]["fields"] == {"title": "不能含有换行或控制字符"}
    assert await count(runtime, Notice) == 0


async def test_a_notice_body_keeps_its_line_breaks_but_not_a_nul(runtime: Runtime, admin: ApiClient) -> None:
    tree = await seed_tree(runtime)
    notice = {"kind": "service", "title": "停水通知", "township_id": tree.township_ids[0]}
    refused = await admin.post("/api/v1/notices", json={**notice, "body": "明天\x00停水"})
    assert (await refused.json())["error"]["fields"] == {"body": "不能含有控制字符"}
    created = await admin.post("/api/v1/notices", json={**notice, "body": "明天停水。\n请提前储水。"})
    assert created.status == 201
    assert (await created.json())["body"] == "明天停水。\n请提前储水。"


async def test_a_holiday_name_with_a_nul_is_refused(runtime: Runtime, admin: ApiClient) -> None:
    before = await count(runtime, CaseHoliday)
    response = await admin.client.put(
        "/api/v1/holidays/2026-12-31",
        json={"kind": "holiday", "name": "跨年\x00"},
        headers={"X-CSRF-Token": admin.csrf},
    )
    assert response.status == 400
    assert "name" in (await response.json())["error"]["fields"]
    assert await count(runtime, CaseHoliday) == before


@pytest.mark.parametrize(
    "endpoint", ["PJSIP/op1\r\nAction: Originate", "PJSIP/op 1", "op1,tT", "PJSIP/op1\x00"], ids=repr
)
async def test_a_phone_endpoint_that_would_reach_asterisk_is_checked_when_written(
    runtime: Runtime, admin: ApiClient, endpoint: str
) -> None:
    before = await count(runtime, User)
    created = await admin.post(
        "/api/v1/users",
        json={"username": "op9", "display_name": "接线员", "roles": ["operator"], "county_wide": True,
              "phone_endpoint": endpoint},
    )  # fmt: skip
    assert created.status == 400
    assert "phone_endpoint" in (await created.json())["error"]["fields"]
    assert await count(runtime, User) == before
    changed = await admin.patch(f"/api/v1/users/{admin.me['id']}", json={"phone_endpoint": endpoint})
    assert changed.status == 400
    async with runtime.sessions() as session:
        assert (await session.get(User, admin.me["id"])).phone_endpoint is None  # type: ignore[union-attr]


async def test_a_township_name_with_a_newline_is_refused(runtime: Runtime, admin: ApiClient) -> None:
    tree = await seed_tree(runtime)
    before = await count(runtime, Township)
    response = await admin.post("/api/v1/townships", json={"county_id": tree.county_id, "name": "甲\n乡"})
    assert response.status == 400
    assert await count(runtime, Township) == before


# -- 14: what every answer says about us ----------------------------------------------------------------


async def test_answers_name_no_server_version_and_json_is_never_cached(
    new_client: ClientFactory, admin: ApiClient
) -> None:
    for response in (await admin.get("/api/v1/session"), await (await new_client()).get("/healthz")):
        assert "aiohttp" not in response.headers.get("Server", "").lower()
        assert "Python" not in response.headers.get("Server", "")
        assert response.headers["Cache-Control"] == "no-store"


async def test_the_origin_must_match_in_scheme_host_and_port(server: TestServer, admin: ApiClient) -> None:
    port = server.port
    for origin in (f"https://127.0.0.1:{port}", "http://127.0.0.1:1", f"http://localhost.evil:{port}", "null"):
        response = await admin.post("/api/v1/counties", json={"name": "跨站县"}, headers={"Origin": origin})
        assert response.status == 403, origin
        assert (await response.json())["error"]["code"] == "csrf.origin"
    same = await admin.post("/api/v1/counties", json={"name": "本站县"}, headers={"Origin": f"http://127.0.0.1:{port}"})
    assert same.status == 201


async def test_health_tells_anonymous_callers_statuses_only(new_client: ClientFactory, admin: ApiClient) -> None:
    anonymous = await (await new_client()).get_json("/healthz")
    for name, component in anonymous["components"].items():
        assert set(component) <= {"status", "role"}, (name, component)
    detailed = await admin.get_json("/healthz")
    assert "lock" in detailed["components"]["worker"]
    assert anonymous["status"] == detailed["status"]


# -- 10: every route, every hostile input above ----------------------------------------------------------

SESSION_ENDING = {"/logout", "/api/v1/session", "/api/v1/session/devices/end-others", "/account/sessions/end-others"}
PATH_PART = re.compile(r"\{(\w+)(?::[^}]+)?\}")
HOSTILE_BODIES = [
    ("application/json", b"[" * 100_000),
    ("application/json", b'{"name": "\xff\xfe"}'),
    ("application/x-www-form-urlencoded", b"name=\xff\xfe&csrf_token=%FF"),
    ("application/json", b'{"name": "a\\u0000b", "title": "x\\r\\ny"}'),
]


@pytest.mark.slow
async def test_every_route_refuses_the_hostile_inputs_with_a_4xx(
    runtime: Runtime, app: web.Application, admin: ApiClient, new_client: ClientFactory
) -> None:
    await seed_tree(runtime)
    anonymous = await new_client()
    seen = 0
    for resource in app.router.resources():
        info = resource.get_info()
        template = info.get("formatter") or info.get("path")
        if not template or template.startswith("/static"):
            continue
        # Every id in Arabic-Indic digits: never an alias of a real id, never a crash.
        path = PATH_PART.sub("١١", template)
        for route in resource:
            method = route.method
            if method == "HEAD":
                continue
            for client in (admin, anonymous):
                response = await client.client.request(method, path, allow_redirects=False)
                assert response.status < 500, (method, path, response.status)
                assert response.status != 200 or "{" not in template, (method, path)
                seen += 1
                if method in ("GET", "HEAD", "OPTIONS"):
                    continue
                if template in SESSION_ENDING:
                    continue
                for content_type, body in HOSTILE_BODIES:
                    # Plain ids of nothing (so nothing changes): the body is what is hostile. A route that reads
                    # no body may answer 2xx or 3xx.
                    real = PATH_PART.sub("999999", template)
                    headers = {"Content-Type": content_type, "X-CSRF-Token": client.csrf}
                    hostile = await client.client.request(
                        method, real, data=body, headers=headers, allow_redirects=False
                    )
                    assert hostile.status < 500, (method, real, content_type, hostile.status)
    assert seen > 200
    assert (await admin.get("/api/v1/session")).status == 200
