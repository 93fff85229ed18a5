"""A small area tree for tests: two townships with villages, zones and speakers of every transport."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.principal import Principal
from accounts.service import principal_of
from server import Runtime
from storage.models import User
from tests.conftest import SYSTEM

# Reads everything, changes nothing: for assertions about what the tree holds.
COUNTY_READER = Principal(
    user_id=0,
    username="test:reader",
    display_name="reader",
    roles=frozenset({"leader"}),
    county_wide=True,
    township_ids=frozenset(),
    can_emergency=False,
)


@dataclass(frozen=True)
class Tree:
    county_id: int
    township_ids: tuple[int, int]
    village_ids: tuple[int, int]  # one per township
    zone_ids: tuple[int, int]
    speaker_ids: tuple[int, int]
    unit_ids: tuple[int, int]


async def seed_tree(runtime: Runtime) -> Tree:
    user, _ = await runtime.accounts.create_user(
        SYSTEM,
        username="seed-admin",
        display_name="seed",
        password="Tree-builder-pass-1",
        roles=["admin"],
        county_wide=True,
    )
    async with runtime.sessions() as session:
        loaded = await session.get(User, user.id)
        assert loaded is not None
        admin = principal_of(loaded)
    areas = runtime.areas
    county = await areas.create_county(admin, name="测试县")
    townships, villages, zones, speakers, units = [], [], [], [], []
    for index, name in enumerate(("甲乡", "乙镇")):
        township = await areas.create_township(admin, county_id=county.id, name=name)
        village = await areas.create_village(admin, township_id=township.id, name=f"{name}一村")
        zone = await areas.create_zone(admin, village_id=village.id, name="广场")
        speaker, _ = await areas.create_speaker(
            admin, zone_id=zone.id, name="喇叭", transport="rtp", address=f"127.0.0.1:{20000 + index * 2}"
        )
        unit = await areas.create_unit(admin, name=f"{name}政府", kind="township", township_id=township.id)
        townships.append(township.id)
        villages.append(village.id)
        zones.append(zone.id)
        speakers.append(speaker.id)
        units.append(unit.id)
    return Tree(
        county_id=county.id,
        township_ids=(townships[0], townships[1]),
        village_ids=(villages[0], villages[1]),
        zone_ids=(zones[0], zones[1]),
        speaker_ids=(speakers[0], speakers[1]),
        unit_ids=(units[0], units[1]),
    )
