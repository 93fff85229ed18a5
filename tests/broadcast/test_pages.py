"""Every broadcasting page renders for the people who use it, with content in it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from server import Runtime
from settings import Settings
from tests.conftest import ClientFactory, UserFactory
from tests.support.broadcasting import approved_notice, broadcasting_settings, build_place, make_principal, principal
from tests.support.http import ApiClient

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return broadcasting_settings(tmp_path / "data", database_url)


async def test_every_broadcasting_page_renders_for_staff_approvers_leaders_and_the_emergency_sender(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory
) -> None:
    admin = await make_principal(runtime, "pages-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:a"), ("rtp", "127.0.0.1:5004")]])
    staff_login = await make_user("staff", township_ids=[place.township_id])
    approver_login = await make_user("approver", township_ids=[place.township_id])
    notice = await approved_notice(
        runtime,
        await principal(runtime, staff_login[0]),
        await principal(runtime, approver_login[0]),
        township_id=place.township_id,
    )
    staff = await (await new_client()).login(*staff_login)
    approver = await (await new_client()).login(*approver_login)
    leader = await (await new_client()).login(*await make_user("leader", county_wide=True, can_emergency=True))
    expectations = [
        (staff, "/broadcast/notices", "测试通知"),
        (staff, f"/broadcast/notices/{notice.id}", "试听"),
        (staff, "/broadcast/schedules", "新建播出安排"),
        (staff, f"/broadcast/zones/{place.zone_ids[0]}/week", "未来一周"),
        (staff, "/broadcast/asrun", "导出CSV"),
        (staff, "/broadcast/coverage", "党务公开"),
        (staff, "/broadcast/speakers", "拨测"),
        (approver, "/broadcast/approvals", "待审核的通知"),
        (leader, "/broadcast/asrun", "播出记录"),
        (leader, "/broadcast/coverage", "甲乡一村"),
        (leader, "/broadcast/emergency", "确认立即播出"),
    ]
    for client, path, text in expectations:
        response = await client.get(path)
        body = await response.text()
        assert response.status == 200, (path, body[:500])
        assert text in body, path
    refused = await staff.get("/broadcast/emergency")
    assert refused.status == 403 and "应急广播权限" in await refused.text()
    home = await (await staff.get("/")).text()
    assert "播出记录" in home and "应急广播" not in home


async def test_an_admin_sets_a_zone_multicast_group_on_its_page_and_a_group_outside_224_is_refused(
    runtime: Runtime, server: TestServer, admin: ApiClient
) -> None:
    owner = await make_principal(runtime, "zone-admin", "admin", county_wide=True)
    place = await build_place(runtime, owner, "甲乡", [[("rtp", "127.0.0.1:5004")]])
    page = f"/broadcast/zones/{place.zone_ids[0]}/week"
    assert "RTP组播" in await (await admin.get(page)).text()
    action = f"/broadcast/zones/{place.zone_ids[0]}/settings"
    refused = await admin.post(action, data={"rtp_group": "10.0.0.1:5004", "rtp_ttl": "4"})
    shown = await refused.text()
    assert refused.status == 400 and "224.0.0.0/4" in shown
    # The refused setting is shown again as typed, on the zone's week.
    assert 'name="rtp_group" maxlength="64" placeholder="239.10.0.1:5004" value="10.0.0.1:5004"' in shown
    assert 'value="4"' in shown and "未来一周" in shown
    saved = await admin.post(action, data={"rtp_group": "239.10.0.1:5004", "rtp_ttl": "4"})
    assert "已保存：组播 239.10.0.1:5004" in await saved.text()


async def test_a_schedule_is_edited_on_its_own_page_and_the_running_scheduler_takes_the_change_at_once(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory
) -> None:
    admin = await make_principal(runtime, "schedule-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:a")], [("sink", "file:b")]])
    staff_login = await make_user("staff", township_ids=[place.township_id])
    notice = await approved_notice(
        runtime,
        await principal(runtime, staff_login[0]),
        await make_principal(runtime, "schedule-approver", "approver", township_ids=[place.township_id]),
        township_id=place.township_id,
    )
    staff = await (await new_client()).login(*staff_login)
    first, second = place.zone_ids
    created = await staff.post_json(
        "/api/v1/schedules",
        {"notice_id": notice.id, "kind": "daily", "times": ["07:00"], "targets": [{"level": "zone", "id": first}]},
        expect=201,
    )
    page = f"/broadcast/schedules/{created['id']}"
    for listing in ("/broadcast/schedules", f"/broadcast/notices/{notice.id}"):  # linked from the list and notice
        assert f'href="{page}"' in await (await staff.get(listing)).text(), listing
    shown = await (await staff.get(page)).text()
    assert "每天 07:00" in shown and 'name="times" value="07:00"' in shown
    assert f'name="zone_ids" value="{first}" data-zp-level="zone" data-speakers="1" checked>' in shown
    assert f'name="zone_ids" value="{second}" data-zp-level="zone" data-speakers="1">' in shown

    form = [("notice_id", str(notice.id)), ("kind", "weekly"), ("times", "08:30，18:00"), ("weekdays", "1"),
            ("weekdays", "3"), ("zone_ids", str(second))]  # fmt: skip
    saved = await (await staff.post(page, data=form)).text()
    assert "播出安排已修改，立即生效" in saved and "每周周一、周三 08:30、18:00" in saved
    assert f'name="zone_ids" value="{second}" data-zp-level="zone" data-speakers="1" checked>' in saved
    body = await staff.get_json(f"/api/v1/schedules/{created['id']}")
    assert (body["kind"], body["times"], body["weekdays"]) == ("weekly", ["08:30", "18:00"], [1, 3])
    assert body["targets"] == [{"level": "zone", "id": second}]
    # The next N occurrences, in Beijing time: Mondays and Wednesdays at 08:30 and 18:00.
    upcoming = (await staff.get_json(f"/api/v1/schedules/{created['id']}?count=12"))["next"]
    local = [datetime.fromisoformat(at).astimezone(runtime.settings.zone) for at in upcoming]
    assert len(local) == 12 and local == sorted(local)
    assert {(at.isoweekday(), at.strftime("%H:%M")) for at in local} == {(1, "08:30"), (1, "18:00"), (3, "08:30"),
                                                                       (3, "18:00")}  # fmt: skip
    # The active worker's scheduler re-planned it without a restart: its next wake-up is the new rule's.
    scheduler = runtime.schedules.scheduler
    assert scheduler.running and scheduler.next_fire is not None
    assert scheduler.next_fire.isoformat() == body["next"][0]

    refused_response = await staff.post(page, data=[*form[:2], ("times", "25:00"), *form[3:]])
    refused = await refused_response.text()
    assert refused_response.status == 400 and "25:00" in refused and "不存在" in refused
    # The refused form is shown again as it was filled in.
    assert 'name="times" value="25:00"' in refused and 'value="3" checked' in refused
    unchanged = await staff.get_json(f"/api/v1/schedules/{created['id']}")
    assert unchanged["times"] == ["08:30", "18:00"]
    stopped = await (await staff.post(f"{page}/disable?back=page", data={})).text()
    assert "已停用" in stopped and "每周周一、周三 08:30、18:00" in stopped
