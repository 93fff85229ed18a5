"""A full audio cache never deletes what is about to air: kept audio is never evicted, an ordinary approval is
refused with the space needed (and /healthz and the admins' 待办 say so), an emergency is kept over the limit and
plays at once, and the speaker test renders its audio again if it went missing — counted at RTP receivers.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from server import Runtime
from settings import Settings
from storage.models import RUN_SUCCESS, Notice
from tests.conftest import ClientFactory, UserFactory
from tests.support.broadcasting import (
    FAST_AUDIO,
    SPEAKER_TEST_TEXT,
    broadcasting_settings,
    build_place,
    make_principal,
    wait_for_rows,
)
from tests.support.http import ApiClient
from tests.support.receivers import RtpReceiver, item_payloads

pytestmark = pytest.mark.slow

BODIES = [
    "本村今年第三季度集体收入合计十二万五千元，支出八万三千元，明细张贴在村务公开栏。",
    "请各户在本月底前缴纳新农合医疗保险费，每人三百八十元，可到村委会或用手机缴纳。",
    "村东头的水渠下周一开始清淤，施工期间请不要在渠边停放车辆，注意安全。",
    "秋季防火期已到，严禁在田间地头焚烧秸秆，发现火情请立即拨打报警电话。",
    "村里组织免费体检，六十五岁以上老人请带身份证到卫生室登记。",
    "请大家爱护村里新装的路灯和健身器材，发现损坏请告诉村委会。",
]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # A 1 MB cache: a few approved notices, read fast and without the chime, fill it.
    return broadcasting_settings(
        tmp_path / "data", database_url, audio=FAST_AUDIO.model_copy(update={"cache_max_mb": 1})
    )


async def _writer_and_approver(new_client: ClientFactory, make_user: UserFactory, township: int) -> tuple[Any, Any]:
    staff = await (await new_client()).login(*await make_user("staff", township_ids=[township]))
    approver = await (await new_client()).login(*await make_user("approver", township_ids=[township]))
    return staff, approver


def _files_present(runtime: Runtime, keys: dict[str, str]) -> bool:
    return all(runtime.speech.cache.get(key, touch=False) is not None for key in keys.values())


async def test_a_full_cache_refuses_an_approval_with_the_space_needed_keeps_what_airs_and_plays_an_emergency_at_once(
    runtime: Runtime,
    server: TestServer,
    new_client: ClientFactory,
    make_user: UserFactory,
    admin: ApiClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    principal = await make_principal(runtime, "cache-admin", "admin", county_wide=True, can_emergency=True)
    with RtpReceiver() as speaker:
        place = await build_place(runtime, principal, "甲乡", [[("rtp", speaker.address)]])
        staff, approver = await _writer_and_approver(new_client, make_user, place.township_id)
        approved: list[dict[str, Any]] = []
        refusal: dict[str, Any] | None = None
        refused_id = 0
        for index, body in enumerate(BODIES):
            notice = await staff.post_json(
                "/api/v1/notices",
                {"kind": "disclosure_village", "title": f"公开{index}", "body": body, "township_id": place.township_id},
                expect=201,
            )
            await staff.post_json(f"/api/v1/notices/{notice['id']}/submit", {})
            response = await approver.post(f"/api/v1/notices/{notice['id']}/approve", json={})
            answer = await response.json()
            if response.status == 409:
                refusal, refused_id = answer, notice["id"]
                break
            assert response.status == 200, answer
            approved.append(answer)
        assert refusal is not None and approved, "the cache never filled up"
        # Refused with what is needed, in Chinese; the notice waits, unapproved, without audio.
        assert refusal["error"]["code"] == "audio.cache_full"
        message = refusal["error"]["message"]
        assert message.startswith("音频缓存已满") and "还需要腾出约" in message and "MB" in message
        waiting = await staff.get_json(f"/api/v1/notices/{refused_id}")
        assert (waiting["state"], waiting["has_audio"]) == ("pending", False)
        # Every approved notice's audio is still there: nothing that must be kept was evicted.
        async with runtime.sessions() as session:
            for notice_json in approved:
                notice = await session.get(Notice, notice_json["id"])
                assert notice is not None and notice.audio_keys is not None
                assert _files_present(runtime, notice.audio_keys)
        # /healthz and the admins' 待办 say the cache is full.
        async with (await new_client()).client.get("/healthz") as health_response:
            anonymous = (await health_response.json())["components"]["audio_cache"]
        assert anonymous == {"status": "degraded"}  # anyone sees the state; the figures are for admins
        health = (await admin.get_json("/healthz"))["components"]["audio_cache"]
        assert health["status"] == "degraded" and health["full"] is True and "needed_mb" in health
        home = await (await admin.get("/")).text()
        assert "音频缓存已满" in home

        # An emergency is never refused for space: it is kept over the limit, and plays at once, once.
        with caplog.at_level(logging.WARNING, logger="broadcast.notices"):
            chief = await (await new_client()).login(*await make_user("leader", county_wide=True, can_emergency=True))
            await chief.post_json(
                "/api/v1/emergency",
                {"title": "大风蓝色预警", "body": BODIES[0], "zone_ids": [place.zone_ids[0]], "confirm": True},
                expect=202,
            )
            rows = await wait_for_rows(runtime, lambda rows: rows and rows[-1].state == RUN_SUCCESS, timeout=60)
        assert not [record for record in caplog.records if "rendering it again" in record.getMessage()]
        async with runtime.sessions() as session:
            alert = await session.get(Notice, rows[-1].notice_id)
            assert alert is not None and alert.audio_keys is not None
        assert _files_present(runtime, alert.audio_keys)
        entry = runtime.speech.cache.get(alert.audio_keys["rtp"])
        assert entry is not None
        assert speaker.plays(item_payloads(entry.path)) == ["full"]
        usage = await runtime.speech.cache.usage(fresh=True)
        assert usage.overflow_bytes > 0  # kept over the limit
        health = await runtime.speech.cache.health()
        assert health["status"] == "degraded" and health["full"] is True


async def test_the_speaker_test_renders_its_audio_again_when_it_went_missing_and_still_plays(
    runtime: Runtime, server: TestServer, admin: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    principal = await make_principal(runtime, "test-admin", "admin", county_wide=True)
    with RtpReceiver() as speaker:
        place = await build_place(runtime, principal, "乙镇", [[("rtp", speaker.address)]])
        producer = runtime.broadcasting.producer
        real_render = producer.render_text
        renders = 0

        async def evicted_by_another_process(*args: Any, **kwargs: Any) -> Any:
            # Another process's eviction (it does not see this process's keep sets) takes the files at once.
            nonlocal renders
            renders += 1
            result = await real_render(*args, **kwargs)
            if renders == 1:
                for key in result.keys.values():
                    shutil.rmtree(runtime.speech.cache.entry_dir(key), ignore_errors=True)
            return result

        monkeypatch.setattr(producer, "render_text", evicted_by_another_process)
        (speaker_id,) = place.speaker_ids
        result = await admin.post_json(f"/api/v1/speakers/{speaker_id}/test", {"text": SPEAKER_TEST_TEXT})
        assert (result["state"], result["state_label"]) == (RUN_SUCCESS, "成功")
        assert renders == 2  # rendered again, not a 500
        await speaker.until(lambda receiver: len(receiver.packets) >= result["packets_sent"] > 50, timeout=10)
        assert len(speaker.runs()) == 1 and len(speaker.packets) == result["packets_sent"]
