"""Role and township scoping, for every role, on both databases.

The 404 rule: a user outside a township's scope gets 404 for its objects,
exactly as for objects that do not exist, so the answer leaks nothing.
"""

from __future__ import annotations

import pytest

from server import Runtime
from tests.conftest import BOTH_DATABASES, ClientFactory, UserFactory
from tests.foundation.seed import seed_tree

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)

# (roles, scoped to the first township only?)
PEOPLE = [
    (("admin",), False),
    (("staff",), True),
    (("approver",), True),
    (("operator",), True),
    (("operator",), False),
    (("inspector",), False),
    (("leader",), False),
    (("staff", "approver"), True),
]
IDS = ["admin", "staff", "approver", "township-operator", "county-operator", "inspector", "leader", "staff+approver"]


@pytest.mark.parametrize(("roles", "scoped"), PEOPLE, ids=IDS)
async def test_every_role_sees_exactly_its_townships_and_404_beyond(
    runtime: Runtime, new_client: ClientFactory, make_user: UserFactory, roles: tuple[str, ...], scoped: bool
) -> None:
    tree = await seed_tree(runtime)
    mine, other = tree.township_ids
    username, password = await make_user(*roles, township_ids=[mine] if scoped else [], county_wide=not scoped)
    client = await (await new_client()).login(username, password)

    townships = await client.get_json("/api/v1/townships")
    assert sorted(t["id"] for t in townships) == ([mine] if scoped else sorted(tree.township_ids))

    own_objects = [
        f"/api/v1/townships/{mine}",
        f"/api/v1/villages/{tree.village_ids[0]}",
        f"/api/v1/zones/{tree.zone_ids[0]}",
        f"/api/v1/speakers/{tree.speaker_ids[0]}",
    ]
    other_objects = [
        f"/api/v1/townships/{other}",
        f"/api/v1/villages/{tree.village_ids[1]}",
        f"/api/v1/zones/{tree.zone_ids[1]}",
        f"/api/v1/speakers/{tree.speaker_ids[1]}",
    ]
    for path in own_objects:
        assert (await client.get(path)).status == 200, path
    for path in other_objects:
        response = await client.get(path)
        if scoped:
            assert response.status == 404, path
            missing = await client.get(path.rsplit("/", 1)[0] + "/999999")
            # Out of scope and nonexistent answer the same, message included.
            assert (await response.json())["error"] == (await missing.json())["error"]
        else:
            assert response.status == 200, path

    listed = await client.get_json(f"/api/v1/villages?township_id={other}")
    assert (listed == []) is scoped
    speakers = await client.get_json("/api/v1/speakers")
    assert {s["township_id"] for s in speakers} == ({mine} if scoped else set(tree.township_ids))


@pytest.mark.parametrize(("roles", "scoped"), PEOPLE, ids=IDS)
async def test_only_admins_change_the_tree_and_manage_users(
    runtime: Runtime, new_client: ClientFactory, make_user: UserFactory, roles: tuple[str, ...], scoped: bool
) -> None:
    tree = await seed_tree(runtime)
    username, password = await make_user(
        *roles, township_ids=[tree.township_ids[0]] if scoped else [], county_wide=not scoped
    )
    client = await (await new_client()).login(username, password)
    is_admin = "admin" in roles
    before = len(await runtime.areas.list_counties())

    response = await client.post("/api/v1/counties", json={"name": "新县"})
    assert response.status == (201 if is_admin else 403)
    if not is_admin:
        body = await response.json()
        assert body["error"]["code"] == "role.required"
        assert "系统管理员" in body["error"]["message"]
    assert len(await runtime.areas.list_counties()) == before + (1 if is_admin else 0)

    for path in ("/api/v1/users", "/api/v1/audit"):
        assert (await client.get(path)).status == (200 if is_admin else 403), path
    page = await client.get("/admin/areas")
    assert page.status == (200 if is_admin else 403)
    rename = await client.patch(f"/api/v1/townships/{tree.township_ids[0]}", json={"name": "改名乡"})
    assert rename.status == (200 if is_admin else 403)
    # Every signed-in user may read the roles and units (cases are assigned across townships).
    assert (await client.get("/api/v1/roles")).status == 200
    assert len(await client.get_json("/api/v1/units")) == 2


async def test_a_user_without_a_session_gets_401_from_the_api_and_the_login_page_elsewhere(
    new_client: ClientFactory,
) -> None:
    anonymous = await new_client()
    for path in ("/api/v1/townships", "/api/v1/users", "/api/openapi.json", "/api/v1/session"):
        response = await anonymous.get(path)
        assert response.status == 401, path
        assert (await response.json())["error"]["code"] == "unauthenticated"
    page = await anonymous.get("/admin/users", allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"] == "/login?next=/admin/users"
    health = await anonymous.get("/healthz")
    assert health.status == 200
