"""Recording replay: HTTP Range byte for byte against the file, 416 and malformed ranges, ids not paths, the audit."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from server import Runtime
from storage.models import AuditEntry, Recording
from tests.cases.conftest import CaseMaker, County, People


async def recording_of(runtime: Runtime, case_id: int) -> tuple[Recording, bytes]:
    async with runtime.sessions() as session:
        recording = await session.scalar(select(Recording).where(Recording.case_id == case_id))
    assert recording is not None
    return recording, runtime.hotline.store.path_of(recording.path).read_bytes()


async def plays(runtime: Runtime) -> list[AuditEntry]:
    async with runtime.sessions() as session:
        statement = select(AuditEntry).where(AuditEntry.action.like("recording.%")).order_by(AuditEntry.id)
        return list((await session.scalars(statement)).all())


@pytest.fixture
async def recorded(county: County, hotline_case: CaseMaker) -> Any:
    return await hotline_case(township_id=county.township_a, seconds=7.3)


async def test_ranges_come_back_byte_for_byte_with_the_right_content_range(
    runtime: Runtime, people: People, recorded: Any
) -> None:
    recording, data = await recording_of(runtime, recorded.id)
    url = f"/api/v1/cases/{recorded.id}/recordings/{recording.id}/audio"
    client = people.operator_a.client
    whole = await client.get(url)
    assert whole.status == 200 and await whole.read() == data
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.headers["Content-Type"] == "audio/wav"
    assert whole.headers["Cache-Control"] == "private, no-store"
    size = len(data)
    for header, start, end in [
        ("bytes=0-0", 0, 0),
        ("bytes=0-1023", 0, 1023),
        ("bytes=44-", 44, size - 1),
        (f"bytes={size // 2}-{size // 2 + 4999}", size // 2, size // 2 + 4999),
        ("bytes=-500", size - 500, size - 1),
        (f"bytes={size - 1}-", size - 1, size - 1),
        (f"bytes=100-{size + 10_000}", 100, size - 1),  # an end past the file is cut at the file's end
    ]:
        response = await client.get(url, headers={"Range": header})
        body = await response.read()
        assert response.status == 206, header
        assert response.headers["Content-Range"] == f"bytes {start}-{end}/{size}", header
        assert int(response.headers["Content-Length"]) == end - start + 1 == len(body), header
        assert body == data[start : end + 1], header


async def test_a_range_past_the_end_is_416_and_a_malformed_one_is_refused_cleanly(
    runtime: Runtime, people: People, recorded: Any
) -> None:
    recording, data = await recording_of(runtime, recorded.id)
    url = f"/api/v1/cases/{recorded.id}/recordings/{recording.id}/audio"
    client = people.operator_a.client
    for header in (f"bytes={len(data)}-", f"bytes={len(data) + 5}-{len(data) + 9}"):
        response = await client.get(url, headers={"Range": header})
        assert response.status == 416, header
        assert response.headers["Content-Range"] == f"bytes */{len(data)}"
    for header in ("bytes=9-3", "bytes=abc", "items=0-10", "bytes=0-1,5-9", "bytes=-", "bytes=--5"):
        response = await client.get(url, headers={"Range": header})
        assert response.status == 416, header
        assert response.headers["Content-Range"] == f"bytes */{len(data)}"
        assert await response.read() == b""


async def test_recordings_are_reached_only_through_their_own_case_and_never_by_a_path(
    runtime: Runtime, county: County, people: People, recorded: Any, hotline_case: CaseMaker
) -> None:
    recording, _data = await recording_of(runtime, recorded.id)
    other = await hotline_case(township_id=county.township_b)
    other_recording, _ = await recording_of(runtime, other.id)
    client = people.operator_a.client
    assert (await client.get(f"/api/v1/cases/{recorded.id}/recordings/{recording.id}/audio")).status == 200
    # Another township's recording: not through its own case (out of scope), nor through ours.
    assert (await client.get(f"/api/v1/cases/{other.id}/recordings/{other_recording.id}/audio")).status == 404
    assert (await client.get(f"/api/v1/cases/{recorded.id}/recordings/{other_recording.id}/audio")).status == 404
    for path in (
        f"/api/v1/cases/{recorded.id}/recordings/..%2F..%2Fetc%2Fpasswd/audio",
        f"/api/v1/cases/{recorded.id}/recordings/../../etc/passwd/audio",
        "/api/v1/cases/../../etc/passwd",
        f"/api/v1/cases/{recorded.id}/recordings/{recording.path}/audio",
        f"/api/v1/cases/{recorded.id}/recordings/-1/audio",
    ):
        response = await client.client.get(path, allow_redirects=False)
        assert response.status == 404, path
        assert b"root:" not in await response.read()


async def test_every_play_is_logged_and_only_some_roles_may_download(
    runtime: Runtime, people: People, recorded: Any
) -> None:
    recording, data = await recording_of(runtime, recorded.id)
    url = f"/api/v1/cases/{recorded.id}/recordings/{recording.id}/audio"
    leader, operator = people.leader.client, people.operator_a.client
    await leader.get(url, headers={"Range": "bytes=0-"})
    await leader.get(url, headers={"Range": "bytes=5000-"})  # a seek within the same play
    await operator.get(url)
    refused = await leader.get(url + "?download=true")
    assert refused.status == 403
    download = await operator.get(url + "?download=true")
    assert download.status == 200 and await download.read() == data
    assert download.headers["Content-Disposition"].startswith("attachment;")
    logged = [(entry.username, entry.action, entry.detail["range"]) for entry in await plays(runtime)]
    assert logged == [
        (people.leader.username, "recording.play", "bytes=0-"),
        (people.operator_a.username, "recording.play", ""),
        (people.operator_a.username, "recording.download", ""),
    ]


async def test_a_sealed_recording_plays_only_for_inspectors_and_every_request_is_logged(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    sealed = await hotline_case(township_id=county.township_a, category="discipline")
    recording, data = await recording_of(runtime, sealed.id)
    url = f"/api/v1/cases/{sealed.id}/recordings/{recording.id}/audio"
    assert (await people.operator_county.client.get(url)).status == 404
    inspector = people.inspector.client
    first = await inspector.get(url, headers={"Range": "bytes=0-99"})
    assert first.status == 206 and await first.read() == data[:100]
    await inspector.get(url, headers={"Range": "bytes=1000-1999"})
    logged = [(entry.username, entry.action) for entry in await plays(runtime)]
    assert logged == [(people.inspector.username, "recording.play_sealed")] * 2
    await runtime.cases.access.denials.flush()  # refusals are written by their own queue
    async with runtime.sessions() as session:
        denied = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "case.sealed_denied"))).all()
    assert [(entry.username, entry.detail["recording_id"]) for entry in denied] == [
        (people.operator_county.username, recording.id)
    ]


async def test_the_case_page_carries_a_player_with_seek_skip_speed_and_download(
    runtime: Runtime, people: People, recorded: Any
) -> None:
    recording, _ = await recording_of(runtime, recorded.id)
    html = await (await people.operator_a.client.get(f"/cases/{recorded.id}")).text()
    assert f'data-src="/api/v1/cases/{recorded.id}/recordings/{recording.id}/audio"' in html
    for control in ('class="seek"', "后退10秒", "前进10秒", '<option value="0.75">', '<option value="1.25">', "下载"):
        assert control in html, control
    assert '<script src="/static/cases.js" defer></script>' in html
    leader_page = await (await people.leader.client.get(f"/cases/{recorded.id}")).text()
    assert "下载</a>" not in leader_page


async def test_the_players_listening_is_one_play_whatever_it_asks_for_and_a_new_listening_is_another(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    sealed = await hotline_case(township_id=county.township_a, category="discipline")
    plain = await hotline_case(township_id=county.township_a)
    for case, person, action in ((plain, people.operator_a, "recording.play"),
                                 (sealed, people.inspector, "recording.play_sealed")):  # fmt: skip
        recording, _ = await recording_of(runtime, case.id)
        url = f"/api/v1/cases/{case.id}/recordings/{recording.id}/audio"
        for listening, ranges in (("first-listening", ("0-", "0-", "5000-", "100-")), ("second-listening", ("0-",))):
            for asked in ranges:
                response = await person.client.get(f"{url}?listening={listening}", headers={"Range": f"bytes={asked}"})
                assert response.status == 206
        logged = [entry for entry in await plays(runtime) if entry.detail.get("case_id") == case.id]
        assert [(entry.action, entry.detail["listening"]) for entry in logged] == [
            (action, "first-listening"),
            (action, "second-listening"),
        ]
    refused = await people.operator_a.client.get(f"{url}?listening=../../x")
    assert refused.status == 400
