"""The demo county: invented places and accounts to try the service with.

Every name here is made up and says so (示例…); nothing may be mistaken for a
real place or person. Loading twice changes nothing that exists already.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.service import AccountService
from common.clock import Clock
from storage.audit import Actor
from storage.models import County, Speaker, Township, Unit, User, Village, Zone

DEMO_COUNTY = "示例县"
# Invented but well-formed administrative codes (GB/T 2260 and the statistical division codes): province 15
# (Inner Mongolia), a prefecture number (99) that no real one uses. Official alerts name places by these.
DEMO_COUNTY_CODE = "159901"
# Where the invented county lies (WGS 84): townships on a grid, villages around them (alerts' polygons and circles).
DEMO_ORIGIN = (41.0, 111.0)

TOWNSHIPS = [
    "示例东风镇",
    "示例红柳乡",
    "示例白桦乡",
    "示例青山镇",
    "示例黄河湾乡",
    "示例草原乡",
    "示例西沟乡",
    "示例南梁镇",
    "示例北滩乡",
]
VILLAGE_STEMS = ["前进", "新华", "团结", "光明", "胜利", "永兴", "丰收", "长青", "和平", "太平", "富民", "兴旺"]
DEPARTMENTS = [
    "县民政局（示例）",
    "县农牧局（示例）",
    "县自然资源局（示例）",
    "县住建局（示例）",
    "县医保局（示例）",
    "县应急管理局（示例）",
]

# (username, display name, roles, county-wide, emergency permission)
# Township-bound accounts belong to the first demo township ("staff2" to the second, to show scoping).
DEMO_USERS: list[tuple[str, str, tuple[str, ...], bool, bool]] = [
    ("demo.admin", "系统管理员（示例）", ("admin",), True, True),
    ("demo.staff", "乡镇干部·张示例", ("staff",), False, False),
    ("demo.staff2", "乡镇干部·孙示例", ("staff",), False, False),
    ("demo.approver", "审核人·李示例", ("approver",), False, False),
    ("demo.operator", "接线员·王示例", ("operator",), True, False),
    ("demo.inspector", "纪检监察·赵示例", ("inspector",), True, False),
    ("demo.leader", "县领导·刘示例", ("leader",), True, True),
]


@dataclass(frozen=True)
class DemoResult:
    created_places: bool
    new_logins: dict[str, str]
    logins_file: Path


def _village_names(township_index: int) -> list[str]:
    # 9 townships × 11–12 villages ≈ 103, as in the county this grew from.
    count = 12 if township_index < 4 else 11
    names = [f"{stem}村" for stem in VILLAGE_STEMS[:count]]
    if township_index % 3 == 0:
        names[-1] = f"{VILLAGE_STEMS[count - 1]}社区"
    return names


def township_code(township_index: int, name: str) -> str:
    """Nine digits: the county's six, then 1xx for a town (镇), 2xx for a township (乡)."""
    return f"{DEMO_COUNTY_CODE}{(100 if name.endswith('镇') else 200) + township_index + 1:03d}"


def village_code(township: str, village_index: int, name: str) -> str:
    """Twelve digits: the township's nine, then 0xx for a community (社区), 2xx for a village (村)."""
    return f"{township}{(0 if name.endswith('社区') else 200) + village_index + 1:03d}"


def village_position(township_index: int, village_index: int) -> tuple[float, float]:
    lat0, lon0 = DEMO_ORIGIN
    lat = lat0 + (township_index // 3) * 0.15 + (village_index // 4) * 0.03
    lon = lon0 + (township_index % 3) * 0.2 + (village_index % 4) * 0.04
    return round(lat, 5), round(lon, 5)


def _speakers_for(zone_number: int, speaker_base: int) -> list[tuple[str, str, str, str]]:
    """(name, transport, address, codec): every transport kind appears across the county."""
    index = speaker_base
    kinds = [
        ("大喇叭", "sip", f"spk{index:04d}", "pcmu"),
        ("音柱", "rtp", f"239.10.{index // 250}.{index % 250 + 1}:5004", "pcmu"),
        ("4G音箱", "http", f"t{index:05d}", "mp3"),
    ]
    if zone_number == 0 and index % 40 == 0:
        kinds.append(("广播室", "sink", f"file:room{index:04d}", "wav"))
    return kinds[: 1 + (index % 3)] if zone_number else kinds


async def load_demo(
    sessions: async_sessionmaker[AsyncSession],
    accounts: AccountService,
    clock: Clock,
    logins_file: Path,
) -> DemoResult:
    now = clock.now()
    created_places = False
    async with sessions.begin() as session:
        county = await session.scalar(select(County).where(County.name == DEMO_COUNTY))
        if county is None:
            created_places = True
            county = County(name=DEMO_COUNTY, code=DEMO_COUNTY_CODE, created_at=now)
            session.add(county)
            await session.flush()
            speaker_index = 0
            for t_index, township_name in enumerate(TOWNSHIPS):
                township = Township(
                    county_id=county.id,
                    name=township_name,
                    code=township_code(t_index, township_name),
                    quiet_start=time(21, 30),
                    quiet_end=time(6, 30),
                    created_at=now,
                )
                session.add(township)
                await session.flush()
                session.add(
                    Unit(name=township_name, kind="township", township_id=township.id, active=True, created_at=now)
                )
                for v_index, village_name in enumerate(_village_names(t_index)):
                    latitude, longitude = village_position(t_index, v_index)
                    village = Village(
                        township_id=township.id,
                        name=village_name,
                        kind="community" if village_name.endswith("社区") else "village",
                        code=village_code(township.code or "", v_index, village_name),
                        latitude=latitude,
                        longitude=longitude,
                        created_at=now,
                    )
                    session.add(village)
                    await session.flush()
                    zone_names = ["村委会广场"] + (["一组居民点"] if speaker_index % 2 == 0 else [])
                    for z_index, zone_name in enumerate(zone_names):
                        zone = Zone(village_id=village.id, name=zone_name, created_at=now)
                        session.add(zone)
                        await session.flush()
                        for name, transport, address, codec in _speakers_for(z_index, speaker_index):
                            session.add(
                                Speaker(
                                    zone_id=zone.id,
                                    name=name,
                                    transport=transport,
                                    address=address,
                                    codec=codec,
                                    enabled=True,
                                    created_at=now,
                                )
                            )
                        speaker_index += 1
            for department in DEPARTMENTS:
                session.add(Unit(name=department, kind="department", active=True, created_at=now))
        township_ids = list(
            (
                await session.scalars(select(Township.id).where(Township.county_id == county.id).order_by(Township.id))
            ).all()
        )
        existing = set((await session.scalars(select(User.username))).all())

    actor = Actor(user_id=None, username="system:demo")
    new_logins: dict[str, str] = {}
    for username, display_name, roles, county_wide, emergency in DEMO_USERS:
        if username in existing:
            continue  # keep accounts (and their passwords) from an earlier run
        user, password = await accounts.create_user(
            actor,
            username=username,
            display_name=display_name,
            password=None,
            roles=roles,
            county_wide=county_wide,
            township_ids=[] if county_wide else township_ids[1:2] if username.endswith("2") else township_ids[:1],
            can_emergency=emergency,
            phone_endpoint="operator1" if username == "demo.operator" else None,
        )
        assert password is not None
        new_logins[user.username] = password
    if new_logins:
        _append_logins(logins_file, new_logins)
    return DemoResult(created_places=created_places, new_logins=new_logins, logins_file=logins_file)


def _append_logins(path: Path, logins: dict[str, str]) -> None:
    """Logins go to a file only its owner can read (0600), created that way from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        if handle.tell() == 0:
            handle.write("# 村响演示账号（示例数据）。用户名  密码  角色\n")
        for username, password in logins.items():
            roles = next(r for u, _n, r, _c, _e in DEMO_USERS if u == username)
            handle.write(f"{username}\t{password}\t{','.join(roles)}\n")
