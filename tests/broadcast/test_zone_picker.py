"""The grouped zone picker's choices resolved: zones now (emergency, play now), the highest level (schedules)."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from common.errors import InvalidInput
from web.zone_picker import PickerTownship, PickerVillage, PickerZone, Selection, ZoneTree

TREE = ZoneTree(
    (
        PickerTownship(1, "甲乡", (
            PickerVillage(10, "前进村", (PickerZone(100, "村委会广场", 3), PickerZone(101, "一组居民点", 2))),
            PickerVillage(11, "新华村", (PickerZone(110, "村委会广场", 1),)),
        )),
        PickerTownship(2, "乙镇", (PickerVillage(20, "前进村", (PickerZone(200, "村委会广场", 4),)),)),
    )
)  # fmt: skip


def test_a_ticked_village_or_township_covers_its_zones_and_targets_keep_the_highest_level() -> None:
    form = MultiDict([("village_ids", "10"), ("zone_ids", "100"), ("zone_ids", "101"), ("township_ids", "2"),
                      ("zone_ids", "200"), ("zone_ids", "")])  # fmt: skip
    chosen = Selection.from_form(form)
    assert TREE.zones_of(chosen) == [100, 101, 200]
    assert TREE.targets_of(chosen) == [("village", 10), ("township", 2)]
    assert TREE.count_text(chosen) == "已选 2 个村、3 个分区，共 9 个喇叭"
    assert TREE.count_text(Selection()) == "尚未选择播出分区"
    only_zone = Selection(zone_ids=frozenset({110}))
    assert TREE.targets_of(only_zone) == [("zone", 110)] and TREE.zones_of(only_zone) == [110]


def test_an_id_outside_the_tree_is_refused_in_chinese() -> None:
    with pytest.raises(InvalidInput, match="所选的播出分区不存在或不在您的范围内"):
        TREE.zones_of(Selection(zone_ids=frozenset({999})))
    with pytest.raises(InvalidInput, match="所选的村不存在"):
        TREE.targets_of(Selection(village_ids=frozenset({99})))
