"""Bad input gets a clear error and writes nothing."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from server import Runtime
from storage.models import Township, User
from tests.conftest import BOTH_DATABASES, ClientFactory, UserFactory
from tests.foundation.seed import seed_tree
from tests.support.http import ApiClient

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


async def count(runtime: Runtime, model: type) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
async def admin_client(new_client: ClientFactory, make_user: UserFactory) -> ApiClient:
    username, password = await make_user("admin", county_wide=True)
    return await (await new_client()).login(username, password)


async def test_malformed_json_is_400_and_writes_nothing(runtime: Runtime, admin_client: ApiClient) -> None:
    tree = await seed_tree(runtime)
    before = await count(runtime, Township)
    response = await admin_client.client.post(
        "/api/v1/townships", data=b'{"county_id": 1, "name": ', headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] == "invalid_json"
    assert body["error"]["message"] == "请求体不是有效的JSON"
    assert await count(runtime, Township) == before
    assert tree.county_id


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"county_id": "1", "name": "甲"}, "county_id", "应为整数"),
        ({"county_id": 1, "name": 5}, "name", "应为文字"),
        ({"county_id": 1}, "name", "必填"),
        ({"county_id": 1, "name": "甲", "mayor": "x"}, "mayor", "不认识的字段"),
        ({"county_id": 1, "name": ""}, "name", "不能为空"),
        ({"county_id": 1, "name": "长" * 65}, "name", "最多64个字"),
        ({"county_id": 1, "name": "甲", "quiet_start": "25:00"}, "quiet_start", "时间格式不正确"),
    ],
    ids=["string-for-int", "int-for-string", "missing", "unknown-field", "empty", "too-long", "25-oclock"],
)
async def test_wrong_fields_are_named_in_chinese_and_nothing_is_written(
    runtime: Runtime, admin_client: ApiClient, payload: dict[str, object], field: str, message: str
) -> None:
    await seed_tree(runtime)
    before = await count(runtime, Township)
    response = await admin_client.post("/api/v1/townships", json=payload)
    body = await response.json()
    assert response.status == 400, body
    assert body["error"]["fields"][field] == message
    assert body["error"]["message"].startswith("输入有误")
    assert await count(runtime, Township) == before


async def test_a_body_over_the_limit_is_413(runtime: Runtime, admin_client: ApiClient) -> None:
    limit = runtime.settings.server.max_json_bytes
    response = await admin_client.post("/api/v1/counties", json={"name": "x" * (limit + 10)})
    assert response.status == 413
    assert "请求体太大" in (await response.json())["error"]["message"]


async def test_a_form_body_where_json_is_expected_is_415(admin_client: ApiClient) -> None:
    response = await admin_client.post("/api/v1/counties", data={"name": "表单县"})
    assert response.status == 415


async def test_a_township_of_another_scope_cannot_be_given_to_a_user(runtime: Runtime, admin_client: ApiClient) -> None:
    await seed_tree(runtime)
    before = await count(runtime, User)
    response = await admin_client.post(
        "/api/v1/users",
        json={"username": "newstaff", "display_name": "新人", "roles": ["staff"], "township_ids": [424242]},
    )
    assert response.status == 400
    assert "township_ids" in (await response.json())["error"]["fields"]
    assert await count(runtime, User) == before


async def test_an_unknown_role_and_a_weak_password_are_refused(runtime: Runtime, admin_client: ApiClient) -> None:
    before = await count(runtime, User)
    unknown = await admin_client.post(
        "/api/v1/users", json={"username": "u1", "display_name": "x", "roles": ["mayor"], "county_wide": True}
    )
    assert unknown.status == 400
    assert "roles.0" in (await unknown.json())["error"]["fields"]
    weak = await admin_client.post(
        "/api/v1/users",
        json={
            "username": "user2",
            "display_name": "x",
            "roles": ["leader"],
            "county_wide": True,
            "password": "12345678901",
        },
    )
    assert weak.status == 400
    assert (await weak.json())["error"]["code"] == "password.weak"
    assert await count(runtime, User) == before


async def test_sql_looking_filters_are_just_strings(runtime: Runtime, admin_client: ApiClient) -> None:
    await seed_tree(runtime)
    entries = await admin_client.get_json("/api/v1/audit?action=x%27%20OR%201%3D1%20--&object_type=user")
    assert entries == []
    bad = await admin_client.get("/api/v1/audit?user_id=1%20OR%201=1")
    assert bad.status == 400
    assert (await bad.json())["error"]["fields"]["user_id"] == "应为整数"
    unknown = await admin_client.get("/api/v1/villages?township_id=1&drop=table")
    assert unknown.status == 400


async def test_html_in_names_is_escaped_on_every_page(runtime: Runtime, admin_client: ApiClient) -> None:
    tree = await seed_tree(runtime)
    evil = "<script>alert(1)</script>"
    await admin_client.patch_json(f"/api/v1/villages/{tree.village_ids[0]}", {"name": evil})
    for path in (f"/admin/townships/{tree.township_ids[0]}", f"/admin/villages/{tree.village_ids[0]}"):
        html = await (await admin_client.get(path)).text()
        assert evil not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_duplicate_names_and_deleting_a_township_with_villages_are_conflicts(
    runtime: Runtime, admin_client: ApiClient
) -> None:
    tree = await seed_tree(runtime)
    duplicate = await admin_client.post("/api/v1/townships", json={"county_id": tree.county_id, "name": "甲乡"})
    assert duplicate.status == 409
    assert (await duplicate.json())["error"]["message"] == "同级已有同名的乡镇"
    in_use = await admin_client.delete(f"/api/v1/townships/{tree.township_ids[0]}")
    assert in_use.status == 409
    assert await count(runtime, Township) == 2


@pytest.mark.parametrize(
    ("transport", "address", "field"),
    [
        ("rtp", "not-an-address", "address"),
        ("rtp", "300.1.1.1:5004", "address"),
        ("rtp", "127.0.0.1:80", "address"),
        ("sip", "spk 1; drop", "address"),
        ("http", "t", "address"),
        ("sink", "../../etc/passwd", "address"),
        ("rtp", "127.0.0.1:5004", "codec"),
    ],
    ids=["not-an-address", "bad-ip", "low-port", "sip-junk", "short-terminal", "path", "bad-codec"],
)
async def test_speaker_addresses_are_checked_per_transport(
    runtime: Runtime, admin_client: ApiClient, transport: str, address: str, field: str
) -> None:
    tree = await seed_tree(runtime)
    payload = {"zone_id": tree.zone_ids[0], "name": "新喇叭", "transport": transport, "address": address}
    if field == "codec":
        payload["codec"] = "opus"
    response = await admin_client.post("/api/v1/speakers", json=payload)
    body = await response.json()
    assert response.status == 400, body
    assert field in body["error"]["fields"]
    assert re.search("[\u4e00-\u9fff]", body["error"]["message"])


async def test_an_http_terminal_gets_a_token_once_and_only_its_hash_is_kept(
    runtime: Runtime, admin_client: ApiClient
) -> None:
    tree = await seed_tree(runtime)
    created = await admin_client.post_json(
        "/api/v1/speakers",
        {"zone_id": tree.zone_ids[0], "name": "4G音箱", "transport": "http", "address": "t00001"},
        expect=201,
    )
    token = created["token"]
    assert len(token) >= 32
    shown_again = await admin_client.get_json(f"/api/v1/speakers/{created['id']}")
    assert "token" not in shown_again
    from storage.models import Speaker

    async with runtime.sessions() as session:
        stored = await session.get(Speaker, created["id"])
    assert stored is not None and stored.token_hash and token not in stored.token_hash


async def test_numbers_beyond_any_column_are_refused_not_crashed_on(runtime: Runtime, admin_client: ApiClient) -> None:
    """Found by schemathesis: such numbers reached the drivers, which raise instead of finding nothing (500)."""
    await seed_tree(runtime)
    huge = 2**64
    # In a path: no row has such an id (PostgreSQL's INTEGER ends at 2**31 - 1).
    for path in (f"/api/v1/townships/{huge}", f"/api/v1/villages/{2**31}", f"/api/v1/notices/{huge}"):
        response = await admin_client.client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found"
    # A free path part holding a digit int() cannot read ("²") is not taken for an id.
    superscript = await admin_client.client.delete("/api/v1/holidays/²", headers={"X-CSRF-Token": admin_client.csrf})
    assert superscript.status == 404 and (await superscript.json())["error"]["code"] == "holiday.bad_date"
    # In a query string and in a body: the field is named, nothing is written.
    response = await admin_client.client.get("/api/v1/audit", params={"user_id": str(-huge)})
    assert response.status == 400
    assert (await response.json())["error"]["fields"] == {"user_id": "数值超出范围"}
    before = await count(runtime, Township)
    response = await admin_client.client.post("/api/v1/townships", json={"county_id": huge, "name": "甲"})
    assert response.status == 400
    assert (await response.json())["error"]["fields"] == {"county_id": "数值超出范围"}
    response = await admin_client.client.post("/api/v1/emergency", json={"title": "火情", "zone_ids": [1, huge]})
    assert response.status == 400
    assert await count(runtime, Township) == before


async def test_null_for_a_field_that_cannot_be_empty_is_named_and_nothing_changes(
    runtime: Runtime, admin_client: ApiClient
) -> None:
    tree = await seed_tree(runtime)
    for path, field in (
        (f"/api/v1/townships/{tree.township_ids[0]}", "name"),
        (f"/api/v1/speakers/{tree.speaker_ids[0]}", "enabled"),
        (f"/api/v1/units/{tree.unit_ids[0]}", "active"),
        (f"/api/v1/zones/{tree.zone_ids[0]}", "name"),
    ):
        response = await admin_client.client.patch(path, json={field: None})
        assert response.status == 400, (path, await response.text())
        assert (await response.json())["error"]["fields"] == {field: "不能为空"}
    async with runtime.sessions() as session:
        township = await session.get(Township, tree.township_ids[0])
        assert township is not None and township.name


async def test_a_notice_for_a_township_that_does_not_exist_and_an_upload_without_its_boundary(
    runtime: Runtime, admin_client: ApiClient
) -> None:
    tree = await seed_tree(runtime)
    created = await admin_client.client.post(
        "/api/v1/notices",
        json={"kind": "service", "title": "停水通知", "body": "明天上午停水。", "township_id": tree.township_ids[0]},
    )
    assert created.status in (200, 201), await created.text()
    notice_id = (await created.json())["id"]
    moved = await admin_client.client.put(
        f"/api/v1/notices/{notice_id}",
        json={"kind": "service", "title": "停水通知", "body": "明天上午停水。", "township_id": 25079},
    )
    assert moved.status == 400
    assert (await moved.json())["error"]["fields"] == {"township_id": "乡镇不存在"}
    upload = await admin_client.client.post(
        f"/api/v1/notices/{notice_id}/recording",
        data=b"",
        headers={"Content-Type": "multipart/form-data", "X-CSRF-Token": admin_client.csrf},
    )
    assert upload.status == 400
    assert (await upload.json())["error"]["fields"] == {"recording": "格式不正确"}
