"""A pending notice's preview is the audio that airs: the cache keeps it until the decision.

The approver listens to the files the author heard, and approval keeps exactly those files (no second render);
so an eviction between submitting and deciding must not take them, while a draft's preview is fair game.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broadcast.notices import NoticeInput
from server import Runtime
from settings import Settings
from tests.support.broadcasting import broadcasting_settings, build_place, make_principal

pytestmark = pytest.mark.slow  # renders real speech (espeak-ng, ffmpeg)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return broadcasting_settings(tmp_path / "data", database_url)


async def test_a_pending_notices_preview_survives_eviction_and_is_what_approval_keeps(runtime: Runtime) -> None:
    admin = await make_principal(runtime, "admin", "admin", county_wide=True)
    place = await build_place(runtime, admin, "甲乡", [[("sink", "file:a")]])
    staff = await make_principal(runtime, "staff", "staff", township_ids=[place.township_id])
    approver = await make_principal(runtime, "approver", "approver", township_ids=[place.township_id])
    notices = runtime.broadcasting.notices
    cache = runtime.speech.cache

    async def previewed(title: str, body: str) -> tuple[int, dict[str, str]]:
        notice = await notices.create(
            staff,
            NoticeInput(kind="disclosure_village", title=title, body=body, township_id=place.township_id, repeats=1),
        )
        notice = await notices.preview(staff, notice.id)
        assert notice.audio_keys is not None
        return notice.id, dict(notice.audio_keys)

    pending_id, pending_keys = await previewed("村民代表会议", "今天下午三点在村委会召开村民代表会议。")
    _draft_id, draft_keys = await previewed("打扫卫生", "明天上午全村打扫卫生。")
    await notices.submit(staff, pending_id)

    cache.max_bytes = 1  # everything not in use must go
    await cache.evict()

    assert all(cache.get(key, touch=False) is not None for key in pending_keys.values())
    assert all(cache.get(key, touch=False) is None for key in draft_keys.values())  # eviction did run

    approved = await notices.approve(approver, pending_id)
    assert approved.audio_keys == pending_keys  # approval kept the heard files, rendered nothing again
