"""Every admin page renders for an admin, in Chinese, with the demo county loaded."""

from __future__ import annotations

import re

from server import Runtime
from tests.foundation.seed import seed_tree
from tests.support.http import ApiClient


async def test_every_admin_page_renders(runtime: Runtime, admin: ApiClient) -> None:
    tree = await seed_tree(runtime)
    users = await admin.get_json("/api/v1/users")
    pages = [
        "/",
        "/admin/areas",
        f"/admin/townships/{tree.township_ids[0]}",
        f"/admin/villages/{tree.village_ids[0]}",
        f"/admin/zones/{tree.zone_ids[0]}",
        "/admin/units",
        "/admin/users",
        f"/admin/users/{users[0]['id']}",
        "/admin/audit",
        f"/admin/audit?user_id={users[0]['id']}&since=2026-01-01&until=2030-12-31&limit=1",
        "/account/password",
    ]
    for path in pages:
        response = await admin.get(path)
        html = await response.text()
        assert response.status == 200, (path, html[:500])
        assert '<html lang="zh-CN">' in html
        assert re.search("[\u4e00-\u9fff]", html)
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert response.headers["X-Frame-Options"] == "DENY"


async def test_the_audit_viewer_filters_by_user_and_action(runtime: Runtime, admin: ApiClient) -> None:
    await seed_tree(runtime)
    html = await (await admin.get("/admin/audit?action=township.create")).text()
    assert html.count("<td>新建乡镇</td>") == 2
    assert "<td>登录</td>" not in html
    bad = await admin.get("/admin/audit?since=not-a-date")
    assert bad.status == 200
    assert "时间格式不正确" in await bad.text()


async def test_an_unknown_page_is_a_chinese_404(admin: ApiClient) -> None:
    response = await admin.get("/no/such/page")
    assert response.status == 404
    assert "页面或对象不存在" in await response.text()
    api = await admin.get("/api/v1/no-such-thing")
    assert api.status == 404
    assert (await api.json())["error"]["code"] == "http_404"
