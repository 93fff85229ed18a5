"""The villager phone registry (API and page) and the call-outcome API: scoped by township, the 404 rule."""

from __future__ import annotations

import pytest

from cases.sealed import mask_number
from common.clock import SystemClock
from common.phone_numbers import normalise
from hotline.intake import CallFacts
from hotline.phones import caller_number
from server import Runtime
from tests.conftest import ClientFactory, UserFactory
from tests.foundation.seed import Tree, seed_tree
from tests.support.http import ApiClient


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800001111", "13800001111"),
        ("+86 138-0000-1111", "13800001111"),
        ("008613800001111", "13800001111"),
        ("8613800001111", "13800001111"),
        ("0471-1234567", "04711234567"),
        ("１３８００００１１１１", "13800001111"),
        ("١٣٨٠٠٠٠١١١١", None),  # digits that are no phone's: nothing Asterisk could dial
        ("anonymous", None),
        ("<unknown>", None),
        ("", None),
        ("12", None),
    ],
)
def test_caller_numbers_are_stored_as_plain_digits(raw: str, expected: str | None) -> None:
    assert normalise(raw) == expected


def test_a_withheld_presentation_hides_even_a_real_number() -> None:
    assert caller_number("13800001111", "prohib_passed_screen").number is None
    assert caller_number("13800001111", "allowed_not_screened").number == "13800001111"
    # One masking rule for every place a number must not show in full (hotline/sealed.py).
    assert mask_number("13800001111") == "138****1111"
    assert mask_number("04711234567") == "047****4567"
    assert mask_number("12345678") == "******78"  # a short number shows no more than its last two digits


async def staff_of(make_user: UserFactory, new_client: ClientFactory, township_id: int) -> ApiClient:
    name, password = await make_user("staff", township_ids=[township_id])
    return await (await new_client()).login(name, password)


async def test_staff_register_phones_in_their_own_townships_only(
    runtime: Runtime, make_user: UserFactory, new_client: ClientFactory
) -> None:
    tree: Tree = await seed_tree(runtime)
    staff = await staff_of(make_user, new_client, tree.township_ids[0])
    created = await staff.post(
        "/api/v1/villager-phones",
        json={"number": "+86 138 0000 7777", "village_id": tree.village_ids[0], "name": "张三"},
    )
    assert created.status == 201
    body = await created.json()
    assert body["number"] == "13800007777" and body["township_id"] == tree.township_ids[0]
    # Another township's village does not exist for this user.
    elsewhere = await staff.post(
        "/api/v1/villager-phones", json={"number": "13800008888", "village_id": tree.village_ids[1]}
    )
    assert elsewhere.status == 404
    duplicate = await staff.post(
        "/api/v1/villager-phones", json={"number": "138-0000-7777", "village_id": tree.village_ids[0]}
    )
    assert duplicate.status == 409
    bad = await staff.post("/api/v1/villager-phones", json={"number": "call me", "village_id": tree.village_ids[0]})
    assert bad.status == 400
    other = await staff_of(make_user, new_client, tree.township_ids[1])
    assert (await other.get(f"/api/v1/villager-phones/{body['id']}")).status == 404
    assert (await other.get_json("/api/v1/villager-phones"))["total"] == 0
    assert (await other.delete(f"/api/v1/villager-phones/{body['id']}")).status == 404
    patched = await staff.patch(f"/api/v1/villager-phones/{body['id']}", json={"name": "张三叔"})
    assert patched.status == 200 and (await patched.json())["name"] == "张三叔"
    assert (await staff.get_json("/api/v1/villager-phones?q=7777"))["total"] == 1
    assert (await staff.delete(f"/api/v1/villager-phones/{body['id']}")).status == 204


async def test_the_registry_page_lists_and_adds_phones(
    runtime: Runtime, make_user: UserFactory, new_client: ClientFactory
) -> None:
    tree = await seed_tree(runtime)
    staff = await staff_of(make_user, new_client, tree.township_ids[0])
    page = await staff.get("/hotline/phones")
    assert page.status == 200 and "村民电话登记" in await page.text()
    form = {"csrf_token": staff.csrf, "number": "13800009999", "village_id": str(tree.village_ids[0]), "name": "王五"}
    posted = await staff.post("/hotline/phones", data=form, allow_redirects=False)
    assert posted.status == 303
    assert "13800009999" in await (await staff.get("/hotline/phones")).text()


async def test_a_call_outcome_follows_the_township_and_sealed_rules(
    runtime: Runtime, make_user: UserFactory, new_client: ClientFactory
) -> None:
    await seed_tree(runtime)
    intake = runtime.hotline.intake
    await intake.open_case(CallFacts("api-open", caller_raw="13800001111"), via="test")
    await intake.open_case(CallFacts("api-sealed", caller_raw="13800001111", choice="3"), via="test")
    # A report hung up during its recording: a sealed missed call.
    await intake.settle(
        CallFacts("api-sealed-missed", caller_raw="13800003333", stage="recording", choice="3"), via="test"
    )
    operator_name, operator_password = await make_user("operator", county_wide=True)
    operator = await (await new_client()).login(operator_name, operator_password)
    inspector_name, inspector_password = await make_user("inspector", county_wide=True)
    inspector = await (await new_client()).login(inspector_name, inspector_password)
    township_name, township_password = await make_user("operator", township_ids=[1])
    township_operator = await (await new_client()).login(township_name, township_password)
    leader_name, leader_password = await make_user("leader", county_wide=True)
    leader = await (await new_client()).login(leader_name, leader_password)
    admin_name, admin_password = await make_user("admin", county_wide=True)
    admin = await (await new_client()).login(admin_name, admin_password)
    assert (await operator.get_json("/api/v1/hotline/calls/api-open"))["case"]["status"] == "new"
    # Not yet placed in a township: for county-wide users only, and it looks like no call at all.
    unplaced = await township_operator.get("/api/v1/hotline/calls/api-open")
    missing = await operator.get("/api/v1/hotline/calls/no-such-call")
    assert unplaced.status == missing.status == 404
    assert (await unplaced.json()) == (await missing.json())
    for reader in (operator, leader, admin, township_operator):
        for linkedid in ("api-sealed", "api-sealed-missed"):
            refused = await reader.get(f"/api/v1/hotline/calls/{linkedid}")
            assert refused.status == 404 and (await refused.json()) == (await missing.json())
    sealed = await inspector.get_json("/api/v1/hotline/calls/api-sealed")
    assert sealed["case"]["sealed"] is True and sealed["case"]["caller_number"] == "13800001111"
    sealed_missed = await inspector.get_json("/api/v1/hotline/calls/api-sealed-missed")
    assert sealed_missed["missed_call"]["sealed"] is True
    assert sealed_missed["missed_call"]["caller_number"] == "13800003333"
    from storage import audit

    await runtime.cases.access.denials.flush()  # refusals are written by their own queue
    async with runtime.sessions() as session:
        views = (await session.scalars(audit.query(action="case.view_sealed"))).all()
        denied = (await session.scalars(audit.query(action="case.sealed_denied"))).all()
    assert sorted(entry.username for entry in views) == [inspector_name, inspector_name]
    assert {entry.object_type for entry in views} == {"case", "missed_call"}
    assert SystemClock().now() >= views[0].at
    assert sorted(entry.username for entry in denied) == sorted(
        [name for name in (operator_name, leader_name, admin_name, township_name) for _ in range(2)]
    )


async def test_a_call_outcome_shows_the_callers_full_number_as_the_case_pages_do(
    runtime: Runtime, make_user: UserFactory, new_client: ClientFactory
) -> None:
    await seed_tree(runtime)
    intake = runtime.hotline.intake
    await intake.open_case(CallFacts("num-case", caller_raw="13800001111"), via="test")
    await intake.settle(CallFacts("num-missed", caller_raw="13800002222", stage="welcome"), via="test")
    await intake.open_case(CallFacts("num-withheld", caller_raw="anonymous"), via="test")
    seen: dict[str, tuple[str | None, str | None, str | None]] = {}
    for role in ("operator", "inspector", "leader", "admin"):
        name, password = await make_user(role, county_wide=True)
        client = await (await new_client()).login(name, password)
        case = (await client.get_json("/api/v1/hotline/calls/num-case"))["case"]
        missed = (await client.get_json("/api/v1/hotline/calls/num-missed"))["missed_call"]
        withheld = (await client.get_json("/api/v1/hotline/calls/num-withheld"))["case"]
        seen[role] = (case["caller_number"], missed["caller_number"], withheld["caller_number"])
    # In full for inspectors and for the operators who call villagers back; masked for everyone else.
    assert seen["operator"] == seen["inspector"] == ("13800001111", "13800002222", None)
    assert seen["leader"] == seen["admin"] == ("138****1111", "138****2222", None)
