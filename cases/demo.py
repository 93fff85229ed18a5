"""Invented cases for the demo county, so the ledger, the dashboard and the sealed view show something.

Every case is entered through the same workflow an operator uses (a walk-in,
a grid worker's report, a letter), then moved along by the demo accounts, so
the history of each reads as it would in a real ledger. Names end in 示例 and
numbers are from the 138 0000 test range: nothing here may be taken for real.
Loading twice adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from accounts.service import principal_of
from cases.workflow import Workflow
from storage.models import Case, Township, Unit, User, Village


@dataclass(frozen=True)
class DemoCase:
    channel: str
    category: str
    summary: str
    caller_name: str
    caller_number: str
    township: int  # index into the demo townships, in id order
    stage: str  # new | in_progress | resolved | followed_up | closed | reopened | rejected
    satisfaction: str = "satisfied"


DEMO_CASES: tuple[DemoCase, ...] = (
    DemoCase(
        "walk_in",
        "land",
        "与邻居草场边界有争议，去年的围栏被挪动约二十米，请乡里派人重新勘界。",
        "巴特尔示例",
        "13800000101",
        0,
        "in_progress",
    ),
    DemoCase(
        "grid",
        "infrastructure",
        "三组的饮水井水泵坏了一周，十几户人家到邻村拉水，请尽快修理。",
        "网格员刘示例",
        "13800000102",
        0,
        "closed",
    ),
    DemoCase(
        "walk_in", "wages", "在镇上工地干了三个月，老板还欠四千五百元工资没给。", "王示例", "13800000103", 1, "resolved"
    ),
    DemoCase(
        "letter",
        "welfare",
        "老伴去世后家里只剩我一人，想问低保怎么申请、要带哪些材料。",
        "其木格示例",
        "13800000104",
        1,
        "followed_up",
        "basically_satisfied",
    ),
    DemoCase(
        "walk_in",
        "environment",
        "村口垃圾点半个月没人清运，气味很大。",
        "李示例",
        "13800000105",
        2,
        "reopened",
        "unsatisfied",
    ),
    DemoCase(
        "grid",
        "social_security",
        "在旗医院住院的费用，新农合报销比例算得不对，想请人核一下。",
        "网格员赵示例",
        "13800000106",
        2,
        "new",
    ),
    DemoCase("walk_in", "neighbour", "邻居家的狗多次咬伤我家羊羔，协商不成。", "乌云示例", "13800000107", 3, "closed"),
    DemoCase("walk_in", "policy", "想了解今年草原生态补奖的标准和发放时间。", "孙示例", "13800000108", 3, "rejected"),
)

# A report to the discipline inspectors, sealed from the moment it is entered.
DEMO_SEALED = DemoCase("letter", "discipline", "反映某村干部在发放补贴时优亲厚友（示例数据）。",
                       "匿名", "13800000109", 0, "new")  # fmt: skip


async def load_demo(sessions: async_sessionmaker[AsyncSession], workflow: Workflow) -> str:
    """The demo cases, entered and worked by the demo accounts (``cunxiang demo``); returns one line for the CLI."""
    async with sessions() as session:
        users = {user.username: user for user in (await session.scalars(select(User))).all()}
    if not {"demo.operator", "demo.inspector", "demo.staff", "demo.staff2"} <= users.keys():
        return "demo cases: no demo accounts, none added"
    staff = [principal_of(users[name]) for name in ("demo.staff", "demo.staff2")]
    return await load_demo_cases(
        sessions,
        workflow,
        operator=principal_of(users["demo.operator"]),
        staff_by_township={township: principal for principal in staff for township in principal.township_ids},
        inspector=principal_of(users["demo.inspector"]),
    )


async def load_demo_cases(
    sessions: async_sessionmaker[AsyncSession],
    workflow: Workflow,
    *,
    operator: Principal,
    staff_by_township: dict[int, Principal],
    inspector: Principal,
) -> str:
    """Enter the demo cases unless any case exists; returns one line for the CLI."""
    async with sessions() as session:
        if await session.scalar(select(Case.id).limit(1)) is not None:
            return "demo cases: cases already present, none added"
        townships = (await session.scalars(select(Township.id).order_by(Township.id))).all()
        units = {
            unit.township_id: unit.id
            for unit in (await session.scalars(select(Unit).where(Unit.kind == "township"))).all()
        }
        lowest = select(Village.township_id, func.min(Village.id)).group_by(Village.township_id)
        first_villages: dict[int, int] = dict((await session.execute(lowest)).all())
    if len(townships) < 4:
        return "demo cases: no demo county, none added"

    async def enter(spec: DemoCase, by: Principal) -> int:
        township_id = townships[spec.township]
        case = await workflow.create(
            by,
            channel=spec.channel,
            category=spec.category,
            summary=spec.summary,
            township_id=township_id,
            village_id=first_villages.get(township_id),
            caller_name=spec.caller_name,
            caller_number=spec.caller_number,
        )
        return case.id

    for spec in DEMO_CASES:
        case_id = await enter(spec, operator)
        township_id = townships[spec.township]
        if spec.stage == "new":
            continue
        if spec.stage == "rejected":
            await workflow.reject(operator, case_id, reason="属政策咨询，已当场解答，不作为诉求案件受理。")
            continue
        unit_id = units.get(township_id)
        if unit_id is None:
            continue
        await workflow.assign(operator, case_id, unit_id=unit_id, leader_name="副乡长·示例", note="请七日内上门核实。")
        if spec.stage == "in_progress":
            continue
        resolver = staff_by_township.get(township_id, operator)
        await workflow.resolve(
            resolver, case_id, outcome="resolved", result="已上门核实并处理，结果已当面告知。", told_via="in_person"
        )
        if spec.stage == "resolved":
            continue
        note = "群众认为处理不彻底。" if spec.satisfaction == "unsatisfied" else None
        await workflow.follow_up(operator, case_id, satisfaction=spec.satisfaction, method="phone", note=note)
        if spec.stage == "closed":
            await workflow.close(operator, case_id)
    await enter(DEMO_SEALED, inspector)
    return f"demo cases: {len(DEMO_CASES) + 1} entered (one sealed report for the inspectors)"


__all__ = ["DEMO_CASES", "DemoCase", "load_demo", "load_demo_cases"]
