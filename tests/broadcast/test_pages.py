"""Every broadcasting page renders for the people who use it, with content in it."""

from __future__ import annotations

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
    assert "224.0.0.0/4" in await refused.text()
    saved = await admin.post(action, data={"rtp_group": "239.10.0.1:5004", "rtp_ttl": "4"})
    assert "已保存：组播 239.10.0.1:5004" in await saved.text()
