"""Schedule rules as pure functions: validation, occurrences, quiet hours.

Every time a person types is wall-clock time in the deployment's zone
(Asia/Shanghai); every instant we compute or store is an aware UTC datetime.
Shanghai has had no daylight saving since 1991, but we still combine dates
and times *in the zone* and convert, so a zone with DST would also be right.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from common.errors import InvalidInput

WEEKDAY_LABELS = {1: "周一", 2: "周二", 3: "周三", 4: "周四", 5: "周五", 6: "周六", 7: "周日"}
KIND_LABELS = {"once": "单次", "daily": "每天", "weekly": "每周"}
MAX_TIMES_PER_DAY = 24
# A weekly rule repeats within 7 days; 8 covers a start in the middle of a day.
_SCAN_DAYS = 8

# ASCII digits only (\d also takes fullwidth and Arabic-Indic ones); fullmatch, so no trailing newline slips by.
_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})")
# How far back and ahead a schedule's dates may lie: wider is a typo, and year 9999 overflows the calendar.
PAST_WINDOW_DAYS = 365
FUTURE_WINDOW_DAYS = 5 * 365 + 1


@dataclass(frozen=True)
class Rule:
    """A schedule's timing: ``once_at`` (aware), or ``times`` on every day / on ``weekdays`` (1 = Monday)."""

    kind: str
    once_at: datetime | None = None
    times: tuple[time, ...] = ()
    weekdays: frozenset[int] = frozenset()
    start_date: date | None = None
    end_date: date | None = None

    def runs_on(self, day: date) -> bool:
        if self.start_date is not None and day < self.start_date:
            return False
        if self.end_date is not None and day > self.end_date:
            return False
        return self.kind == "daily" or (self.kind == "weekly" and day.isoweekday() in self.weekdays)


def parse_clock(text: str, field: str = "times") -> time:
    """'07:00' → time(7, 0); '25:00', '7点', '07:60' are each a clear Chinese error."""
    match = _CLOCK.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"时间“{text}”格式不对，应写成 时:分，例如 07:00", fields={field: "应写成 时:分"})
    hour, minute = int(match[1]), int(match[2])
    if hour > 23 or minute > 59:
        raise InvalidInput(f"时间“{text}”不存在，应在 00:00 到 23:59 之间", fields={field: "应在00:00到23:59之间"})
    return time(hour, minute)


def format_clock(value: time) -> str:
    return value.strftime("%H:%M")


def make_rule(
    *,
    kind: str,
    once_at: datetime | None,
    times: Sequence[str],
    weekdays: Iterable[int],
    start_date: date | None,
    end_date: date | None,
    zone: ZoneInfo,
    now: datetime,
) -> Rule:
    """Validate what a person entered and build the rule; raises InvalidInput, in Chinese, naming the field."""
    if kind not in KIND_LABELS:
        raise InvalidInput("播出方式只能是单次、每天或每周", fields={"kind": "只能是 once、daily 或 weekly"})
    today = now.astimezone(zone).date()
    if kind == "once":
        if once_at is None:
            raise InvalidInput("单次播出需要填写播出时间", fields={"once_at": "必填"})
        _check_window(once_at.date(), today, "once_at", "播出时间")
        instant = once_at if once_at.tzinfo is not None else once_at.replace(tzinfo=zone)
        instant = instant.astimezone(UTC)
        if instant <= now:
            shown = instant.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            raise InvalidInput(f"播出时间 {shown} 已经过去，请选择以后的时间", fields={"once_at": "已经过去"})
        return Rule(kind="once", once_at=instant)
    if not times:
        raise InvalidInput("请至少填写一个播出时间", fields={"times": "至少一个"})
    if len(times) > MAX_TIMES_PER_DAY:
        raise InvalidInput(f"每天最多{MAX_TIMES_PER_DAY}个播出时间", fields={"times": "太多"})
    clocks = tuple(sorted({parse_clock(text) for text in times}))
    days = frozenset(weekdays)
    if kind == "weekly":
        if not days:
            raise InvalidInput("每周播出需要选择星期几", fields={"weekdays": "至少选一天"})
        if not days <= set(WEEKDAY_LABELS):
            raise InvalidInput("星期只能是1（周一）到7（周日）", fields={"weekdays": "只能是1到7"})
    _check_dates(start_date, end_date, today)
    rule = Rule(
        kind=kind,
        times=clocks,
        weekdays=days if kind == "weekly" else frozenset(),
        start_date=start_date,
        end_date=end_date,
    )
    if next_occurrence(rule, now, zone) is None:
        raise InvalidInput("按这个安排，以后没有任何一次播出（请检查日期和星期）", fields={"weekdays": "没有播出日"})
    return rule


def _check_dates(start_date: date | None, end_date: date | None, today: date) -> None:
    """A repeating rule's optional first and last days: in order, each within the window, the last not past."""
    if start_date is not None and end_date is not None and end_date < start_date:
        raise InvalidInput(f"结束日期 {end_date} 早于开始日期 {start_date}", fields={"end_date": "不能早于开始日期"})
    if start_date is not None:
        _check_window(start_date, today, "start_date", "开始日期")
    if end_date is not None:
        _check_window(end_date, today, "end_date", "结束日期")
    if end_date is not None and end_date < today:
        raise InvalidInput(f"结束日期 {end_date} 已经过去，这个安排不会再播出", fields={"end_date": "已经过去"})


def _check_window(day: date, today: date, field: str, label: str) -> None:
    """A schedule's dates lie within a year back and five years ahead: anything else is a typo (9999 for 2025)."""
    earliest = today - timedelta(days=PAST_WINDOW_DAYS)
    latest = today + timedelta(days=FUTURE_WINDOW_DAYS)
    if not earliest <= day <= latest:
        message = f"{label} {day} 不在允许的范围内（{earliest} 至 {latest}）"
        raise InvalidInput(message, fields={field: f"应在 {earliest} 至 {latest} 之间"})


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def occurrences_between(rule: Rule, start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[datetime]:
    """Every occurrence in [start, end), ascending, as aware UTC instants."""
    try:
        yield from _occurrences_between(rule, start, end, zone)
    except OverflowError:
        # A row saved before dates were checked (start_date 9999-12-30) ends at the calendar's end, quietly:
        # one clerk's typo must never take the schedule pages away from everyone.
        return


def _occurrences_between(rule: Rule, start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[datetime]:
    if rule.kind == "once":
        if rule.once_at is not None and start <= rule.once_at < end:
            yield rule.once_at
        return
    day = start.astimezone(zone).date()
    if rule.start_date is not None and day < rule.start_date:
        day = rule.start_date
    last = end.astimezone(zone).date()
    if rule.end_date is not None and last > rule.end_date:
        last = rule.end_date
    while day <= last:
        if rule.runs_on(day):
            for clock in rule.times:
                instant = _at(day, clock, zone)
                if start <= instant < end:
                    yield instant
        day += timedelta(days=1)


def next_occurrence(rule: Rule, after: datetime, zone: ZoneInfo) -> datetime | None:
    """The first occurrence strictly after ``after``, or None when the rule has ended."""
    try:
        return _next_occurrence(rule, after, zone)
    except OverflowError:  # see occurrences_between: the calendar ends before such a rule does
        return None


def _next_occurrence(rule: Rule, after: datetime, zone: ZoneInfo) -> datetime | None:
    if rule.kind == "once":
        return rule.once_at if rule.once_at is not None and rule.once_at > after else None
    day = after.astimezone(zone).date()
    if rule.start_date is not None and day < rule.start_date:
        day = rule.start_date
    for _ in range(_SCAN_DAYS):
        if rule.end_date is not None and day > rule.end_date:
            return None
        if rule.runs_on(day):
            for clock in rule.times:
                instant = _at(day, clock, zone)
                if instant > after:
                    return instant
        day += timedelta(days=1)
    return None


def next_occurrences(rule: Rule, after: datetime, zone: ZoneInfo, count: int) -> list[datetime]:
    found: list[datetime] = []
    cursor = after
    while len(found) < count:
        instant = next_occurrence(rule, cursor, zone)
        if instant is None:
            break
        found.append(instant)
        cursor = instant
    return found


def in_quiet_hours(clock: time, quiet_start: time, quiet_end: time) -> bool:
    """Whether a wall-clock time falls in [quiet_start, quiet_end), which may wrap past midnight."""
    if quiet_start == quiet_end:
        return False
    if quiet_start < quiet_end:
        return quiet_start <= clock < quiet_end
    return clock >= quiet_start or clock < quiet_end


def quiet_clocks(rule: Rule, zone: ZoneInfo, quiet_start: time, quiet_end: time) -> list[time]:
    """The rule's start times that fall in a township's quiet hours."""
    if rule.kind == "once":
        assert rule.once_at is not None
        clocks = [rule.once_at.astimezone(zone).time().replace(second=0, microsecond=0)]
    else:
        clocks = list(rule.times)
    return [clock for clock in clocks if in_quiet_hours(clock, quiet_start, quiet_end)]


def day_label(day: date) -> str:
    """A day as people write it: 12月6日 周六."""
    return f"{day.month}月{day.day}日 {WEEKDAY_LABELS[day.isoweekday()]}"


def moment_label(instant: datetime, zone: ZoneInfo) -> str:
    """An instant as people say it: 12月6日 周六 07:00."""
    local = instant.astimezone(zone)
    return f"{day_label(local.date())} {local:%H:%M}"


def end_label(instant: datetime, zone: ZoneInfo) -> str:
    """When an item ends, to the second when it does not end on the minute (12:01:54, not 12:01)."""
    local = instant.astimezone(zone)
    return f"{local:%H:%M}" if local.second == 0 and local.microsecond == 0 else f"{local:%H:%M:%S}"


def describe(rule: Rule, zone: ZoneInfo) -> str:
    """One line a clerk reads: 每天 07:00、12:00、18:30（2026-11-01 至 2026-11-30）."""
    if rule.kind == "once":
        assert rule.once_at is not None
        return f"单次 {rule.once_at.astimezone(zone).strftime('%Y-%m-%d %H:%M')}"
    clocks = "、".join(format_clock(clock) for clock in rule.times)
    days = "每天" if rule.kind == "daily" else "每周" + "、".join(WEEKDAY_LABELS[d] for d in sorted(rule.weekdays))
    window = ""
    if rule.start_date or rule.end_date:
        window = f"（{rule.start_date or '即日'} 至 {rule.end_date or '长期'}）"
    return f"{days} {clocks}{window}"
