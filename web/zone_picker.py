"""The one zone picker: township → village → zone, for 应急广播, 立即播出 and schedule targets.

A county-wide user chooses among two hundred zones, a dozen of them called 村委会广场:
the picker groups them by township and village, ticks a whole township or village
at once, filters by name, and counts the speakers chosen (``web/static/broadcast.js``
does the ticking, filtering and counting; without it the boxes still submit).

What a form sends is a :class:`Selection` — the townships, villages and zones ticked.
:meth:`ZoneTree.zones_of` resolves it to zones now (应急广播, 立即播出);
:meth:`ZoneTree.targets_of` keeps the highest level ticked (a schedule's targets are
resolved at air time, so a zone added to a ticked village later is included).
The tree holds only what the user may reach, so resolving through it is the scope check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from accounts.principal import Principal
from common.errors import InvalidInput
from web import keys


@dataclass(frozen=True)
class PickerZone:
    id: int
    name: str
    speakers: int


@dataclass(frozen=True)
class PickerVillage:
    id: int
    name: str
    zones: tuple[PickerZone, ...]

    @property
    def speakers(self) -> int:
        return sum(zone.speakers for zone in self.zones)


@dataclass(frozen=True)
class PickerTownship:
    id: int
    name: str
    villages: tuple[PickerVillage, ...]

    @property
    def zone_count(self) -> int:
        return sum(len(village.zones) for village in self.villages)

    @property
    def speakers(self) -> int:
        return sum(village.speakers for village in self.villages)


def _ids(values: Iterable[Any]) -> frozenset[int]:
    return frozenset(int(value) for value in values if str(value).strip().isdigit())


@dataclass(frozen=True)
class Selection:
    """What is ticked: whole townships, whole villages, single zones."""

    township_ids: frozenset[int] = frozenset()
    village_ids: frozenset[int] = frozenset()
    zone_ids: frozenset[int] = frozenset()

    @classmethod
    def from_form(cls, form: Mapping[str, Any]) -> Selection:
        """From a posted form (a MultiDict), leniently: a refused form shows what was ticked, whatever else."""
        getall = getattr(form, "getall", None)

        def values(name: str) -> list[Any]:
            return list(getall(name, [])) if getall else list(form.get(name, []))

        return cls(_ids(values("township_ids")), _ids(values("village_ids")), _ids(values("zone_ids")))

    @classmethod
    def of_targets(cls, targets: Iterable[tuple[str, int]]) -> Selection:
        chosen: dict[str, set[int]] = {"township": set(), "village": set(), "zone": set()}
        for level, target_id in targets:
            chosen.setdefault(level, set()).add(target_id)
        return cls(frozenset(chosen["township"]), frozenset(chosen["village"]), frozenset(chosen["zone"]))

    def __bool__(self) -> bool:
        return bool(self.township_ids or self.village_ids or self.zone_ids)


@dataclass(frozen=True)
class ZoneTree:
    townships: tuple[PickerTownship, ...] = field(default=())

    # -- what a form asks for ----------------------------------------------------------------------------

    def zones_of(self, selection: Selection) -> list[int]:
        """Every zone the selection covers, now; an id outside the tree (or the user's scope) is refused."""
        self._check_known(selection)
        zones: list[int] = []
        for township in self.townships:
            for village in township.villages:
                for zone in village.zones:
                    if self.zone_ticked(selection, township, village, zone):
                        zones.append(zone.id)
        return zones

    def targets_of(self, selection: Selection) -> list[tuple[str, int]]:
        """The highest level ticked: a whole township, else whole villages, else single zones."""
        self._check_known(selection)
        targets: list[tuple[str, int]] = []
        for township in self.townships:
            if township.id in selection.township_ids:
                targets.append(("township", township.id))
                continue
            for village in township.villages:
                if village.id in selection.village_ids:
                    targets.append(("village", village.id))
                    continue
                targets += [("zone", zone.id) for zone in village.zones if zone.id in selection.zone_ids]
        return targets

    def _check_known(self, selection: Selection) -> None:
        townships = {township.id for township in self.townships}
        villages = {village.id for township in self.townships for village in township.villages}
        zones = {zone.id for t in self.townships for v in t.villages for zone in v.zones}
        for wanted, known, what in (
            (selection.township_ids, townships, "乡镇"),
            (selection.village_ids, villages, "村"),
            (selection.zone_ids, zones, "播出分区"),
        ):
            if not wanted <= known:
                raise InvalidInput(f"所选的{what}不存在或不在您的范围内", fields={"zone_ids": f"{what}不存在"})

    # -- what the picker shows -----------------------------------------------------------------------------

    @staticmethod
    def village_ticked(selection: Selection, township: PickerTownship, village: PickerVillage) -> bool:
        return township.id in selection.township_ids or village.id in selection.village_ids

    def zone_ticked(
        self, selection: Selection, township: PickerTownship, village: PickerVillage, zone: PickerZone
    ) -> bool:
        return self.village_ticked(selection, township, village) or zone.id in selection.zone_ids

    def touches(self, selection: Selection, township: PickerTownship) -> bool:
        """Whether anything in ``township`` is ticked (its group opens)."""
        return any(
            self.zone_ticked(selection, township, village, zone)
            for village in township.villages
            for zone in village.zones
        )

    def count_text(self, selection: Selection) -> str:
        """What the picker's counter says (the script keeps it up to date as boxes are ticked)."""
        zones = villages = speakers = 0
        for township in self.townships:
            for village in township.villages:
                ticked = [zone for zone in village.zones if self.zone_ticked(selection, township, village, zone)]
                villages += bool(ticked)
                zones += len(ticked)
                speakers += sum(zone.speakers for zone in ticked)
        if not zones:
            return "尚未选择播出分区"
        return f"已选 {villages} 个村、{zones} 个分区，共 {speakers} 个喇叭"


async def zone_tree(request: web.Request, principal: Principal, *, township_id: int | None = None) -> ZoneTree:
    """The zones ``principal`` may reach, grouped (only ``township_id``'s when given: a township notice's play)."""
    areas = request.app[keys.AREAS]
    counts = await areas.speaker_counts(principal)
    townships = [t for t in await areas.list_townships(principal) if township_id is None or t.id == township_id]
    villages: dict[int, list[Any]] = {}
    for village in await areas.list_villages(principal):
        villages.setdefault(village.township_id, []).append(village)
    zones: dict[int, list[PickerZone]] = {}
    for zone, village in await areas.list_zones(principal):
        zones.setdefault(village.id, []).append(PickerZone(zone.id, zone.name, counts.get(zone.id, 0)))
    tree = []
    for township in townships:
        grouped = tuple(
            PickerVillage(village.id, village.name, tuple(zones[village.id]))
            for village in villages.get(township.id, [])
            if zones.get(village.id)
        )
        if grouped:
            tree.append(PickerTownship(township.id, township.name, grouped))
    return ZoneTree(tuple(tree))


__all__ = ["PickerTownship", "PickerVillage", "PickerZone", "Selection", "ZoneTree", "zone_tree"]
