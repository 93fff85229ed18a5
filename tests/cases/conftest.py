"""Fixtures for the case ledger: a controllable clock, a small county, people in every role, cases with recordings.

The runtime here runs on a :class:`ManualClock` (Monday 2 March 2026, 09:00
in Shanghai), so every deadline is computed from a time the test chose and
moves only when the test moves it. Hotline cases are written the way the
hotline's intake writes them (status ``new``, a Linkedid, a recording file
in the recordings directory with its checksum), without a phone call; the
tests against the real Asterisk live in ``tests/cases/asterisk/``.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import secrets
import struct
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from accounts.principal import Principal
from accounts.service import principal_of
from cases import numbers as casenumbers
from common.clock import ManualClock
from server import Runtime, build_runtime
from settings import Settings
from storage.models import Case, Recording, Unit, User
from tests.conftest import ClientFactory, UserFactory
from tests.foundation.seed import Tree, seed_tree
from tests.support.http import ApiClient

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Monday that is a working day in the 2026 calendar.
START = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)


def wav_bytes(seconds: float, *, rate: int = 8000, frequency: float = 440.0) -> bytes:
    """A mono 16-bit WAV of a tone: real audio of a known length, the same bytes every time."""
    frames = int(seconds * rate)
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * frequency * n / rate))) for n in range(frames)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(samples)
    return buffer.getvalue()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def runtime(settings: Settings, clock: ManualClock) -> AsyncIterator[Runtime]:
    built = build_runtime(settings, clock=clock)
    yield built
    await built.engine.dispose()


@dataclass
class County:
    tree: Tree
    department_id: int

    @property
    def township_a(self) -> int:
        return self.tree.township_ids[0]

    @property
    def township_b(self) -> int:
        return self.tree.township_ids[1]

    @property
    def village_a(self) -> int:
        return self.tree.village_ids[0]

    @property
    def village_b(self) -> int:
        return self.tree.village_ids[1]

    @property
    def unit_a(self) -> int:
        return self.tree.unit_ids[0]

    @property
    def unit_b(self) -> int:
        return self.tree.unit_ids[1]


@pytest.fixture
async def county(runtime: Runtime, clock: ManualClock) -> County:
    tree = await seed_tree(runtime)
    async with runtime.sessions() as session:
        unit = Unit(name="县民政局", kind="department", township_id=None, active=True, created_at=clock.now())
        session.add(unit)
        await session.commit()
        return County(tree, unit.id)


CaseMaker = Callable[..., Awaitable[Case]]
_linkedids = itertools.count(1)


@pytest.fixture
def hotline_case(runtime: Runtime, clock: ManualClock) -> CaseMaker:
    """A case as the hotline opens it, with a message recording (a tone of ``seconds``) on disk."""

    async def make(
        *,
        township_id: int | None = None,
        village_id: int | None = None,
        category: str = "petition",
        caller: str | None = "13800001111",
        seconds: float = 12.0,
        recording: bool = True,
        test_call: bool = False,
        created_at: datetime | None = None,
    ) -> Case:
        now = created_at or clock.now()
        linkedid = f"test-{next(_linkedids)}-{secrets.token_hex(3)}"
        store = runtime.hotline.store
        store.prepare()
        async with runtime.sessions() as session:
            case = Case(
                number=casenumbers.new_case_number(8),
                linkedid=linkedid,
                channel="hotline",
                status="new",
                category=category,
                sealed=category == "discipline",
                caller_number=caller,
                caller_withheld=caller is None,
                village_id=village_id,
                township_id=township_id,
                ivr_choice="3" if category == "discipline" else "1",
                pin="1234",
                test_call=test_call,
                created_at=now,
                updated_at=now,
            )
            session.add(case)
            await session.flush()
            if recording:
                data = wav_bytes(seconds)
                relative = store.destination(now, f"{case.number}-message-{linkedid}")
                path = store.path_of(relative)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                session.add(
                    Recording(
                        case_id=case.id,
                        kind="message",
                        linkedid=linkedid,
                        source_name=f"cx_{category}_message_{linkedid}.wav",
                        path=relative,
                        sha256=hashlib.sha256(data).hexdigest(),
                        bytes=len(data),
                        duration_s=seconds,
                        empty=False,
                        recorded_at=now,
                        created_at=now,
                    )
                )
            await session.commit()
            return case

    return make


@dataclass
class Person:
    username: str
    client: ApiClient
    principal: Principal


@dataclass
class People:
    """One signed-in person per role (operators both county-wide and township-bound)."""

    admin: Person
    staff_a: Person
    approver_a: Person
    operator_county: Person
    operator_a: Person
    operator_b: Person
    inspector: Person
    leader: Person

    def all(self) -> dict[str, Person]:
        return dict(self.__dict__)


@pytest.fixture
async def people(runtime: Runtime, county: County, make_user: UserFactory, new_client: ClientFactory) -> People:
    async def person(*roles: str, township: int | None = None, county_wide: bool = False, **extra: Any) -> Person:
        username, password = await make_user(
            *roles, township_ids=[township] if township else [], county_wide=county_wide, **extra
        )
        client = await (await new_client()).login(username, password)
        async with runtime.sessions() as session:
            user = await session.scalar(select(User).where(User.username == username))
            assert user is not None
            principal = principal_of(user)
        return Person(username, client, principal)

    return People(
        admin=await person("admin", county_wide=True),
        staff_a=await person("staff", township=county.township_a),
        approver_a=await person("approver", township=county.township_a),
        operator_county=await person("operator", county_wide=True, phone_endpoint="Local/answer@cx-test-operator"),
        operator_a=await person("operator", township=county.township_a),
        operator_b=await person("operator", township=county.township_b),
        inspector=await person("inspector", county_wide=True),
        leader=await person("leader", county_wide=True),
    )


def advance_days(clock: ManualClock, days: float) -> None:
    clock.advance(timedelta(days=days))
