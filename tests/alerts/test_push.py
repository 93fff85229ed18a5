"""The push endpoint over real HTTP: a source's own token, 400 with the reason for what cannot be used."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from server import Runtime
from storage.models import AlertMessage, AlertRefusal
from tests.alerts.fixtures import cap_bytes
from tests.alerts.support import RecordingBroadcaster, coded_county
from tests.conftest import ClientFactory, UserFactory
from tests.support.http import ApiClient

XML = {"Content-Type": "application/xml"}


@pytest.fixture
async def token(runtime: Runtime, admin: ApiClient) -> str:
    created = await admin.post_json("/api/v1/alert-sources", {"name": "市气象局推送"}, expect=201)
    assert created["kind"] == "push"
    value: str = created["token"]
    return value


async def _push(client: ApiClient, data: bytes, token: str, **headers: str) -> tuple[int, Any]:
    response = await client.client.post(
        "/api/v1/alerts/cap", data=data, headers={**XML, "Authorization": f"Bearer {token}", **headers}
    )
    return response.status, await response.json()


async def test_a_pushed_warning_is_taken_and_a_repeat_answers_with_the_first(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, token: str
) -> None:
    await coded_county(runtime)
    runtime.alerts.service.use_broadcaster(RecordingBroadcaster())
    machine = await new_client()
    data = cap_bytes("cn-yellow-snowstorm.xml", now=runtime.clock.now())
    status, body = await _push(machine, data, token)
    assert status == 202 and body["state"] == "pending" and not body["duplicate"]
    status, again = await _push(machine, data, token)
    assert status == 200 and again["duplicate"] and again["message_id"] == body["message_id"]


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("cn-malformed.xml", "cap.schema", "不符合 CAP 1.2 规范"),
        ("cn-dtd-external-entity.xml", "cap.dtd", "文档类型声明"),
    ],
)
async def test_a_bad_message_is_refused_with_400_and_its_reason(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, token: str, name: str, code: str, words: str
) -> None:
    status, body = await _push(await new_client(), cap_bytes(name), token)
    assert status == 400 and body["error"]["code"] == code and words in body["error"]["message"]
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AlertMessage)) == 0
        assert await session.scalar(select(func.count()).select_from(AlertRefusal)) == 1


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\xff\xfe garbage", b"<alert", "<alert>预警</alert>".encode("gb18030"), b"<a>" * 5000],
)
async def test_hostile_bodies_get_400_never_500(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, token: str, data: bytes
) -> None:
    status, body = await _push(await new_client(), data, token)
    assert status == 400, body
    assert body["error"]["message"]


async def test_without_the_sources_token_nothing_is_read(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, token: str
) -> None:
    machine = await new_client()
    data = cap_bytes("cn-red-rainstorm.xml", now=runtime.clock.now())
    status, body = await _push(machine, data, "not-the-token")
    assert status == 401 and body["error"]["code"] == "alert_source.bad_token"
    response = await machine.client.post("/api/v1/alerts/cap", data=data, headers=XML)
    assert response.status == 401
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AlertMessage)) == 0


async def test_a_body_that_is_not_xml_by_its_type_is_refused(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, token: str
) -> None:
    data = cap_bytes("cn-red-rainstorm.xml", now=runtime.clock.now())
    status, body = await _push(await new_client(), data, token, **{"Content-Type": "text/plain"})
    assert status == 400 and body["error"]["code"] == "cap.content_type"


async def test_only_admins_add_sources_and_approvers_decide(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory, token: str
) -> None:
    staff = await (await new_client()).login(*await make_user("staff", county_wide=True))
    refused = await staff.post("/api/v1/alert-sources", json={"name": "别的来源"})
    assert refused.status == 403
    await coded_county(runtime)
    runtime.alerts.service.use_broadcaster(RecordingBroadcaster())
    status, body = await _push(await new_client(), cap_bytes("cn-yellow-snowstorm.xml", now=runtime.clock.now()), token)
    assert status == 202
    assert (await staff.post(f"/api/v1/alerts/{body['message_id']}/release", json={})).status == 403
    approver = await (await new_client()).login(*await make_user("approver", county_wide=True))
    released = await approver.post_json(f"/api/v1/alerts/{body['message_id']}/release", {})
    assert released["state"] == "aired" and released["state_label"] == "已播出"


async def test_an_admin_adds_a_feed_and_a_folder_and_a_source_without_its_address_is_refused(
    runtime: Runtime, server: TestServer, admin: ApiClient, tmp_path: Any
) -> None:
    feed = {"name": "省预警中心订阅", "kind": "pull", "url": "http://127.0.0.1:9/feed.atom", "silent_after_s": 3600}
    created = await admin.post_json("/api/v1/alert-sources", feed, expect=201)
    assert created["kind"] == "pull" and created["token"] is None
    folder = {"name": "U盘", "kind": "folder", "folder": str(tmp_path)}
    assert (await admin.post_json("/api/v1/alert-sources", folder, expect=201))["kind"] == "folder"
    refused = await admin.post_json("/api/v1/alert-sources", {"name": "无地址", "kind": "pull"}, expect=400)
    assert "地址" in refused["error"]["message"]
    bad_certificate = {"name": "坏证书", "certificate_pem": "-----BEGIN CERTIFICATE-----\nxx"}
    refused = await admin.post_json("/api/v1/alert-sources", bad_certificate, expect=400)
    assert "证书" in refused["error"]["message"]
