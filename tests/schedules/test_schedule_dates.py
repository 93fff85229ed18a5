"""A schedule's dates: a typo (year 9999, 31 February) is refused with its reason, and a stored one breaks no page."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from schedules.service import ScheduleInput
from server import Runtime
from settings import Settings
from storage.models import Schedule
from tests.conftest import BOTH_DATABASES, ClientFactory, UserFactory
from tests.support.broadcasting import approved_notice, broadcasting_settings, build_place, make_principal
from tests.support.http import ApiClient

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return broadcasting_settings(tmp_path / "data", database_url)


async def schedule_count(runtime: Runtime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Schedule)) or 0)


async def setup(runtime: Runtime) -> tuple[int, int, int]:
    """A township with one zone and an approved notice: (notice id, zone id, township id)."""
    admin = await make_principal(runtime, "place-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:square")]])
    staff = await make_principal(runtime, "place-staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(runtime, "place-approver", "approver", township_ids=[place.township_id])
    notice = await approved_notice(runtime, staff, approver, township_id=place.township_id)
    return notice.id, place.zone_ids[0], place.township_id


def today(runtime: Runtime) -> date:
    return runtime.clock.now().astimezone(runtime.settings.zone).date()


async def test_dates_outside_a_sane_window_are_refused_on_write(runtime: Runtime, admin: ApiClient) -> None:
    notice_id, zone_id, _township = await setup(runtime)
    daily: dict[str, Any] = {"notice_id": notice_id, "kind": "daily", "times": ["07:00"],
                             "targets": [{"level": "zone", "id": zone_id}]}  # fmt: skip
    too_late = (today(runtime) + timedelta(days=6 * 365)).isoformat()
    too_early = (today(runtime) - timedelta(days=400)).isoformat()
    for extra, field in (
        ({"start_date": "9999-12-30"}, "start_date"),
        ({"start_date": too_late}, "start_date"),
        ({"end_date": too_late}, "end_date"),
        ({"start_date": too_early}, "start_date"),
    ):
        response = await admin.post("/api/v1/schedules", json={**daily, **extra})
        body = await response.json()
        assert response.status == 400, (extra, body)
        assert list(body["error"]["fields"]) == [field], body
    once = {"notice_id": notice_id, "kind": "once", "targets": [{"level": "zone", "id": zone_id}]}
    for when in ("9999-12-31T08:00:00", "0001-01-01T08:00:00", f"{too_late}T08:00:00"):
        response = await admin.post("/api/v1/schedules", json={**once, "once_at": when})
        assert response.status == 400, when
        assert list((await response.json())["error"]["fields"]) == ["once_at"]
    # The preview says the same before anything is saved.
    preview = await admin.post("/api/v1/schedules/preview", json={**daily, "start_date": too_late})
    assert preview.status == 400
    assert await schedule_count(runtime) == 0


async def test_the_31st_of_february_does_not_exist(runtime: Runtime, admin: ApiClient) -> None:
    notice_id, zone_id, _township = await setup(runtime)
    year = today(runtime).year + 1
    response = await admin.post(
        "/api/v1/schedules",
        json={"notice_id": notice_id, "kind": "daily", "times": ["07:00"], "start_date": f"{year}-02-31",
              "targets": [{"level": "zone", "id": zone_id}]},
    )  # fmt: skip
    body = await response.json()
    assert response.status == 400
    assert body["error"]["fields"] == {"start_date": "没有这一天"}


async def test_a_bad_date_already_stored_breaks_no_list_for_anyone(
    runtime: Runtime, new_client: ClientFactory, make_user: UserFactory
) -> None:
    notice_id, zone_id, township_id = await setup(runtime)
    staff = await make_principal(runtime, "writer", "staff", township_ids=[township_id])
    schedule = await runtime.schedules.service.create(
        staff, ScheduleInput(notice_id=notice_id, kind="daily", times=("07:00",), targets=(("zone", zone_id),))
    )
    # As an older version let it be saved: one clerk's typo.
    async with runtime.sessions.begin() as session:
        await session.execute(update(Schedule).where(Schedule.id == schedule.id).values(start_date=date(9999, 12, 30)))
    for role in ("staff", "approver", "admin", "leader"):
        username, password = await make_user(role, township_ids=[township_id], county_wide=role in ("admin", "leader"))
        client = await (await new_client()).login(username, password)
        for path in (
            "/api/v1/schedules",
            f"/api/v1/schedules/{schedule.id}",
            f"/api/v1/zones/{zone_id}/week",
            "/broadcast/schedules",
            f"/broadcast/schedules/{schedule.id}",
            f"/broadcast/zones/{zone_id}/week",
        ):
            response = await client.get(path)
            assert response.status == 200, (role, path, response.status)
    listed = await client.get_json("/api/v1/schedules")
    assert [item["id"] for item in listed] == [schedule.id]
