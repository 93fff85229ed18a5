"""A small county with official codes and coordinates, and a broadcaster that records what alerts ask of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import time

from sqlalchemy import update

from server import Runtime
from storage.models import County, Village, Zone
from tests.support.broadcasting import make_principal

COUNTY_CODE = "159901"
EAST_TOWN = "159901101"  # 示例东风镇 in the fixtures (the orange gale warning's nine-digit code)
WILLOW = "159901202"


@dataclass(frozen=True)
class Aired:
    author_id: int
    title: str
    text: str
    zone_ids: list[int]


@dataclass
class RecordingBroadcaster:
    """The :class:`alerts.service.AlertBroadcaster` seam, recording each call (the real one: tests/alerts/test_rtp)."""

    aired: list[Aired] = field(default_factory=list)
    stopped: list[tuple[int, str]] = field(default_factory=list)
    replayed: list[tuple[int, list[int]]] = field(default_factory=list)

    async def air(self, *, author_id: int, title: str, text: str, zone_ids: Sequence[int]) -> tuple[int, int]:
        self.aired.append(Aired(author_id, title, text, list(zone_ids)))
        return 1000 + len(self.aired), 2000 + len(self.aired)

    async def stop(self, broadcast_id: int, reason: str) -> None:
        self.stopped.append((broadcast_id, reason))

    async def replay(self, *, notice_id: int, zone_ids: Sequence[int], author_id: int) -> int:
        self.replayed.append((notice_id, list(zone_ids)))
        return 3000 + len(self.replayed)


@dataclass(frozen=True)
class Tree:
    east_villages: tuple[int, ...]
    willow_village: int
    east_zones: tuple[int, ...]
    willow_zone: int
    test_zone: int


async def coded_county(runtime: Runtime, *, speakers: Sequence[tuple[str, str]] = ()) -> Tree:
    """东风镇 (two villages at 41.0N 111.0E and 41.0N 111.04E) and 红柳乡 (one at 41.0N 111.2E), with codes.

    Every village has a zone; 东风镇's first village also has a 测试分区. ``speakers`` go in 东风镇's first zone.
    """
    admin = await make_principal(runtime, "alerts-tree-admin", "admin", county_wide=True)
    areas = runtime.areas
    county = await areas.create_county(admin, name="示例县", code=COUNTY_CODE)
    always = {"quiet_start": time(0, 0), "quiet_end": time(0, 0)}
    east = await areas.create_township(admin, county_id=county.id, name="示例东风镇", code=EAST_TOWN, **always)
    willow = await areas.create_township(admin, county_id=county.id, name="示例红柳乡", code=WILLOW, **always)
    places = [(east.id, "前进村", f"{EAST_TOWN}201", 41.0, 111.0), (east.id, "新华村", f"{EAST_TOWN}202", 41.0, 111.04)]
    places.append((willow.id, "团结村", f"{WILLOW}201", 41.0, 111.2))
    village_ids, zone_ids = [], []
    for township_id, name, code, lat, lon in places:
        village = await areas.create_village(admin, township_id=township_id, name=name)
        async with runtime.sessions.begin() as session:
            await session.execute(
                update(Village).where(Village.id == village.id).values(code=code, latitude=lat, longitude=lon)
            )
        zone = await areas.create_zone(admin, village_id=village.id, name="村委会广场")
        village_ids.append(village.id)
        zone_ids.append(zone.id)
    test_zone = await areas.create_zone(admin, village_id=village_ids[0], name="广播室测试")
    async with runtime.sessions.begin() as session:
        await session.execute(update(Zone).where(Zone.id == test_zone.id).values(is_test=True))
        assert await session.get(County, county.id) is not None
    for number, (transport, address) in enumerate(speakers):
        await areas.create_speaker(
            admin, zone_id=zone_ids[0], name=f"喇叭{number + 1}", transport=transport, address=address
        )
    return Tree(tuple(village_ids[:2]), village_ids[2], tuple(zone_ids[:2]), zone_ids[2], test_zone.id)
