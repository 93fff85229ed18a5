"""An uploaded recording is checked before it is kept: not audio or too long is refused and nothing stays behind."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
from pathlib import Path

import pytest
from aiohttp import FormData

from server import Runtime
from settings import AudioSettings, Settings
from storage.models import Notice
from tests.conftest import make_settings
from tests.foundation.seed import seed_tree
from tests.support.http import ApiClient

pytestmark = pytest.mark.slow

MAX_RECORDING_S = 60


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "data", database_url, audio=AudioSettings(max_recording_s=MAX_RECORDING_S))


def ffmpeg(*args: str, out: Path) -> bytes:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, str(out)], check=True)
    return out.read_bytes()


def tone(seconds: float, out: Path, *extra: str) -> bytes:
    return ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-ac", "1", *extra, out=out)


def browser_webm(seconds: float, directory: Path) -> bytes:
    """Opus in WebM written as a stream, as MediaRecorder does: the container does not say how long it is."""
    produced = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:a", "libopus", "-f", "webm", "pipe:1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return produced.stdout


async def upload(client: ApiClient, notice_id: int, data: bytes, filename: str) -> tuple[int, dict[str, object]]:
    form = FormData()
    form.add_field("recording", io.BytesIO(data), filename=filename, content_type="application/octet-stream")
    response = await client.post(f"/api/v1/notices/{notice_id}/recording", data=form)
    return response.status, await response.json()


async def new_notice(runtime: Runtime, admin: ApiClient) -> int:
    tree = await seed_tree(runtime)
    notice = await admin.post_json(
        "/api/v1/notices",
        {"kind": "service", "title": "开会通知", "body": "今晚七点开会。", "township_id": tree.township_ids[0]},
        expect=201,
    )
    return int(notice["id"])


def kept_files(runtime: Runtime) -> list[str]:
    directory = runtime.broadcasting.notices.recordings_dir
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


async def source_of(runtime: Runtime, notice_id: int) -> str:
    async with runtime.sessions() as session:
        notice = await session.get(Notice, notice_id)
        assert notice is not None
        return notice.source


async def test_a_pdf_or_a_program_renamed_wav_is_refused_and_nothing_is_kept(
    runtime: Runtime, admin: ApiClient
) -> None:
    notice_id = await new_notice(runtime, admin)
    pdf = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n" * 50
    elf = await asyncio.to_thread(Path("/bin/true").read_bytes)
    for data, name in ((pdf, "notice.wav"), (elf, "speech.mp3")):
        status, body = await upload(admin, notice_id, data, name)
        assert status == 400, body
        error = body["error"]
        assert isinstance(error, dict) and error["fields"] == {"recording": "不是录音文件"}
        assert "没有可以播放的声音" in error["message"]
    assert kept_files(runtime) == []
    assert await source_of(runtime, notice_id) == "tts"


async def test_a_recording_longer_than_allowed_is_refused_whether_or_not_it_says_how_long(
    runtime: Runtime, admin: ApiClient, tmp_path: Path
) -> None:
    notice_id = await new_notice(runtime, admin)
    three_hours = ffmpeg(
        "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "10800", "-b:a", "8k", out=tmp_path / "long.mp3"
    )
    status, body = await upload(admin, notice_id, three_hours, "meeting.mp3")
    assert status == 400 and body["error"]["fields"] == {"recording": "太长"}  # type: ignore[index]
    status, body = await upload(admin, notice_id, browser_webm(MAX_RECORDING_S + 30, tmp_path), "recording.webm")
    assert status == 400 and body["error"]["fields"] == {"recording": "太长"}  # type: ignore[index]
    assert kept_files(runtime) == []
    # A short one from the browser is taken.
    status, body = await upload(admin, notice_id, browser_webm(3, tmp_path), "recording.webm")
    assert status == 200, body
    assert body["source"] == "recording"
    assert len(kept_files(runtime)) == 1


async def test_recordings_no_notice_uses_are_swept_and_call_recordings_never(
    runtime: Runtime, admin: ApiClient, tmp_path: Path
) -> None:
    notice_id = await new_notice(runtime, admin)
    notices = runtime.broadcasting.notices
    assert (await upload(admin, notice_id, tone(2, tmp_path / "first.wav"), "first.wav"))[0] == 200
    [first] = kept_files(runtime)
    assert (await upload(admin, notice_id, tone(3, tmp_path / "second.wav"), "second.wav"))[0] == 200
    # A call recording of the hotline shares the directory (by default), in its dated folders.
    call = notices.recordings_dir / "2026" / "11" / "call.wav"
    call.parent.mkdir(parents=True)
    call.write_bytes(b"RIFF")
    half_done = notices.recordings_dir / ".upload-0123abcd.wav"
    half_done.write_bytes(b"RIFF")
    assert first in kept_files(runtime)  # younger than the grace period: its notice might be committing
    removed = await notices.sweep_recordings(grace_s=0)
    assert sorted(removed) == sorted([first, half_done.name])
    async with runtime.sessions() as session:
        notice = await session.get(Notice, notice_id)
    assert notice is not None and notice.recording_file in kept_files(runtime)
    assert call.exists()
    # Replaced once more: the one replaced goes at the next upload once it is an hour old, the one in use stays.
    old = notices.recordings_dir / str(notice.recording_file)
    os.utime(old, (0, 0))
    assert (await upload(admin, notice_id, tone(4, tmp_path / "third.wav"), "third.wav"))[0] == 200
    assert not old.exists() and call.exists()
    assert len(kept_files(runtime)) == 2  # the third recording and the hotline's dated folder
