"""The dashboard's daily roll-ups and its set of open cases equal a recount after any sequence of workflow actions."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event, select, text

from cases.rollups import MEASURES, contributions, open_cases_statement, rebuild, rebuild_statement
from common.clock import ManualClock
from common.errors import UserError
from server import Runtime
from storage.models import Case, CaseRollup, CaseRollupState, OpenCase
from tests.cases.conftest import CaseMaker, County, People, advance_days
from tests.conftest import BOTH_DATABASES as BOTH


async def table(runtime: Runtime) -> dict[tuple[Any, ...], list[float]]:
    """The roll-up rows, without the all-zero ones (a key every case has left)."""
    async with runtime.sessions() as session:
        rows = (await session.scalars(select(CaseRollup))).all()
    result = {}
    for row in rows:
        figures = [float(getattr(row, name)) for name in MEASURES]
        if any(abs(value) > 1e-9 for value in figures):
            key = (row.grain, row.day, row.township_id, row.sealed, row.dimension, row.key)
            result[key] = figures
    return result


async def recount(runtime: Runtime) -> dict[tuple[Any, ...], list[float]]:
    zone = runtime.cases.holidays.policy.zone
    async with runtime.sessions() as session:
        ids = list((await session.scalars(select(Case.id))).all())
        connection = await session.connection()
        counted = await connection.run_sync(lambda sync: contributions(sync, ids, zone))
    return {key: [float(value) for value in figures] for key, figures in counted.items()}


async def open_rows(runtime: Runtime) -> list[tuple[Any, ...]]:
    async with runtime.sessions() as session:
        rows = (await session.scalars(select(OpenCase).order_by(OpenCase.case_id))).all()
    return [
        (row.case_id, row.status, row.created_at, row.township_id, row.village_id, row.unit_id, row.category,
         row.channel, row.sealed, row.resolution_due, row.late)
        for row in rows
    ]  # fmt: skip


def same(left: dict[tuple[Any, ...], list[float]], right: dict[tuple[Any, ...], list[float]]) -> None:
    assert left.keys() == right.keys()
    for key in left:
        assert left[key] == pytest.approx(right[key], abs=1e-6), key


async def random_action(
    rng: random.Random,
    runtime: Runtime,
    county: County,
    people: People,
    clock: ManualClock,
    places: list[tuple[int | None, int | None]],
    case_id: int,
) -> None:
    """One step a clerk might take on a case (refused ones raise UserError and write nothing)."""
    workflow = runtime.cases.workflow
    operator, staff, inspector = people.operator_county.principal, people.staff_a.principal, people.inspector.principal
    township, village = rng.choice(places[:2])
    who = inspector if rng.random() < 0.3 else operator
    category = rng.choice(["infrastructure", "land", "wages", "discipline"])
    outcome = rng.choice(["resolved", "partly_resolved"])
    satisfaction = rng.choice(["satisfied", "basically_satisfied", "unsatisfied"])
    resolver = rng.choice([staff, inspector])
    actions: dict[str, Callable[[], Awaitable[Any]]] = {
        "triage": lambda: workflow.triage(who, case_id, township_id=township, village_id=village, category=category),
        "accept": lambda: workflow.accept(who, case_id),
        "reject": lambda: workflow.reject(who, case_id, reason="不属于受理范围"),
        "assign": lambda: workflow.assign(who, case_id, unit_id=county.unit_a, leader_name="张书记"),
        "resolve": lambda: workflow.resolve(resolver, case_id, outcome=outcome, result="已处理", told_via="phone"),
        "follow_up": lambda: workflow.follow_up(who, case_id, satisfaction=satisfaction, method="phone", note="回访"),
        "close": lambda: workflow.close(who, case_id),
    }
    name = rng.choice([*actions, "wait"])
    if name == "wait":
        advance_days(clock, rng.choice([1, 5, 20, 70]))  # long waits make cases late
    else:
        await actions[name]()


@pytest.mark.parametrize("db_kind", BOTH)
async def test_rollups_equal_a_recount_after_a_random_sequence_of_workflow_actions(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker, clock: ManualClock
) -> None:
    rng = random.Random(20)
    cases: list[int] = []
    places: list[tuple[int | None, int | None]] = [
        (county.township_a, county.village_a),
        (county.township_b, county.village_b),
        (None, None),
    ]
    for index in range(14):
        township, village = rng.choice(places)
        category = rng.choice(["petition", "petition", "discipline"])
        made = await hotline_case(
            township_id=township, village_id=village, category=category, recording=False, test_call=index % 7 == 3
        )
        cases.append(made.id)
        if rng.random() < 0.3:
            advance_days(clock, rng.choice([0.4, 1, 3]))

    for _ in range(160):
        try:
            await random_action(rng, runtime, county, people, clock, places, rng.choice(cases))
        except UserError:
            pass  # not allowed in that state or for that person: nothing written, nothing counted
    rolled = await table(runtime)
    assert rolled, "the sequence changed nothing"
    same(rolled, await recount(runtime))
    # And equal to the migration's back-fill of the same cases.
    async with runtime.sessions.begin() as session:
        dialect = session.get_bind().dialect.name
        await session.execute(text("DELETE FROM case_rollups"))
        await session.execute(text(rebuild_statement(dialect, runtime.cases.holidays.policy.zone)))
    same(await table(runtime), rolled)
    # The open cases kept by the same hook equal the migration's back-fill of them (a recount from the cases).
    kept = await open_rows(runtime)
    assert kept and any(status != "new" for _id, status, *_rest in kept), "no case left open beyond new"
    async with runtime.sessions.begin() as session:
        await session.execute(text("DELETE FROM open_cases"))
        await session.execute(text(open_cases_statement(dialect)))
    assert await open_rows(runtime) == kept


@pytest.mark.parametrize("db_kind", BOTH)
async def test_the_dashboard_from_rollups_equals_the_dashboard_from_the_cases(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker, clock: ManualClock
) -> None:
    workflow = runtime.cases.workflow
    operator, staff = people.operator_county.principal, people.staff_a.principal
    for index in range(6):
        case = await hotline_case(township_id=county.township_a, village_id=county.village_a)
        await workflow.triage(operator, case.id, category="land")
        if index % 2:
            await workflow.accept(operator, case.id)
            await workflow.assign(operator, case.id, unit_id=county.unit_a, leader_name="李")
        if index == 5:
            await workflow.resolve(staff, case.id, outcome="resolved", result="好了", told_via="phone")
            await workflow.follow_up(operator, case.id, satisfaction="satisfied", method="phone")
        advance_days(clock, 9)  # some are over a deadline now, without being marked late yet
    await rebuild(runtime.sessions, runtime.cases.holidays.policy.zone)
    leader, township_staff = people.leader.principal, people.staff_a.principal
    stats = runtime.cases.stats
    for principal in (leader, township_staff, people.inspector.principal):
        from_rollups = (await stats.report(principal)).as_dict()
        async with runtime.sessions.begin() as session:
            await session.execute(text("DELETE FROM case_rollup_state"))  # the zone unknown: count the cases
        from_cases = (await stats.report(principal)).as_dict()
        assert from_rollups == from_cases
        assert from_cases["total"]["received"] >= 6 or principal is township_staff
        async with runtime.sessions.begin() as session:
            session.add(CaseRollupState(id=1, zone=runtime.cases.holidays.policy.zone.key))
    assert (await stats.report(leader)).total.overdue > 0


def test_a_period_reads_whole_months_from_month_rows_and_its_ends_from_day_rows() -> None:
    from datetime import date

    from cases.statistics import _spans

    assert _spans(date(2026, 1, 1), date(2026, 4, 20)) == (
        [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)],
        [(date(2026, 4, 1), date(2026, 4, 20))],
    )
    assert _spans(date(2025, 12, 15), date(2026, 2, 28)) == (
        [date(2026, 1, 1), date(2026, 2, 1)],
        [(date(2025, 12, 15), date(2025, 12, 31))],
    )
    assert _spans(date(2026, 3, 5), date(2026, 3, 9)) == ([], [(date(2026, 3, 5), date(2026, 3, 9))])


@pytest.mark.parametrize("db_kind", BOTH)
async def test_the_reminders_first_screen_counts_every_unit_and_lists_the_first_rows_in_order(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker, clock: ManualClock
) -> None:
    """Counts per unit are for every case on the list; the rows are the first ones of the whole list, in order."""
    workflow = runtime.cases.workflow
    operator, leader = people.operator_county.principal, people.leader.principal
    ledger = runtime.cases.ledger
    for index in range(7):
        case = await hotline_case(township_id=county.township_a, village_id=county.village_a)
        if index % 3:
            await workflow.triage(operator, case.id, category="land")
            await workflow.accept(operator, case.id)
            await workflow.assign(operator, case.id, unit_id=[county.unit_a, county.unit_b][index % 2],
                                  leader_name="李")  # fmt: skip
        advance_days(clock, 7)
    advance_days(clock, 24)  # new cases over their 受理 deadline; the first assigned ones over or near 办理's

    whole = await ledger.reminders(leader, limit=1000)
    assert whole.total == sum(unit.total for unit in whole.units) == whole.shown > 0
    assert len(whole.units) >= 2 and whole.overdue > 0  # 未交办 and a unit at least
    assert whole.overdue == sum(sum(row.overdue for row in unit.rows) for unit in whole.units)
    for unit in whole.units:
        assert unit.overdue == sum(row.overdue for row in unit.rows)
        keys = [(not row.overdue, row.deadline) for row in unit.rows]
        assert keys == sorted(keys)
    order = [(unit.key, row.case.id) for unit in whole.units for row in unit.rows]

    first = await ledger.reminders(leader, limit=3)
    assert [(u.key, u.overdue, u.total) for u in first.units] == [(u.key, u.overdue, u.total) for u in whole.units]
    assert [(unit.key, row.case.id) for unit in first.units for row in unit.rows] == order[:3]
    assert first.shown == 3
    one = whole.units[-1]
    alone = await ledger.reminders(leader, limit=1000, unit=one.key)
    assert [u.key for u in alone.units] == [one.key]
    assert [row.case.id for row in alone.units[0].rows] == [row.case.id for row in one.rows]

    # The page: every unit's counts with a link to its list; a unit's list holds its cases and no others.
    client = people.leader.client
    page = await (await client.get("/cases/reminders")).text()
    assert f"共 {whole.total} 件，其中超期 {whole.overdue} 件" in page
    for unit in whole.units:
        assert f'<a href="/cases/reminders?unit={unit.key}">{unit.name}</a></td><td>{unit.overdue}</td>' in page
    response = await client.get(f"/cases/reminders?unit={one.key}")
    assert response.status == 200
    unit_page = await response.text()
    others = [row.case.number for unit in whole.units if unit.key != one.key for row in unit.rows]
    assert all(row.case.number in unit_page for row in one.rows)
    assert not any(number in unit_page for number in others)
    hand_edited = await client.get("/cases/reminders?unit=x'1")  # the first screen, not an error
    assert hand_edited.status == 200 and "各单位件数" in await hand_edited.text()
    api = await client.get_json(f"/api/v1/cases/reminders?limit=3&unit={one.key}")
    assert [item["id"] for item in api["units"][0]["items"]] == [row.case.id for row in one.rows][:3]
    refused = await client.get("/api/v1/cases/reminders?limit=0")
    assert refused.status == 400


@pytest.mark.parametrize("db_kind", BOTH)
async def test_a_transaction_of_many_cases_is_counted_once_as_it_commits_and_a_rollback_counts_nothing(
    runtime: Runtime, county: County
) -> None:
    # The hotline writes the cases of calls that end together in one transaction, one flush each: the roll-ups
    # are brought up to date once, as it commits (six upserts for 20 cases of one day and place, not 120).
    workflow = runtime.cases.workflow
    statements: list[str] = []
    engine = runtime.sessions.kw["bind"].sync_engine

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if "case_rollups" in statement or "open_cases" in statement:
            statements.append(statement.split()[0])

    async def open_one(session: Any, linkedid: str) -> None:
        await workflow.open_call_case(
            session, linkedid=linkedid, category="petition", caller_number="13800004444", caller_withheld=False,
            caller_name=None, village_id=county.village_a, township_id=county.township_a, ivr_choice="1",
            test_call=False, via="test", called_at=None, number_told=False,
        )  # fmt: skip

    event.listen(engine, "before_cursor_execute", seen)
    try:
        async with runtime.sessions() as session:
            for index in range(20):
                await open_one(session, f"together-{index}")
            assert statements == [], "counted before the commit"
            await session.commit()
        assert statements.count("INSERT") == 6 + 1  # day and month × village, category, channel; open_cases once
        same(await table(runtime), await recount(runtime))
        # A transaction rolled back leaves nothing pending for the session's next one.
        async with runtime.sessions() as session:
            await open_one(session, "rolled-back")
            await session.rollback()
            await open_one(session, "after")
            await session.commit()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    same(await table(runtime), await recount(runtime))
    assert len(await open_rows(runtime)) == 21
