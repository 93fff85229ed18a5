"""Free disk space: a health state, the admins' 待办 warning, and uploads and approvals refused before it is gone.

The thresholds are set so that this machine's real disk is below them (any disk has less than 100% free):
the watch measures the real file systems, nothing is faked.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiohttp import FormData

from common.clock import SystemClock
from ops.disk import DiskLimits, DiskReading, DiskWatch, existing_ancestor, read_disks
from server import Runtime
from settings import OpsSettings, Settings
from tests.conftest import ClientFactory, UserFactory, make_settings
from tests.foundation.seed import seed_tree
from tests.support.http import ApiClient

NEVER: dict[str, float] = {
    "disk_warn_free_percent": 0,
    "disk_warn_free_mb": 0,
    "disk_refuse_free_percent": 0,
    "disk_refuse_free_mb": 0,
}
WARN_ONLY: dict[str, float] = {**NEVER, "disk_warn_free_percent": 100}
REFUSE: dict[str, float] = {**NEVER, "disk_warn_free_percent": 100, "disk_refuse_free_percent": 100}


@pytest.fixture
def disk_levels() -> dict[str, float]:
    return REFUSE


@pytest.fixture
def settings(tmp_path: Path, database_url: str, disk_levels: dict[str, float]) -> Settings:
    return make_settings(tmp_path / "data", database_url, ops=OpsSettings(**disk_levels))


def test_a_disk_reaches_a_level_by_percent_or_by_size_whichever_comes_first() -> None:
    limits = DiskLimits(warn_free_percent=10, warn_free_bytes=2000, refuse_free_percent=5, refuse_free_bytes=1000)
    assert limits.level(free_bytes=5000, free_percent=50) == "ok"
    assert limits.level(free_bytes=1500, free_percent=50) == "warn"  # a big disk: by size
    assert limits.level(free_bytes=10**12, free_percent=8) == "warn"  # a small one: by share
    assert limits.level(free_bytes=999, free_percent=50) == "refuse"
    assert limits.level(free_bytes=10**12, free_percent=4.9) == "refuse"


def test_a_folder_not_made_yet_is_measured_on_the_disk_it_will_be_on(tmp_path: Path) -> None:
    missing = tmp_path / "spool" / "not" / "yet"
    assert existing_ancestor(missing) == tmp_path
    (reading,) = read_disks({"spool": missing}, DiskLimits(0, 0, 0, 0))
    assert reading.total_bytes > 0 and reading.free_bytes > 0 and reading.level == "ok"


async def _notice(admin: ApiClient, runtime: Runtime) -> int:
    tree = await seed_tree(runtime)
    notice = await admin.post_json(
        "/api/v1/notices",
        {"kind": "service", "title": "开会通知", "body": "今晚七点开会。", "township_id": tree.township_ids[0]},
        expect=201,
    )
    return int(notice["id"])


async def test_below_the_refusal_level_an_upload_and_an_approval_are_refused_in_chinese_and_nothing_is_kept(
    runtime: Runtime, admin: ApiClient, new_client: ClientFactory, make_user: UserFactory
) -> None:
    notice_id = await _notice(admin, runtime)
    form = FormData()
    form.add_field("recording", io.BytesIO(b"RIFF" + bytes(4000)), filename="a.wav", content_type="audio/wav")
    response = await admin.post(f"/api/v1/notices/{notice_id}/recording", data=form)
    assert response.status == 507
    error = (await response.json())["error"]
    assert error["code"] == "disk.full"
    assert "磁盘空间不足" in error["message"] and "上传录音" in error["message"] and "热线录音" in error["message"]
    uploads = runtime.broadcasting.notices.recordings_dir
    assert not uploads.exists() or not any(uploads.iterdir())

    await admin.post_json(f"/api/v1/notices/{notice_id}/submit", None)
    approver = await (await new_client()).login(*await make_user("approver", county_wide=True))
    response = await approver.post(f"/api/v1/notices/{notice_id}/approve", {})
    assert response.status == 507
    assert "审核通过通知" in (await response.json())["error"]["message"]
    assert (await approver.get_json(f"/api/v1/notices/{notice_id}"))["state"] == "pending"


async def test_below_the_refusal_level_the_health_state_is_down_and_the_admins_are_told(admin: ApiClient) -> None:
    health = await admin.get_json("/healthz")
    disk = health["components"]["disk"]
    assert disk["status"] == "down" and health["status"] == "down"
    assert set(disk["folders"]) == {"data", "recordings", "spool", "uploads", "audio"}
    assert all(folder["level"] == "refuse" for folder in disk["folders"].values())
    home = await (await admin.get("/")).text()
    assert "磁盘空间不足" in home and "已暂停上传录音和审核通过通知" in home


@pytest.mark.parametrize("disk_levels", [WARN_ONLY])
async def test_below_the_warning_level_admins_are_warned_and_uploads_still_go(
    runtime: Runtime, admin: ApiClient, new_client: ClientFactory, make_user: UserFactory
) -> None:
    health = await admin.get_json("/healthz")
    assert health["components"]["disk"]["status"] == "degraded"
    home = await (await admin.get("/")).text()
    assert "磁盘空间不足" in home and "已暂停" not in home
    # Not an admin's business: a clerk's home page says nothing of disks.
    clerk = await (await new_client()).login(*await make_user("staff", county_wide=True))
    assert "磁盘" not in await (await clerk.get("/")).text()
    runtime.ops.disk.require_room("上传录音")  # does not raise


@pytest.mark.parametrize("disk_levels", [NEVER])
async def test_with_enough_space_the_disk_is_ok_and_nothing_is_said(admin: ApiClient) -> None:
    health = await admin.get_json("/healthz")
    assert health["components"]["disk"]["status"] == "ok"
    assert "磁盘" not in await (await admin.get("/")).text()


async def test_a_measurement_that_hangs_is_reported_and_not_started_again_while_it_hangs(tmp_path: Path) -> None:
    """A dead network mount hangs statvfs: the watch says so, and does not pile up threads behind it."""
    release = threading.Event()
    started: list[int] = []

    def hanging_read(watched: Mapping[str, Path], limits: DiskLimits) -> list[DiskReading]:
        started.append(1)
        release.wait(30)
        return read_disks(watched, limits)

    watch = DiskWatch(
        {"data": tmp_path}, DiskLimits(0, 0, 0, 0), interval_s=60, clock=SystemClock(),
        answer_within_s=0.2, read=hanging_read,
    )  # fmt: skip
    await watch.measure()
    await watch.measure()
    hung = watch.health.as_dict()
    assert hung["status"] == "degraded" and "has not answered" in hung["detail"]
    assert len(started) == 1 and watch.readings == []
    release.set()
    await watch.measure()  # the same measurement, now answered
    answered = watch.health.as_dict()
    assert answered["status"] == "ok" and len(started) == 1 and watch.readings[0].name == "data"
