"""The editors an admin keeps the alerts with: the policy table, a source, a village's code and coordinates, the
测试分区 flag — through the API and through the page forms as a browser posts them (a refusal keeps what was
typed and writes nothing); and the policy as edited decides the next message."""

from __future__ import annotations

from aiohttp import FormData
from sqlalchemy import select

from server import Runtime
from storage.models import AlertPolicyRule, AuditEntry, Village, Zone
from tests.alerts.fixtures import cap_bytes
from tests.alerts.support import RecordingBroadcaster, coded_county
from tests.conftest import SYSTEM
from tests.support.http import ApiClient


async def _form(client: ApiClient, path: str, fields: list[tuple[str, str]]) -> tuple[int, str]:
    data = FormData([("csrf_token", client.csrf), *fields])
    response = await client.post(path, data=data)
    return response.status, await response.text()


async def _audit(runtime: Runtime, action: str) -> list[AuditEntry]:
    async with runtime.sessions() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all())


async def test_an_edited_policy_row_decides_the_next_message(runtime: Runtime, admin: ApiClient) -> None:
    await coded_county(runtime)
    runtime.alerts.service.use_broadcaster(recorder := RecordingBroadcaster())
    rules = (await admin.get_json("/api/v1/alert-policy"))["items"]
    assert [rule["action"] for rule in rules] == ["auto", "review", "record"]  # the defaults
    # 寒潮 warnings (the blue cold wave fixture, Minor) go to an approver first, at most twice, never at night.
    created = await admin.post_json(
        "/api/v1/alert-policy",
        {"position": 5, "action": "review", "event": "寒潮", "repeat_every_min": 120, "max_plays": 2},
        expect=201,
    )
    assert created["action_label"] == "待审核" and created["repeats_in_quiet_hours"] is False
    source, _ = await runtime.alerts.service.create_source(SYSTEM, name="推送", kind="push")
    receipt = await runtime.alerts.service.receive(
        source.id, cap_bytes("cn-blue-coldwave.xml", now=runtime.clock.now())
    )
    assert receipt.state == "pending" and recorder.aired == []
    row = await runtime.alerts.service.get(receipt.message_id)
    assert row.policy_rule_id == created["id"]
    # Changed, deleted: audited with what changed.
    await admin.client.put(f"/api/v1/alert-policy/{created['id']}", json={**_rule(created), "action": "record"})
    assert (await admin.get_json("/api/v1/alert-policy"))["items"][0]["action"] == "record"
    response = await admin.delete(f"/api/v1/alert-policy/{created['id']}")
    assert response.status == 204
    (update,) = await _audit(runtime, "alert_policy.update")
    assert update.detail == {"action": {"before": "review", "after": "record"}}
    assert len(await _audit(runtime, "alert_policy.create")) == len(await _audit(runtime, "alert_policy.delete")) == 1


def _rule(rule: dict[str, object]) -> dict[str, object]:
    keys = ("position", "action", "event", "severities", "urgencies", "certainties", "repeat_every_min", "max_plays")
    return {key: rule[key] for key in keys}


async def test_a_refused_policy_row_keeps_what_was_typed_and_writes_nothing(runtime: Runtime, admin: ApiClient) -> None:
    async with runtime.sessions() as session:
        before = len((await session.scalars(select(AlertPolicyRule))).all())
    # Three plays but no interval between them: refused, in Chinese, the form as typed.
    status, html = await _form(
        admin,
        "/alerts/policy",
        [("position", "40"), ("action", "auto"), ("event", "森林草原火险"), ("severities", "Severe"),
         ("severities", "Extreme"), ("max_plays", "3"), ("note", "火险季节")],
    )  # fmt: skip
    assert status == 400 and "没有添加" in html and "播出多于一次时需要重复间隔" in html
    assert 'value="森林草原火险"' in html and 'value="火险季节"' in html
    assert 'value="Severe" checked' in html and 'value="Extreme" checked' in html
    async with runtime.sessions() as session:
        assert len((await session.scalars(select(AlertPolicyRule))).all()) == before
    # An action CAP rules do not have: refused too (a 4xx, never a 500).
    status, _ = await _form(admin, "/alerts/policy", [("position", "40"), ("action", "shout"), ("max_plays", "1")])
    assert status == 400
    response = await admin.post("/api/v1/alert-policy", json={"position": 1, "action": "auto", "severities": ["Big"]})
    assert response.status == 400


async def test_a_source_is_changed_and_switched_off_and_then_takes_nothing(runtime: Runtime, admin: ApiClient) -> None:
    created = await admin.post_json("/api/v1/alert-sources", {"name": "市气象局推送"}, expect=201)
    source_id, token = created["id"], created["token"]
    # A refused change (a certificate that is not one) keeps what was typed.
    status, html = await _form(
        admin, f"/alerts/sources/{source_id}", [("name", "市气象局"), ("active", "on"), ("certificate_pem", "不是证书")]
    )
    assert status == 400 and "证书不是有效的 PEM 格式" in html and 'value="市气象局"' in html and "不是证书" in html
    status, html = await _form(admin, f"/alerts/sources/{source_id}", [("name", "市气象局（旧）")])
    assert status == 200 and "已保存预警来源“市气象局（旧）”（已停用）" in html and "停用" in html
    # Switched off: its token no longer takes messages.
    response = await admin.client.post(
        "/api/v1/alerts/cap",
        data=cap_bytes("cn-red-rainstorm.xml", now=runtime.clock.now()),
        headers={"Content-Type": "application/xml", "Authorization": f"Bearer {token}"},
    )
    assert response.status == 401
    (entry,) = await _audit(runtime, "alert_source.update")
    assert entry.detail is not None and entry.detail["active"] == {"before": True, "after": False}
    listed = (await admin.get_json("/api/v1/alert-sources"))["items"]
    assert [(item["name"], item["active"]) for item in listed] == [("市气象局（旧）", False)]
    # Switched on again through the API.
    patched = await admin.patch_json(f"/api/v1/alert-sources/{source_id}", {"name": "市气象局推送", "active": True})
    assert patched["active"] is True


async def test_a_village_gets_its_code_and_coordinates_and_a_zone_the_test_flag(
    runtime: Runtime, admin: ApiClient
) -> None:
    tree = await coded_county(runtime)
    village = tree.willow_village  # 示例红柳乡 (159901202) 团结村
    page = f"/admin/villages/{village}"
    # A code under another township, and a latitude without its longitude: refused, what was typed shown again.
    status, html = await _form(
        admin, page, [("name", "团结村"), ("kind", "village"), ("code", "159901101299"), ("latitude", "41.5"),
                      ("longitude", "")],
    )  # fmt: skip
    assert status == 400 and "应以所属乡镇的代码 159901202 开头" in html and "纬度和经度要一起填写" in html
    assert 'value="159901101299"' in html and 'value="41.5"' in html
    status, html = await _form(
        admin, page, [("name", "团结村"), ("kind", "village"), ("code", "159901202207"), ("latitude", "41.25"),
                      ("longitude", "111.3")],
    )  # fmt: skip
    assert status == 200 and "已保存" in html and 'value="159901202207"' in html
    async with runtime.sessions() as session:
        saved = await session.get(Village, village)
    assert saved is not None and (saved.code, saved.latitude, saved.longitude) == ("159901202207", 41.25, 111.3)
    # Emptied coordinates clear them.
    status, _ = await _form(
        admin, page, [("name", "团结村"), ("kind", "village"), ("code", "159901202207"), ("latitude", ""),
                      ("longitude", "")],
    )  # fmt: skip
    async with runtime.sessions() as session:
        saved = await session.get(Village, village)
    assert saved is not None and saved.latitude is None and saved.longitude is None
    # The 测试分区 flag: ticked, then unticked.
    await _form(admin, f"/admin/zones/{tree.willow_zone}", [("name", "村委会广场"), ("is_test", "on")])
    assert 'name="is_test" checked' in await (await admin.get(f"/admin/zones/{tree.willow_zone}")).text()
    await _form(admin, f"/admin/zones/{tree.test_zone}", [("name", "广播室测试")])
    async with runtime.sessions() as session:
        flags = {zone.id: zone.is_test for zone in (await session.scalars(select(Zone))).all()}
    assert flags[tree.willow_zone] is True and flags[tree.test_zone] is False
