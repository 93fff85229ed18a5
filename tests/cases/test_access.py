"""Who sees which case: township scope (404, never 403), sealed discipline reports, masked numbers, the audit trail."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from sqlalchemy import select, text

from common.clock import ManualClock
from common.errors import NotFound
from server import Runtime
from storage.models import AuditEntry, Case
from tests.cases.conftest import CaseMaker, County, People, advance_days
from tests.conftest import BOTH_DATABASES

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


@dataclass
class Cases:
    in_a: Case
    in_b: Case
    unplaced: Case
    sealed: Case


@pytest.fixture
async def cases(county: County, hotline_case: CaseMaker) -> Cases:
    return Cases(
        in_a=await hotline_case(township_id=county.township_a, caller="13800001111"),
        in_b=await hotline_case(township_id=county.township_b),
        unplaced=await hotline_case(),
        sealed=await hotline_case(township_id=county.township_a, category="discipline", caller="13900009999"),
    )


# role → (sees in_a, sees in_b, sees unplaced, sees sealed, shown in_a's number in full)
RULES = {
    "admin": (True, True, True, False, False),
    "staff_a": (True, False, False, False, False),
    "approver_a": (True, False, False, False, False),
    "operator_county": (True, True, True, False, True),
    "operator_a": (True, False, False, False, True),
    "operator_b": (False, True, False, False, True),
    "inspector": (True, True, True, True, True),
    "leader": (True, True, True, False, False),
}


async def audit_entries(runtime: Runtime, action: str) -> list[AuditEntry]:
    await runtime.cases.access.denials.flush()  # refusals are written by their own queue
    async with runtime.sessions() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all())


async def test_every_role_sees_exactly_its_cases_and_everything_else_is_a_404(
    runtime: Runtime, people: People, cases: Cases
) -> None:
    for role, person in people.all().items():
        expected = RULES[role]
        for index, case in enumerate((cases.in_a, cases.in_b, cases.unplaced, cases.sealed)):
            response = await person.client.get(f"/api/v1/cases/{case.id}")
            body = await response.json()
            assert response.status == (200 if expected[index] else 404), (role, index, body)
            if response.status == 404:
                assert body["error"] == {"code": "case.not_found", "message": "案件不存在", "fields": {}}
        listed = await person.client.get_json("/api/v1/cases")
        ids = {item["id"] for item in listed["items"]}
        assert ids == {
            case.id
            for index, case in enumerate((cases.in_a, cases.in_b, cases.unplaced, cases.sealed))
            if expected[index]
        }, role
        in_scope_sealed = 1 if role not in ("operator_b", "inspector") else 0
        assert listed["sealed_hidden"] == in_scope_sealed, role
        if expected[0]:
            detail = await person.client.get_json(f"/api/v1/cases/{cases.in_a.id}")
            assert detail["caller"] == ("13800001111" if expected[4] else "138****1111"), role


async def test_a_non_inspector_asking_for_a_sealed_case_is_logged_and_so_is_every_inspector_look(
    runtime: Runtime, people: People, cases: Cases
) -> None:
    sealed = cases.sealed.id
    base = f"/api/v1/cases/{sealed}"
    tries = [
        ("GET", base),
        ("GET", f"{base}/events"),
        ("GET", f"{base}/callbacks"),
        ("GET", f"/cases/{sealed}"),
        ("POST", f"{base}/notes"),
        ("GET", f"{base}/recordings/{sealed}/audio"),
    ]
    for role, person in people.all().items():
        if role == "inspector":
            continue
        for method, path in tries:
            if method == "GET":
                response = await person.client.get(path)
            else:
                response = await person.client.post(path, json={"text": "我也看看"})
            assert response.status == 404, (role, path)
    denied = await audit_entries(runtime, "case.sealed_denied")
    by_user = {(entry.username, entry.object_id) for entry in denied}
    for role, person in people.all().items():
        if role != "inspector":
            assert (person.username, str(sealed)) in by_user, role
    assert len(denied) == 7 * len(tries)
    assert all(entry.at is not None and entry.user_id is not None for entry in denied)

    inspector = people.inspector.client
    detail = await inspector.get_json(base)
    assert detail["sealed"] is True and detail["caller"] == "13900009999"
    await inspector.get(f"/cases/{sealed}")
    views = await audit_entries(runtime, "case.view_sealed")
    assert [(entry.username, entry.object_id) for entry in views] == [(people.inspector.username, str(sealed))] * 2
    # A missing case is just missing: nothing to log.
    assert (await people.leader.client.get("/api/v1/cases/999999")).status == 404
    assert len(await audit_entries(runtime, "case.sealed_denied")) == 7 * len(tries)


async def test_inspectors_listing_sealed_cases_is_logged_and_others_get_only_a_count(
    runtime: Runtime, people: People, cases: Cases, clock: ManualClock
) -> None:
    listed = await people.inspector.client.get_json("/api/v1/cases?sealed_only=true")
    assert [item["id"] for item in listed["items"]] == [cases.sealed.id]
    entries = await audit_entries(runtime, "case.list_sealed")
    assert entries[0].detail == {"case_ids": [cases.sealed.id]}
    page = await (await people.leader.client.get("/cases")).text()
    assert "另有违纪举报 1 件，仅纪检监察可见" in page
    assert cases.sealed.number not in page
    # Asking for sealed_only as a leader changes nothing: the filter never lets sealed rows through.
    leader = await people.leader.client.get_json("/api/v1/cases?sealed_only=true")
    assert leader["items"] == [] and leader["sealed_hidden"] == 1
    # On the 催办 list too: the inspector's look at sealed cases is logged, and nobody else sees them there.
    advance_days(clock, 13)

    async def reminded(person: str) -> set[int]:
        body = await people.all()[person].client.get_json("/api/v1/cases/reminders")
        return {item["id"] for unit in body["units"] for item in unit["items"]}

    assert cases.sealed.id in await reminded("inspector")
    assert cases.sealed.id not in await reminded("leader") and cases.in_a.id in await reminded("leader")
    entries = await audit_entries(runtime, "case.list_sealed")
    assert entries[-1].detail == {"case_ids": [cases.sealed.id], "via": "reminders"}
    assert entries[-1].username == people.inspector.username


async def test_roles_without_the_action_get_a_403_on_cases_they_can_see(
    runtime: Runtime, county: County, people: People, cases: Cases
) -> None:
    base = f"/api/v1/cases/{cases.in_a.id}"
    for role in ("admin", "leader", "staff_a", "approver_a", "inspector"):
        response = await people.all()[role].client.post(f"{base}/accept", json={})
        assert response.status == 403, role
    outside = await people.operator_b.client.post(f"{base}/accept", json={})
    assert outside.status == 404
    assert (await people.operator_a.client.post(f"{base}/accept", json={})).status == 200


async def test_a_case_sealed_between_the_check_and_the_change_is_not_changed_by_a_non_inspector(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = await hotline_case(township_id=county.township_a)
    workflow = runtime.cases.workflow
    seen_before = await workflow.visible_case(people.operator_a.principal, case.id, via="test")
    await workflow.triage(people.operator_county.principal, case.id, category="discipline")

    async def stale(*_args: object, **_kwargs: object) -> Case:
        return seen_before  # what the operator's check saw a moment before the case was sealed

    monkeypatch.setattr(workflow, "visible_case", stale)
    with pytest.raises(NotFound):
        await workflow.add_note(people.operator_a.principal, case.id, text="我还在办")
    history = [event.kind for event in await workflow.history(case.id)]
    assert history == ["triaged"]


async def test_a_refused_look_at_a_sealed_case_is_answered_before_its_record_is_written(
    runtime: Runtime, people: People, cases: Cases
) -> None:
    """Timing must not tell which ids are sealed: the refusal answers without waiting for its audit entry."""
    sealed, missing = cases.sealed.id, 999_999
    leader = people.leader.client
    # Another writer holds the database: no audit entry can be written while it does.
    holder = await runtime.engine.connect()
    try:
        if runtime.settings.is_sqlite:
            await holder.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            await holder.execute(text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
        async with asyncio.timeout(60):  # far beyond the database's own lock wait: the answer must not wait at all
            refused = await leader.get(f"/api/v1/cases/{sealed}")
            unknown = await leader.get(f"/api/v1/cases/{missing}")
            page = await leader.get(f"/cases/{sealed}")
        assert refused.status == unknown.status == page.status == 404
        assert await refused.json() == await unknown.json()  # the same answer as a case that does not exist
        assert runtime.cases.access.denials.waiting >= 1  # the record waits, the villager's secret does not
    finally:
        await holder.rollback()
        await holder.close()
    denied = await audit_entries(runtime, "case.sealed_denied")
    assert [(entry.username, entry.object_id) for entry in denied] == [(people.leader.username, str(sealed))] * 2
