"""Which villages an alert covers, what the policy decides, and what is said."""

from __future__ import annotations

import pytest

from alerts.areas import Place, admin_codes, match_places
from alerts.cap import CapArea, Circle, Point, parse_cap
from alerts.policy import PolicyRow, decide, level_of, spoken_text, spoken_title
from areas.demo import DEMO_COUNTY_CODE, village_code, village_position
from tests.alerts.fixtures import cap_bytes

EAST = Place(1, "前进村", "示例东风镇", "159901101201", 41.0, 111.0)
EAST_2 = Place(2, "新华村", "示例东风镇", "159901101202", 41.0, 111.04)
RED_WILLOW = Place(3, "前进村", "示例红柳乡", "159901202201", 41.0, 111.2)
NO_CODE = Place(4, "无码村", "示例红柳乡", None, 41.05, 111.05)
NOWHERE = Place(5, "无坐标村", "示例红柳乡", None, None, None)
PLACES = [EAST, EAST_2, RED_WILLOW, NO_CODE, NOWHERE]


def _ids(area: CapArea) -> list[int]:
    return [match.place.village_id for match in match_places([area], PLACES)]


def test_a_county_code_covers_every_village_with_a_code_a_township_code_only_its_own() -> None:
    assert _ids(CapArea("全县", geocodes=(("GB/T 2260", "159901"),))) == [1, 2, 3]
    assert _ids(CapArea("东风镇", geocodes=(("行政区划代码", "159901101"),))) == [1, 2]
    assert _ids(CapArea("一个村", geocodes=(("GB/T 2260", "159901101202"),))) == [2]


def test_a_province_or_city_code_with_trailing_zeros_covers_the_villages_under_it() -> None:
    assert admin_codes(CapArea("内蒙古", geocodes=(("GB/T 2260", "150000"),))) == ["15"]
    assert _ids(CapArea("内蒙古", geocodes=(("GB/T 2260", "150000"),))) == [1, 2, 3]
    assert _ids(CapArea("别的省", geocodes=(("GB/T 2260", "110000"),))) == []


def test_geocodes_of_other_systems_are_not_read_as_ours() -> None:
    assert _ids(CapArea("SAME", geocodes=(("SAME", "159901"),))) == []


def test_a_polygon_and_a_circle_match_by_the_villages_coordinates() -> None:
    square = (
        Point(40.99, 110.99),
        Point(40.99, 111.06),
        Point(41.06, 111.06),
        Point(41.06, 110.99),
        Point(40.99, 110.99),
    )
    assert _ids(CapArea("草场", polygons=(square,))) == [1, 2, 4]
    assert _ids(CapArea("圆", circles=(Circle(Point(41.0, 111.2), 2.0),))) == [3]
    assert _ids(CapArea("零半径", circles=(Circle(Point(41.0, 111.2), 0.0),))) == [3]


def test_the_reason_for_each_match_is_given() -> None:
    (match,) = match_places([CapArea("一个村", geocodes=(("GB/T 2260", "159901101202"),))], [EAST_2])
    assert "159901101202" in match.why and match.why.startswith("一个村")


def test_the_fire_fixture_polygon_matches_only_the_first_demo_township() -> None:
    info = parse_cap(cap_bytes("cn-fire-polygon.xml")).chosen_info()
    assert info is not None
    demo = [
        Place(t * 100 + v, f"村{v}", f"乡{t}", village_code(f"{DEMO_COUNTY_CODE}{101 + t:03d}", v, "村"),
              *village_position(t, v))
        for t in range(9) for v in range(12)
    ]  # fmt: skip
    townships = {match.place.township for match in match_places(info.areas, demo)}
    assert townships == {"乡0"}


DEFAULTS = [
    PolicyRow(1, None, ("Extreme", "Severe"), ("Immediate", "Expected"), (), "auto"),
    PolicyRow(2, None, ("Moderate",), (), (), "review"),
    PolicyRow(3, None, (), (), (), "record"),
]


@pytest.mark.parametrize(
    ("fixture", "action"),
    [
        ("cn-red-rainstorm.xml", "auto"),
        ("cn-orange-gale.xml", "auto"),
        ("cn-yellow-snowstorm.xml", "review"),
        ("cn-blue-coldwave.xml", "record"),
        ("oasis-a3-earthquake-update.xml", "record"),
    ],
)
def test_the_default_policy(fixture: str, action: str) -> None:
    info = parse_cap(cap_bytes(fixture)).chosen_info()
    assert info is not None
    rule = decide(DEFAULTS, info)
    assert rule is not None and rule.action == action


def test_an_event_row_before_the_defaults_overrides_them() -> None:
    info = parse_cap(cap_bytes("cn-red-rainstorm.xml")).chosen_info()
    assert info is not None
    only_record_rain = [PolicyRow(9, "暴雨", (), (), (), "record"), *DEFAULTS]
    rule = decide(only_record_rain, info)
    assert rule is not None and rule.id == 9
    assert decide([], info) is None


@pytest.mark.parametrize(
    ("fixture", "level", "title"),
    [
        ("cn-red-rainstorm.xml", "红色", "暴雨红色预警"),
        ("cn-orange-gale.xml", "橙色", "大风橙色预警"),
        ("cn-yellow-snowstorm.xml", "黄色", "暴雪黄色预警"),
        ("cn-blue-coldwave.xml", "蓝色", "寒潮蓝色预警"),
    ],
)
def test_the_level_is_spoken_plainly(fixture: str, level: str, title: str) -> None:
    info = parse_cap(cap_bytes(fixture)).chosen_info()
    assert info is not None
    assert level_of(info) == level
    assert spoken_title(info) == title


def test_the_spoken_text_leads_in_then_headline_and_instruction_and_fits_the_cap() -> None:
    info = parse_cap(cap_bytes("cn-red-rainstorm.xml")).chosen_info()
    assert info is not None
    lead, body = spoken_text(info, max_chars=600)
    assert lead == "请注意，以下是示例县气象局发布的暴雨红色预警"
    assert body.index(info.headline) < body.index(info.instruction) < body.index(info.description)
    lead, body = spoken_text(info, max_chars=90)
    assert len(lead) + 1 + len(body) <= 90
    assert info.instruction in body and info.description not in body
    lead, _body = spoken_text(info, max_chars=600, test=True)
    assert lead.startswith("这是一条测试预警信息")


def test_an_alert_without_a_chinese_sender_name_is_announced_by_its_kind_of_authority() -> None:
    info = parse_cap(cap_bytes("oasis-a2-severe-thunderstorm.xml")).chosen_info()
    assert info is not None
    lead, _body = spoken_text(info, max_chars=600)
    assert lead.startswith("请注意，以下是气象部门发布的")
