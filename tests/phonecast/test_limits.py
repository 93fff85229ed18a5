"""What the desk refuses on the way to the air: an item past the length cap (rendered for real, refused before
anything is encoded), and a full disk (the disk watch's refusal, translated at the boundary in server.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from common.errors import InsufficientStorage
from hotline.phonecast import SubmitStatus
from phonecast.desk import PhoneAirRefused
from server import PhoneAirer, Runtime
from settings import AudioSettings, Settings
from storage.audit import Actor
from tests.phonecast.helpers import make_cadre, record_of, tone_wav
from tests.support.broadcasting import broadcasting_settings, build_place, make_principal


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # A cap of four seconds: a five-second recording (with its chime and pauses) is past it.
    return broadcasting_settings(tmp_path / "data", database_url, audio=AudioSettings(default_repeats=1, max_item_s=4))


@pytest.mark.slow
async def test_a_recording_past_the_item_length_cap_is_refused_as_too_long_and_nothing_is_queued(
    runtime: Runtime, tmp_path: Path
) -> None:
    admin = await make_principal(runtime, "pc-admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:a")]])
    cadre = await make_cadre(runtime, admin, "cadre", "13800001111", villages=[place.village_id])
    target = (await runtime.phonecast.desk.targets(cadre)).villages[0]
    result = await runtime.phonecast.desk.submit(
        cadre, "13800001111", target, tone_wav(tmp_path / "long.wav", 5.0), call_id="too-long"
    )
    assert (result.status, result.reason) == (SubmitStatus.REFUSED, "too_long")
    row = await record_of(runtime, result.record_id or 0)
    assert row.broadcast_id is None and row.notice_id is None


async def test_a_full_disk_is_refused_as_disk_full(tmp_path: Path) -> None:
    class FullDisk:
        async def create_phone_recording(self, *_args: Any, **_kwargs: Any) -> Any:
            raise InsufficientStorage("服务器磁盘空间不足", code="disk.full", detail="recordings at 0.5% free")

    airer = PhoneAirer(SimpleNamespace(notices=FullDisk(), dispatcher=None))  # type: ignore[arg-type]
    with pytest.raises(PhoneAirRefused) as refused:
        await airer.make_item(
            Actor(user_id=1, username="cadre"), title="t", township_id=None, recording=tmp_path / "x.wav", repeats=1
        )
    assert refused.value.reason == "disk_full"
