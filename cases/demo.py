"""Invented cases for the demo county, so the ledger, the dashboard and the sealed view show something.

Two parts. A handful of cases from today, in every state, and one sealed
report for the inspectors. And **a year's ledger** — last calendar year — sized
like the county this service was first built for, whose year read: 192
disputes and requests found (排查), 169 resolved (化解率 88 %), 96 % satisfied at
follow-up. Those cases are spread over the months, townships, categories and
channels the way such a ledger is, and each is worked on its own dates, so the
leader's dashboard for that year shows exactly those figures.

Every case is entered through the same workflow an operator uses (a walk-in,
a grid worker's report, a letter, a hotline call), then moved along by the
demo accounts — for the year's cases on the dates they happened (the workflow
reading a clock set to each date) — so the history of each reads as it would
in a real ledger. Names end in 示例 and numbers are from the 138 0000 test
range: nothing here may be taken for real. Loading twice adds nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from accounts.service import principal_of
from cases.workflow import Workflow
from common.clock import Clock
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


async def load_demo(
    sessions: async_sessionmaker[AsyncSession], workflow: Workflow, *, clock: Clock | None = None
) -> str:
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
        year=True,
        clock=clock,
    )


async def load_demo_cases(
    sessions: async_sessionmaker[AsyncSession],
    workflow: Workflow,
    *,
    operator: Principal,
    staff_by_township: dict[int, Principal],
    inspector: Principal,
    year: bool = False,
    clock: Clock | None = None,
) -> str:
    """Enter the demo cases (and, with ``year``, last year's ledger) unless any case exists; one line for the CLI."""
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
    line = f"demo cases: {len(DEMO_CASES) + 1} entered (one sealed report for the inspectors)"
    if year:
        ledger = await load_demo_year(
            sessions, workflow, operator=operator, staff_by_township=staff_by_township, clock=clock
        )
        line += f"; last year's ledger: {ledger} cases"
    return line


# -- the demo year ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class YearFigures:
    """What the demo year's ledger adds up to (the dashboard's figures for that year)."""

    received: int = 192
    resolved: int = 169  # 已化解: 化解率 169 / 192 = 88 %
    satisfied: int = 120
    basically_satisfied: int = 24
    unsatisfied: int = 6  # (120 + 24) / 150 answers = 96 %


DEMO_YEAR = YearFigures()

# How the year's cases are spread: by month (January first), by township (in id order), by category, by channel.
MONTHS = (10, 12, 16, 20, 19, 15, 14, 16, 18, 20, 18, 14)
TOWNSHIPS = (34, 28, 25, 22, 20, 19, 16, 15, 13)
CATEGORIES = {
    "land": 46,
    "neighbour": 38,
    "infrastructure": 24,
    "wages": 22,
    "welfare": 16,
    "family": 14,
    "environment": 12,
    "social_security": 10,
    "policy": 6,
    "other": 4,
}
CHANNELS = {"grid": 78, "hotline": 52, "walk_in": 38, "online": 14, "letter": 10}
# How each case ended, in the order the year's cases are given them (the last ones, December's, still wait for
# their follow-up call). (outcome, follow-up satisfaction or None, closed, how many)
Ending = tuple[str, str | None, bool, int]
ENDINGS: tuple[Ending, ...] = (
    ("resolved", "satisfied", True, 100),
    ("resolved", "satisfied", False, 10),  # followed up, not yet closed
    ("resolved", "basically_satisfied", True, 20),
    ("partly_resolved", "satisfied", True, 10),
    ("partly_resolved", "basically_satisfied", True, 4),
    ("resolved", "unreachable", True, 20),  # nobody answered the follow-up calls: closed with a note
    ("resolved", "unsatisfied", False, 6),  # not satisfied: worked again and resolved, asked again later
    ("resolved", None, False, 13),  # resolved in December: the follow-up is still to come
    ("partly_resolved", None, False, 9),
)
SUMMARIES = {
    "land": ("与邻居草场边界有争议，围栏被挪动，请乡里派人重新勘界。", "承包地被邻村多占了两亩，协商不成。",
             "林地确权时面积登记错了，请帮忙核实更正。"),
    "neighbour": ("邻居家的狗多次咬伤我家羊羔，协商不成。", "两家为院墙滴水的事吵了半年，请村里调解。",
                  "邻居在我家门口堆放柴草，影响出行。"),
    "infrastructure": ("村里的饮水井水泵坏了，十几户到邻村拉水。", "村道冲毁了一段，拉草的车过不去。",
                       "路灯坏了一个多月，晚上出门不安全。"),
    "wages": ("在镇上工地干了三个月，老板还欠工资没给。", "给养殖场放羊半年，工钱一直拖着不结。"),
    "welfare": ("老伴去世后家里只剩我一人，想问低保怎么申请。", "孩子上学困难，想申请临时救助。"),
    "family": ("儿女不赡养老人，请村里出面调解。", "离婚后孩子抚养费一直没有给。"),
    "environment": ("村口垃圾点半个月没人清运，气味很大。", "养殖场污水排到河沟里，请来查看。"),
    "social_security": ("住院报销比例算得不对，想请人核一下。", "养老保险缴费年限对不上，请帮忙查询。"),
    "policy": ("想了解今年草原生态补奖的标准和发放时间。", "想问农机购置补贴怎么申请。"),
    "other": ("村里的广播声音太小，后排的人家听不清。", "想反映村务公开栏好久没有更新。"),
}  # fmt: skip
RESULTS = {
    "resolved": ("已上门核实并处理，结果已当面告知。", "经调解双方达成一致，已签调解协议。",
                 "已协调相关单位解决，群众表示认可。"),
    "partly_resolved": ("已解决主要问题，其余部分需来年列入计划，已向群众说明。",
                        "已部分落实，剩余款项约定分期支付。"),
}  # fmt: skip
SURNAMES = "王李张刘陈杨赵黄周吴孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾田董袁潘"
MONGOLIAN_NAMES = ("巴特尔", "其木格", "乌云", "苏和", "那仁", "斯琴", "额尔敦", "萨仁", "宝音", "阿拉坦")
DEPARTMENT_OF = {"welfare": "县民政局（示例）", "social_security": "县医保局（示例）", "land": "县自然资源局（示例）"}


class DemoClock:
    """A clock set by hand to each moment of the demo year (a ``ManualClock`` would refuse to go back)."""

    def __init__(self) -> None:
        self.instant = datetime.now(UTC)

    def now(self) -> datetime:
        return self.instant

    def monotonic(self) -> float:
        return self.instant.timestamp()


def _spread(weights: dict[str, int] | tuple[int, ...], rng: random.Random) -> list[int | str]:
    """One value per case, each as often as its weight says, in random order."""
    items = weights.items() if isinstance(weights, dict) else enumerate(weights)
    values: list[int | str] = [key for key, count in items for _ in range(count)]
    rng.shuffle(values)
    return values


def _working_day(year: int, month: int, rng: random.Random) -> date:
    first = date(year, month, 1)
    days = [first + timedelta(days=n) for n in range(31) if (first + timedelta(days=n)).month == month]
    return rng.choice([day for day in days if day.weekday() < 5])


async def load_demo_year(
    sessions: async_sessionmaker[AsyncSession],
    workflow: Workflow,
    *,
    operator: Principal,
    staff_by_township: dict[int, Principal],
    clock: Clock | None = None,
) -> int:
    """Last calendar year's ledger (see the module's docstring), worked through the workflow on its own dates.

    Returns how many cases were entered. ``clock`` is the service's (what "now" is; the year before its
    year is the demo year); every step of every case happens before that now.
    """
    zone: ZoneInfo = workflow.policy.zone
    now = (clock.now() if clock else datetime.now(UTC)).astimezone(zone)
    year = now.year - 1
    rng = random.Random(year)  # the same ledger for the same year
    async with sessions() as session:
        townships = list((await session.scalars(select(Township.id).order_by(Township.id))).all())
        villages: dict[int, list[int]] = {}
        for found_village, found_township in await session.execute(select(Village.id, Village.township_id)):
            villages.setdefault(found_township, []).append(found_village)
        units = {(unit.kind, unit.township_id or unit.name): unit.id for unit in await session.scalars(select(Unit))}
    if len(townships) < len(TOWNSHIPS):
        return 0

    months = _spread(MONTHS, rng)
    places = _spread(TOWNSHIPS, rng)
    categories = _spread(CATEGORIES, rng)
    channels = _spread(CHANNELS, rng)
    created = sorted(
        datetime.combine(_working_day(year, int(month) + 1, rng), time(rng.randint(8, 17), rng.randint(0, 59)), zone)
        for month in months
    )
    endings = [ending[:3] for ending in ENDINGS for _ in range(ending[3])]
    waiting = [ending for ending in endings if ending[1] is None]
    settled = [ending for ending in endings if ending[1] is not None]
    rng.shuffle(waiting)
    rng.shuffle(settled)
    # The last cases of the year are the ones whose follow-up is still to come.
    ordered = settled + waiting
    demo_clock = DemoClock()
    history = workflow.on_clock(demo_clock)
    latest = now.astimezone(UTC) - timedelta(minutes=5)

    def at(moment: datetime) -> None:
        demo_clock.instant = min(moment.astimezone(UTC), latest)

    for index, (when, (outcome, satisfaction, closed)) in enumerate(zip(created, ordered, strict=True)):
        township_id = townships[int(places[index])]
        category = str(categories[index])
        channel = str(channels[index])
        village_id: int | None = rng.choice(villages[township_id]) if villages.get(township_id) else None
        summary = rng.choice(SUMMARIES[category])
        name = (rng.choice(MONGOLIAN_NAMES) if rng.random() < 0.3 else rng.choice(SURNAMES) + "某") + "示例"
        number = f"13800{2000 + index:06d}"
        at(when)
        case_id = await _enter(history, sessions, operator, channel, category, summary, name, number,
                               township_id, village_id, index)  # fmt: skip
        unit_id = units.get(("department", DEPARTMENT_OF.get(category, ""))) if rng.random() < 0.3 else None
        unit_id = unit_id or units.get(("township", township_id))
        if unit_id is None:
            continue
        moment = when + timedelta(hours=rng.randint(1, 20))
        at(moment)
        await history.assign(operator, case_id, unit_id=unit_id, leader_name=f"{rng.choice(SURNAMES)}副乡长·示例",
                             note="请按期办结并告知群众。")  # fmt: skip
        resolver = staff_by_township.get(township_id, operator)
        moment += timedelta(days=rng.randint(2, 18), hours=rng.randint(0, 6))
        at(moment)
        await history.resolve(resolver, case_id, outcome=outcome, result=rng.choice(RESULTS[outcome]),
                              told_via=rng.choice(("phone", "visit", "in_person")))  # fmt: skip
        if satisfaction is None:
            continue
        moment += timedelta(days=rng.randint(1, 4), hours=rng.randint(0, 4))
        at(moment)
        if satisfaction == "unreachable":
            await history.close(operator, case_id, unreachable=True, note="回访电话三次无人接听，按规定销号。")
            continue
        note = "群众认为处理不彻底，要求重新办理。" if satisfaction == "unsatisfied" else None
        await history.follow_up(operator, case_id, satisfaction=satisfaction, method="phone", note=note)
        if satisfaction == "unsatisfied":
            moment += timedelta(days=rng.randint(3, 8))
            at(moment)
            await history.resolve(resolver, case_id, outcome="resolved", result="重新上门处理，问题已解决。",
                                  told_via="visit")  # fmt: skip
            continue
        if closed:
            moment += timedelta(days=rng.randint(0, 2), hours=1)
            at(moment)
            await history.close(operator, case_id)
    return len(created)


async def _enter(
    workflow: Workflow,
    sessions: async_sessionmaker[AsyncSession],
    operator: Principal,
    channel: str,
    category: str,
    summary: str,
    name: str,
    number: str,
    township_id: int,
    village_id: int | None,
    index: int,
) -> int:
    """A case as it came in: a call through the hotline's door (then triaged by the operator), else entered."""
    if channel != "hotline":
        case = await workflow.create(operator, channel=channel, category=category, summary=summary,
                                     township_id=township_id, village_id=village_id, caller_name=name,
                                     caller_number=number)  # fmt: skip
        return case.id
    async with sessions() as session:
        case = await workflow.open_call_case(
            session, linkedid=f"demo-year-{index}", category="petition", caller_number=number,
            caller_withheld=False, caller_name=None, village_id=None, township_id=None, ivr_choice="1",
            test_call=False, via="demo", called_at=None, number_told=True,  # the call's time is the clock's
        )  # fmt: skip
        await session.commit()
        case_id = case.id
    await workflow.triage(operator, case_id, township_id=township_id, village_id=village_id, category=category,
                          summary=summary, caller_name=name)  # fmt: skip
    return case_id


__all__ = ["DEMO_CASES", "DEMO_YEAR", "DemoCase", "YearFigures", "load_demo", "load_demo_cases", "load_demo_year"]
