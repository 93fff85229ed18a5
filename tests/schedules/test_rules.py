"""Schedule rules: occurrences in Shanghai wall-clock time, windows, weekdays, quiet hours, bad input."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from common.errors import InvalidInput
from schedules.rules import (
    Rule,
    describe,
    in_quiet_hours,
    make_rule,
    next_occurrence,
    next_occurrences,
    occurrences_between,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, 6, 0, tzinfo=SHANGHAI).astimezone(UTC)  # a Wednesday


def rule(**fields: object) -> Rule:
    values: dict[str, object] = {
        "kind": "daily",
        "once_at": None,
        "times": (),
        "weekdays": (),
        "start_date": None,
        "end_date": None,
    }
    values.update(fields)
    return make_rule(zone=SHANGHAI, now=NOW, **values)  # type: ignore[arg-type]


def test_daily_times_are_shanghai_wall_clock_stored_as_utc() -> None:
    found = next_occurrences(rule(times=("18:30", "07:00")), NOW, SHANGHAI, 3)
    assert [instant.astimezone(SHANGHAI).strftime("%m-%d %H:%M") for instant in found] == [
        "11-25 07:00",
        "11-25 18:30",
        "11-26 07:00",
    ]
    assert found[0] == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)


def test_weekly_runs_only_on_the_chosen_days_within_the_window() -> None:
    weekly = rule(kind="weekly", times=("08:00",), weekdays=(1, 5), end_date=date(2026, 12, 4))
    found = [instant.astimezone(SHANGHAI).date() for instant in next_occurrences(weekly, NOW, SHANGHAI, 10)]
    assert found == [date(2026, 11, 27), date(2026, 11, 30), date(2026, 12, 4)]
    assert next_occurrence(weekly, datetime(2026, 12, 5, tzinfo=UTC), SHANGHAI) is None


def test_a_campaign_window_starts_later_and_ends_inclusive() -> None:
    window = rule(times=("12:00",), start_date=date(2026, 12, 1), end_date=date(2026, 12, 3))
    start, end = NOW, NOW + timedelta(days=30)
    found = list(occurrences_between(window, start, end, SHANGHAI))
    assert [instant.astimezone(SHANGHAI).day for instant in found] == [1, 2, 3]
    assert describe(window, SHANGHAI) == "每天 12:00（2026-12-01 至 2026-12-03）"


def test_quiet_hours_wrap_past_midnight() -> None:
    quiet = (time(21, 30), time(6, 30))
    assert in_quiet_hours(time(22, 0), *quiet)
    assert in_quiet_hours(time(5, 59), *quiet)
    assert not in_quiet_hours(time(6, 30), *quiet)
    assert not in_quiet_hours(time(12, 0), *quiet)
    assert not in_quiet_hours(time(3, 0), time(0, 0), time(0, 0))  # equal ends: no quiet hours


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"times": ("25:00",)}, "25:00"),
        ({"times": ("7点",)}, "格式不对"),
        ({"times": ()}, "至少填写一个播出时间"),
        ({"kind": "once", "once_at": NOW - timedelta(minutes=1)}, "已经过去"),
        ({"times": ("07:00",), "start_date": date(2026, 12, 2), "end_date": date(2026, 12, 1)}, "早于开始日期"),
        ({"times": ("07:00",), "end_date": date(2026, 11, 1)}, "已经过去"),
        ({"kind": "weekly", "times": ("07:00",), "weekdays": ()}, "星期几"),
        ({"kind": "weekly", "times": ("07:00",), "weekdays": (8,)}, "1（周一）到7（周日）"),
    ],
)
def test_bad_rules_are_refused_with_a_chinese_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        rule(**fields)
    assert message in raised.value.message


def test_a_once_time_without_a_zone_is_read_as_shanghai_time() -> None:
    once = rule(kind="once", once_at=datetime(2026, 11, 25, 9, 30))
    assert once.once_at == datetime(2026, 11, 25, 1, 30, tzinfo=UTC)


def test_days_and_end_times_read_as_people_write_them() -> None:
    from schedules.rules import day_label, end_label, moment_label

    assert day_label(date(2026, 12, 6)) == "12月6日 周日"
    noon = datetime(2026, 12, 5, 12, 0, tzinfo=SHANGHAI)
    assert moment_label(noon, SHANGHAI) == "12月5日 周六 12:00"
    # A 114 s item that starts at noon ends at 12:01:54, not 12:01.
    assert end_label(noon + timedelta(seconds=114.4), SHANGHAI) == "12:01:54"
    assert end_label(noon + timedelta(minutes=2), SHANGHAI) == "12:02"
