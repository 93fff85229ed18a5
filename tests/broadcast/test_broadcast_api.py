"""Notices, approval, schedules and the 4G terminal protocol over real HTTP, with the real worker running."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, FormData
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from server import Runtime
from settings import Settings
from storage.models import (
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_SUCCESS,
    Broadcast,
    Notice,
    Schedule,
    Speaker,
    ZoneBroadcastSettings,
)
from tests.broadcast.test_rtp import Listener
from tests.conftest import BOTH_DATABASES, ClientFactory, UserFactory
from tests.support.broadcasting import (
    approved_notice,
    broadcasting_settings,
    build_place,
    make_principal,
    speaker_rows,
    wait_for_rows,
)
from tests.support.http import ApiClient
from tests.support.receivers import RtpReceiver, item_payloads
from tests.support.speech import espeak_wav

pytestmark = pytest.mark.slow

ID_NUMBER_BODY = "李某某，三组，家庭人口1人，身份证号150125195803121235。"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, request: pytest.FixtureRequest) -> Settings:
    """The broadcasting test settings; a test may change ``broadcast`` fields by indirect parametrization."""
    broadcast: dict[str, Any] = getattr(request, "param", {})
    values = broadcasting_settings(tmp_path / "data", database_url)
    if broadcast:
        values = values.model_copy(update={"broadcast": values.broadcast.model_copy(update=broadcast)})
    return values


async def _tree(runtime: Runtime) -> dict[str, Any]:
    admin = await make_principal(runtime, "tree-admin", "admin", county_wide=True)
    areas = runtime.areas
    county = await areas.create_county(admin, name="测试县")
    result: dict[str, Any] = {"townships": [], "zones": [], "tokens": {}}
    # Quiet hours that certainly do not cover the next two hours, whenever the tests run.
    local = runtime.clock.now().astimezone(runtime.settings.zone)
    quiet_start = (local + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    quiet_end = (local + timedelta(hours=3)).time().replace(second=0, microsecond=0)
    result["quiet_slot"] = (local + timedelta(hours=2, minutes=30)).strftime("%H:%M")
    for name in ("甲乡", "乙镇"):
        township = await areas.create_township(
            admin, county_id=county.id, name=name, quiet_start=quiet_start, quiet_end=quiet_end
        )
        village = await areas.create_village(admin, township_id=township.id, name=f"{name}一村")
        zone = await areas.create_zone(admin, village_id=village.id, name="广场")
        await areas.create_speaker(admin, zone_id=zone.id, name="广播室", transport="sink", address=f"file:{zone.id}")
        _speaker, token = await areas.create_speaker(
            admin, zone_id=zone.id, name="4G音箱", transport="http", address=f"t{zone.id:05d}"
        )
        result["townships"].append(township.id)
        result["zones"].append(zone.id)
        result["tokens"][zone.id] = token
        result.setdefault("villages", []).append(village.id)
    return result


async def _people(
    runtime: Runtime, new_client: ClientFactory, make_user: UserFactory, township_id: int
) -> tuple[ApiClient, ApiClient, ApiClient]:
    staff = await (await new_client()).login(*await make_user("staff", township_ids=[township_id]))
    approver = await (await new_client()).login(*await make_user("approver", township_ids=[township_id]))
    both = await (await new_client()).login(*await make_user("staff", "approver", township_ids=[township_id]))
    return staff, approver, both


async def _approved(staff: ApiClient, approver: ApiClient, township_id: int, **overrides: Any) -> dict[str, Any]:
    body = {"kind": "disclosure_finance", "title": "财务公开", "body": "本月收入合计12.5万元。", "repeats": 1}
    body.update(township_id=township_id, **overrides)
    notice = await staff.post_json("/api/v1/notices", body, expect=201)
    await staff.post_json(f"/api/v1/notices/{notice['id']}/submit", {})
    approved: dict[str, Any] = await approver.post_json(f"/api/v1/notices/{notice['id']}/approve", {})
    return approved


@pytest.mark.parametrize("db_kind", BOTH_DATABASES)
async def test_a_notice_is_approved_only_by_someone_else_and_an_edit_sends_it_back_for_approval(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory
) -> None:
    tree = await _tree(runtime)
    staff, approver, both = await _people(runtime, new_client, make_user, tree["townships"][0])
    own = await both.post_json(
        "/api/v1/notices", {"kind": "service", "title": "医保缴费提醒", "township_id": tree["townships"][0]}, 201
    )
    await both.post_json(f"/api/v1/notices/{own['id']}/submit", {})
    refused = await both.post_json(f"/api/v1/notices/{own['id']}/approve", {}, expect=403)
    assert refused["error"]["code"] == "notice.own_approval"
    assert "不能审核自己写的通知" in refused["error"]["message"]
    assert (await both.get_json(f"/api/v1/notices/{own['id']}"))["state"] == "pending"

    approved = await _approved(staff, approver, tree["townships"][0])
    assert approved["state"] == "approved" and approved["has_audio"]
    assert approved["audio_duration_s"] > 1
    preview = await staff.get(f"/api/v1/notices/{approved['id']}/audio.mp3")
    assert preview.status == 200 and preview.headers["Content-Type"] == "audio/mpeg"
    assert (await preview.read())[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")

    edited = await staff.client.put(
        f"/api/v1/notices/{approved['id']}",
        json={"kind": "disclosure_finance", "title": "财务公开（更正）", "township_id": tree["townships"][0]},
    )
    body = await edited.json()
    assert edited.status == 200, body
    assert body["state"] == "pending" and not body["has_audio"] and body["revision"] == 2


async def test_a_notice_with_an_id_number_is_refused_at_submit_masked_in_one_call_and_then_submitted(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory
) -> None:
    tree = await _tree(runtime)
    staff, approver, _both = await _people(runtime, new_client, make_user, tree["townships"][0])
    check = await staff.post_json("/api/v1/notices/check", {"title": "低保公示", "body": ID_NUMBER_BODY})
    assert check["blocking"] and check["findings"][0]["kind"] == "resident_id"
    assert "150125********1235" in check["masked_text"]
    # Where the number is read in the spoken form, so a page can mark it in place.
    found = check["findings"][0]
    assert check["spoken"][found["spoken_start"] : found["spoken_end"]].startswith("幺五零幺二五")
    body = {"kind": "disclosure_village", "title": "低保公示", "body": ID_NUMBER_BODY}
    notice = await staff.post_json("/api/v1/notices", {**body, "township_id": tree["townships"][0]}, 201)
    refused = await staff.post_json(f"/api/v1/notices/{notice['id']}/submit", {}, expect=409)
    assert refused["error"]["code"] == "notice.personal_numbers"
    assert "150125********1235" in refused["error"]["message"] and "一键隐去" in refused["error"]["message"]
    assert (await staff.get_json(f"/api/v1/notices/{notice['id']}"))["state"] == "draft"

    masked = await staff.post_json(f"/api/v1/notices/{notice['id']}/mask", {})
    assert "身份证号150125********1235" in masked["body"] and masked["revision"] == 2
    submitted = await staff.post_json(f"/api/v1/notices/{notice['id']}/submit", {})
    assert submitted["state"] == "pending"
    approved = await approver.post_json(f"/api/v1/notices/{notice['id']}/approve", {"revision": 2})
    assert approved["state"] == "approved" and approved["has_audio"]


async def test_a_pending_notice_that_still_carries_an_id_number_goes_back_to_its_author_with_the_reason(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory
) -> None:
    tree = await _tree(runtime)
    staff, approver, _both = await _people(runtime, new_client, make_user, tree["townships"][0])
    body = {"kind": "disclosure_village", "title": "低保公示", "body": "本月低保名单。"}
    notice = await staff.post_json("/api/v1/notices", {**body, "township_id": tree["townships"][0]}, 201)
    await staff.post_json(f"/api/v1/notices/{notice['id']}/submit", {})
    async with runtime.sessions.begin() as session:  # as a notice submitted before the submit check existed
        row = await session.get(Notice, notice["id"])
        assert row is not None
        row.body = ID_NUMBER_BODY
    refused = await approver.post_json(f"/api/v1/notices/{notice['id']}/approve", {}, expect=409)
    assert refused["error"]["code"] == "notice.personal_numbers" and "退回给作者" in refused["error"]["message"]
    after = await staff.get_json(f"/api/v1/notices/{notice['id']}")
    assert after["state"] == "rejected" and not after["has_audio"]
    assert "身份证号" in after["reject_reason"]


async def test_bad_schedules_each_get_a_clear_chinese_error_and_nothing_is_written(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory
) -> None:
    tree = await _tree(runtime)
    staff, approver, _both = await _people(runtime, new_client, make_user, tree["townships"][0])
    notice = await _approved(staff, approver, tree["townships"][0])
    own_zone = {"level": "zone", "id": tree["zones"][0]}
    past = (runtime.clock.now() - timedelta(hours=1)).isoformat()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "once", "once_at": past, "targets": [own_zone]}, "已经过去"),
        (
            {
                "kind": "daily",
                "times": ["07:00"],
                "start_date": "2099-05-02",
                "end_date": "2099-05-01",
                "targets": [own_zone],
            },
            "早于开始日期",
        ),
        ({"kind": "daily", "times": ["25:00"], "targets": [own_zone]}, "25:00"),
        ({"kind": "daily", "times": ["07:00"], "targets": []}, "至少选择一个播出对象"),
        ({"kind": "daily", "times": ["07:00"], "targets": [{"level": "zone", "id": tree["zones"][1]}]}, "不存在"),
        ({"kind": "daily", "times": [tree["quiet_slot"]], "targets": [own_zone]}, "静默时段"),
        ({"kind": "weekly", "times": ["07:00"], "weekdays": [], "targets": [own_zone]}, "星期几"),
    ]
    for fields, expected in cases:
        response = await staff.post("/api/v1/schedules", json={"notice_id": notice["id"], **fields})
        body = await response.json()
        assert response.status == 400, (fields, body)
        assert expected in body["error"]["message"], (fields, body)
    # A county-wide writer sees the other township's zone, and is told it is not this notice's township.
    county = await (await new_client()).login(*await make_user("staff", county_wide=True))
    response = await county.post(
        "/api/v1/schedules",
        json={"notice_id": notice["id"], "kind": "daily", "times": ["07:00"],
              "targets": [{"level": "zone", "id": tree["zones"][1]}]},
    )  # fmt: skip
    body = await response.json()
    assert response.status == 400 and "不属于这条通知所在的乡镇" in body["error"]["message"]
    # Nor may it be played there by hand (立即播出 follows the same rule as a schedule).
    played = await county.post(f"/api/v1/notices/{notice['id']}/play", json={"zone_ids": [tree["zones"][1]]})
    assert played.status == 400 and "不属于这条通知所在的乡镇" in (await played.json())["error"]["message"]
    async with runtime.sessions() as session:
        assert await session.scalar(select(func.count(Schedule.id))) == 0
        assert await session.scalar(select(func.count(Broadcast.id))) == 0


async def test_bad_rtp_addresses_and_multicast_groups_are_refused_in_chinese(
    runtime: Runtime, server: TestServer, admin: ApiClient
) -> None:
    tree = await _tree(runtime)
    not_an_address = await admin.post_json(
        "/api/v1/speakers",
        {"zone_id": tree["zones"][0], "name": "音柱", "transport": "rtp", "address": "speaker-one:5004"},
        expect=400,
    )
    assert "不是有效的IPv4地址" in not_an_address["error"]["message"]
    async with runtime.sessions() as session:  # nothing written
        assert await session.scalar(select(func.count(Speaker.id)).where(Speaker.transport == "rtp")) == 0
    outside = await admin.client.put(
        f"/api/v1/zones/{tree['zones'][0]}/broadcast", json={"rtp_group": "192.168.1.20:5004", "rtp_ttl": 4}
    )
    body = await outside.json()
    assert outside.status == 400 and "224.0.0.0/4" in body["error"]["message"]
    async with runtime.sessions() as session:
        assert await session.get(ZoneBroadcastSettings, tree["zones"][0]) is None
    inside = await admin.client.put(
        f"/api/v1/zones/{tree['zones'][0]}/broadcast", json={"rtp_group": "239.1.2.3:5004", "rtp_ttl": 4}
    )
    assert inside.status == 200


async def test_a_terminal_with_a_wrong_token_is_refused(runtime: Runtime, server: TestServer) -> None:
    await _tree(runtime)
    async with ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer not-the-token"}):
            async with http.get(server.make_url("/api/v1/terminal/now"), headers=headers) as response:
                body = await response.json()
                assert response.status == 401
                assert "令牌" in body["error"]["message"]


class Terminal:
    """A 4G loudspeaker as a vendor would build it, on a real HTTP client."""

    def __init__(self, http: ClientSession, server: TestServer, token: str) -> None:
        self.http = http
        self.server = server
        self.headers = {"Authorization": f"Bearer {token}"}

    async def now(self) -> dict[str, Any]:
        async with self.http.get(self.server.make_url("/api/v1/terminal/now"), headers=self.headers) as response:
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    async def wait_for_play(
        self,
        different_from: int | None = None,
        timeout: float = 30,  # noqa: ASYNC109 - a budget every test shares, applied with asyncio.timeout inside
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                answer = await self.now()
                play = answer["play"]
                if play is not None and play["play_id"] != different_from:
                    return dict(play)
                await asyncio.sleep(answer["poll_interval_s"])

    async def fetch(self, play: dict[str, Any]) -> bytes:
        async with self.http.get(self.server.make_url(play["audio_url"]), headers=self.headers) as response:
            assert response.status == 200 and response.headers["Content-Type"] == "audio/mpeg"
            return await response.read()

    async def report(self, play_id: int, event: str) -> int:
        async with self.http.post(
            self.server.make_url("/api/v1/terminal/report"),
            json={"play_id": play_id, "event": event},
            headers=self.headers,
        ) as response:
            return response.status


# The interrupted disclosure is not requeued here: a requeued attempt starting between the two reads of
# the as-run log below would change it under the test (requeueing has its own tests in test_dispatcher).
@pytest.mark.parametrize("settings", [{"requeue_interrupted": False}], indirect=True, ids=["no-requeue"])
async def test_a_4g_terminal_pulls_plays_and_reports_and_an_emergency_preempts_it_on_its_next_poll(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory
) -> None:
    tree = await _tree(runtime)
    zone = tree["zones"][0]
    listener = Listener()
    listener.attach()
    admin = await make_principal(runtime, "rtp-admin", "admin", county_wide=True)
    await runtime.areas.create_speaker(
        admin, zone_id=zone, name="音柱", transport="rtp", address=f"127.0.0.1:{listener.port}"
    )
    staff, approver, _both = await _people(runtime, new_client, make_user, tree["townships"][0])
    # Read fast (tests/support/broadcasting.py): long enough to be still on air on the RTP speaker while the
    # emergency is written, rendered and started, even on a loaded machine (about 12 s).
    notice = await _approved(staff, approver, tree["townships"][0], body="本月收入合计12.5万元。" * 8)
    chief = await (await new_client()).login(*await make_user("leader", county_wide=True, can_emergency=True))

    async with ClientSession() as http:
        terminal = Terminal(http, server, tree["tokens"][zone])
        assert (await terminal.now())["play"] is None
        await staff.post_json(f"/api/v1/notices/{notice['id']}/play", {"zone_ids": [zone]}, expect=202)
        disclosure = await terminal.wait_for_play()
        assert disclosure["title"] == "财务公开" and not disclosure["emergency"]
        assert len(await terminal.fetch(disclosure)) > 1000
        assert await terminal.report(disclosure["play_id"], "started") == 200

        await chief.post_json(
            "/api/v1/emergency",
            {"title": "森林草原防火紧急通知", "body": "严禁一切野外用火。", "zone_ids": [zone], "confirm": True},
            expect=202,
        )
        emergency = await terminal.wait_for_play(different_from=disclosure["play_id"])
        assert emergency["emergency"] and emergency["priority"] == 1
        # The interrupted item is over for the terminal: reporting on it is refused.
        assert await terminal.report(disclosure["play_id"], "finished") == 409
        await terminal.fetch(emergency)
        assert await terminal.report(emergency["play_id"], "started") == 200
        assert await terminal.report(emergency["play_id"], "finished") == 200

    rows = await wait_for_rows(
        runtime, lambda rows: any(r.kind == "emergency" and r.state == RUN_SUCCESS for r in rows), zone_id=zone
    )
    listener.close()
    # On the RTP speaker: the disclosure's stream stopped part-way, then the emergency's began (marker bit).
    streams: dict[int, list[Any]] = {}
    for packet in listener.packets:
        streams.setdefault(packet.ssrc, []).append(packet)
    first, second = list(streams.values())[:2]
    assert first[0].marker and second[0].marker
    assert first[-1].arrived <= second[0].arrived
    assert len(first) < notice["audio_duration_s"] / 0.020 - 10  # stopped, not played to its end
    by_kind = {row.kind: row for row in rows if row.attempt == 0}
    assert by_kind["disclosure_finance"].state == RUN_INTERRUPTED
    assert by_kind["emergency"].state == RUN_SUCCESS
    asrun = await staff.get_json(f"/api/v1/asrun?zone_id={zone}")
    emergency_line = next(line for line in asrun if line["kind"] == "emergency")
    assert {speaker["transport"]: speaker["state"] for speaker in emergency_line["speakers"]} == {
        "sink": RUN_SUCCESS,
        "http": RUN_SUCCESS,
        "rtp": RUN_SUCCESS,
    }
    assert [line["attempt"] for line in asrun if line["kind"] == "disclosure_finance"] == [0]  # nothing requeued
    disclosure_line = next(line for line in asrun if line["kind"] == "disclosure_finance" and line["attempt"] == 0)
    assert {speaker["transport"]: speaker["state"] for speaker in disclosure_line["speakers"]} == {
        "sink": RUN_INTERRUPTED,
        "http": RUN_INTERRUPTED,
        "rtp": RUN_INTERRUPTED,
    }
    # What each speaker got of the cut item is in the API: the RTP packets the speaker received, and seconds.
    cut_rtp = next(speaker for speaker in disclosure_line["speakers"] if speaker["transport"] == "rtp")
    assert cut_rtp["packets_sent"] == len(first)
    assert cut_rtp["played_s"] == pytest.approx(len(first) * 0.02)
    assert all(speaker["played_s"] > 0 for speaker in disclosure_line["speakers"])  # each heard part of it
    csv = await (await staff.get(f"/api/v1/asrun.csv?zone_id={zone}")).text()
    assert "森林草原防火紧急通知" in csv and "被中断" in csv
    header, *csv_lines = csv.lstrip("\ufeff").splitlines()
    columns = header.split(",")
    assert "已发送包数" in columns and "播出秒数" in columns
    rtp_cut = next(
        line.split(",")
        for line in csv_lines
        if line.startswith(f"{disclosure_line['id']},") and f",{cut_rtp['transport_label']}," in line
    )
    assert rtp_cut[columns.index("已发送包数")] == str(len(first))
    assert csv.startswith("\ufeff记录号,")  # BOM: Excel opens it as UTF-8
    assert len(csv.strip().splitlines()) == 1 + sum(len(line["speakers"]) for line in asrun)  # a line per speaker
    # The filters: township, village, kind, date (Beijing dates, inclusive).
    today = runtime.clock.now().astimezone(runtime.settings.zone).date()
    village, other_village = tree["villages"]
    assert {line["kind"] for line in await staff.get_json("/api/v1/asrun?kind=emergency")} == {"emergency"}
    assert len(await staff.get_json(f"/api/v1/asrun?township_id={tree['townships'][0]}")) == len(asrun)
    assert len(await staff.get_json(f"/api/v1/asrun?village_id={village}&since={today}&until={today}")) == len(asrun)
    assert await staff.get_json(f"/api/v1/asrun?village_id={other_village}") == []
    assert await staff.get_json(f"/api/v1/asrun?since={today + timedelta(days=1)}") == []
    assert await staff.get_json(f"/api/v1/asrun?until={today - timedelta(days=1)}") == []


async def test_a_recorded_voice_replaces_the_synthetic_one_and_is_approved_through_the_same_pipeline(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory, tmp_path: Path
) -> None:
    tree = await _tree(runtime)
    staff, approver, both = await _people(runtime, new_client, make_user, tree["townships"][0])
    approved = await _approved(staff, approver, tree["townships"][0])
    recording = espeak_wav("乡亲们好，我是村支书，明天上午开会。", tmp_path / "secretary.wav")
    form = FormData()
    form.add_field("recording", recording.read_bytes(), filename="secretary.wav", content_type="audio/wav")
    # Uploaded by a colleague who is also an approver (the secretary's voice, recorded at the township).
    uploaded = await both.post(f"/api/v1/notices/{approved['id']}/recording", data=form)
    body = await uploaded.json()
    assert uploaded.status == 200, body
    # A new voice is a new revision: back to review, the old audio gone.
    assert (body["source"], body["state"], body["has_audio"]) == ("recording", "pending", False)
    # Four eyes across edits: whoever changed the recording may not approve it.
    own = await both.post_json(f"/api/v1/notices/{approved['id']}/approve", {}, expect=403)
    assert own["error"]["code"] == "notice.edited_by_approver"
    again = await approver.post_json(f"/api/v1/notices/{approved['id']}/approve", {})
    assert again["has_audio"] and again["audio_engine"] == "recording"

    empty = FormData()
    empty.add_field("recording", b"", filename="x.wav", content_type="audio/wav")
    refused = await staff.post(f"/api/v1/notices/{approved['id']}/recording", data=empty)
    assert refused.status == 400 and "空" in (await refused.json())["error"]["message"]


@pytest.mark.parametrize("db_kind", BOTH_DATABASES)
async def test_notices_schedules_and_the_as_run_log_are_scoped_by_township_with_404_outside(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory
) -> None:
    tree = await _tree(runtime)
    staff, approver, _both = await _people(runtime, new_client, make_user, tree["townships"][0])
    notice = await _approved(staff, approver, tree["townships"][0])
    schedule = await staff.post_json(
        "/api/v1/schedules",
        {
            "notice_id": notice["id"],
            "kind": "daily",
            "times": ["07:00"],
            "targets": [{"level": "zone", "id": tree["zones"][0]}],
        },
        expect=201,
    )
    other = await (await new_client()).login(*await make_user("staff", township_ids=[tree["townships"][1]]))
    for path in (f"/api/v1/notices/{notice['id']}", f"/api/v1/schedules/{schedule['id']}",
                 f"/api/v1/zones/{tree['zones'][0]}/week"):  # fmt: skip
        response = await other.get(path)
        assert response.status == 404, path
    assert await other.get_json("/api/v1/notices") == []
    assert await other.get_json("/api/v1/schedules") == []
    assert [row["township_id"] for row in (await other.get_json("/api/v1/coverage"))["rows"]] == [
        tree["townships"][1]
    ] * len((await other.get_json("/api/v1/coverage"))["rows"])


async def test_a_rejected_notice_needs_a_reason_goes_back_to_draft_when_edited_and_an_archived_one_is_closed(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory
) -> None:
    tree = await _tree(runtime)
    township = tree["townships"][0]
    staff, approver, _both = await _people(runtime, new_client, make_user, township)
    body = {"kind": "disclosure_village", "title": "村务公开", "body": "修路款收支明细。", "township_id": township}
    notice = await staff.post_json("/api/v1/notices", body, 201)
    await staff.post_json(f"/api/v1/notices/{notice['id']}/submit", {})
    blank = await approver.post_json(f"/api/v1/notices/{notice['id']}/reject", {"reason": "   "}, expect=400)
    assert "reason" in blank["error"]["fields"]
    rejected = await approver.post_json(f"/api/v1/notices/{notice['id']}/reject", {"reason": "金额没有写单位"})
    assert (rejected["state"], rejected["reject_reason"]) == ("rejected", "金额没有写单位")
    # Only a pending notice can be approved; a rejected one is edited and submitted again.
    await approver.post_json(f"/api/v1/notices/{notice['id']}/approve", {}, expect=409)
    corrected = {**body, "body": "修路款收支明细，共3万元。"}
    edited = await staff.client.put(f"/api/v1/notices/{notice['id']}", json=corrected)
    assert (await edited.json())["state"] == "draft"
    resubmitted = await staff.post_json(f"/api/v1/notices/{notice['id']}/submit", {})
    assert (resubmitted["state"], resubmitted["reject_reason"]) == ("pending", None)
    assert (await approver.post_json(f"/api/v1/notices/{notice['id']}/approve", {}))["state"] == "approved"
    # Once scheduled, it cannot move to another township (its schedules' targets are this township's).
    await staff.post_json(
        "/api/v1/schedules",
        {"notice_id": notice["id"], "kind": "daily", "times": ["07:00"],
         "targets": [{"level": "zone", "id": tree["zones"][0]}]},
        expect=201,
    )  # fmt: skip
    county = await (await new_client()).login(*await make_user("staff", county_wide=True))
    moved = await county.client.put(
        f"/api/v1/notices/{notice['id']}", json={**corrected, "township_id": tree["townships"][1]}
    )
    assert moved.status == 409 and (await moved.json())["error"]["code"] == "notice.scheduled_elsewhere"
    assert (await staff.get_json(f"/api/v1/notices/{notice['id']}"))["state"] == "approved"  # untouched

    archived = await staff.post_json(f"/api/v1/notices/{notice['id']}/archive", {})
    assert archived["state"] == "archived"
    closed = await staff.client.put(f"/api/v1/notices/{notice['id']}", json=body)
    assert closed.status == 409 and (await closed.json())["error"]["code"] == "notice.archived"
    refused = await staff.post(
        "/api/v1/schedules",
        json={"notice_id": notice["id"], "kind": "daily", "times": ["07:00"],
              "targets": [{"level": "zone", "id": tree["zones"][0]}]},
    )  # fmt: skip
    assert refused.status == 409 and (await refused.json())["error"]["code"] == "schedule.notice_not_approved"


async def test_an_emergency_needs_the_permission_and_a_confirmation_and_belongs_to_the_township_of_its_zones(
    runtime: Runtime, server: TestServer, new_client: ClientFactory, make_user: UserFactory
) -> None:
    tree = await _tree(runtime)
    township, zone, other_zone = tree["townships"][0], tree["zones"][0], tree["zones"][1]
    alert = {"title": "暴雨红色预警", "body": "请立即转移到安全地带。", "zone_ids": [zone], "confirm": True}
    plain = await (await new_client()).login(*await make_user("staff", township_ids=[township]))
    forbidden = await plain.post_json("/api/v1/emergency", alert, expect=403)
    assert forbidden["error"]["code"] == "emergency.forbidden"
    # A township's own emergency sender: no township_id needed, it is the township of the zones.
    sender = await (await new_client()).login(*await make_user("staff", township_ids=[township], can_emergency=True))
    unconfirmed = await sender.post_json("/api/v1/emergency", {**alert, "confirm": False}, expect=400)
    assert "确认" in unconfirmed["error"]["message"]
    outside = await sender.post_json("/api/v1/emergency", {**alert, "zone_ids": [other_zone]}, expect=400)
    assert "不存在" in outside["error"]["message"]
    assert await sender.get_json("/api/v1/notices?kind=emergency") == []  # nothing written

    asked = runtime.clock.now()
    sent = await sender.post_json("/api/v1/emergency", alert, expect=202)
    assert (sent["notice"]["township_id"], sent["notice"]["state"]) == (township, "approved")
    # Rendered and on air within seconds of the request.
    rows = await wait_for_rows(
        runtime, lambda rows: rows and rows[0].started_at is not None, timeout=10, broadcast_id=sent["broadcast_id"]
    )
    assert rows[0].started_at is not None and rows[0].started_at - asked < timedelta(seconds=10)
    # The page's form: nothing happens without the confirmation box ticked.
    form = {"title": "暴雨红色预警", "body": "请立即转移。", "zone_ids": str(zone)}
    unticked = await (await sender.post("/broadcast/emergency", data=form)).text()
    assert "请勾选“确认立即播出”" in unticked
    ticked = await (await sender.post("/broadcast/emergency", data={**form, "confirm": "on"})).text()
    assert "应急广播已发出" in ticked
    emergencies = await sender.get_json("/api/v1/notices?kind=emergency")
    assert [(notice["township_id"], notice["state"]) for notice in emergencies] == [(township, "approved")] * 2
    # A county-wide sender reaching two townships at once sends a county-level alert.
    county = await (await new_client()).login(*await make_user("leader", county_wide=True, can_emergency=True))
    both = await county.post_json("/api/v1/emergency", {**alert, "zone_ids": [zone, other_zone]}, expect=202)
    assert both["notice"]["township_id"] is None
    wrong = await county.post_json(
        "/api/v1/emergency", {**alert, "zone_ids": [zone, other_zone], "township_id": township}, expect=400
    )
    assert "不都在这个乡镇内" in wrong["error"]["message"]


# A generous start deadline for terminals: a zone that waited for an offline terminal would wait this long.
@pytest.mark.parametrize("settings", [{"terminal_start_timeout_s": 30.0}], indirect=True, ids=["30s-deadline"])
async def test_a_4g_terminal_that_never_polls_fails_alone_and_does_not_hold_up_the_zones_other_speakers(
    runtime: Runtime, server: TestServer
) -> None:
    admin = await make_principal(runtime, "silent-admin", "admin", county_wide=True)
    with RtpReceiver() as speaker:
        place = await build_place(
            runtime, admin, "丙乡", [[("http", "t00077"), ("sink", "file:hall"), ("rtp", speaker.address)]]
        )
        staff = await make_principal(runtime, "silent-staff", "staff", township_ids=[place.township_id])
        approver = await make_principal(runtime, "silent-approver", "approver", township_ids=[place.township_id])
        first = await approved_notice(runtime, staff, approver, township_id=place.township_id, title="一")
        second = await approved_notice(
            runtime, staff, approver, township_id=place.township_id, title="二", body="请大家相互转告。"
        )
        zone = place.zone_ids[0]
        dispatcher = runtime.broadcasting.dispatcher
        for notice in (first, second):  # back to back: the second waits for the zone
            await dispatcher.request(notice_id=notice.id, zone_ids=[zone], origin="manual", requested_by=None)
            await wait_for_rows(runtime, lambda rows, n=notice: any(r.notice_id == n.id for r in rows), zone_id=zone)
        rows = await wait_for_rows(
            runtime, lambda rows: len(rows) == 2 and all(r.state not in (1, 2) for r in rows), timeout=90
        )
        for row in rows:
            speakers = await speaker_rows(runtime, row.id)
            assert [(speaker.transport, speaker.state) for speaker in speakers] == [
                ("http", RUN_FAILED),
                ("sink", RUN_SUCCESS),
                ("rtp", RUN_SUCCESS),
            ]
            assert speakers[0].error == "分区的其他喇叭已播完，终端仍未取走并开始播放（可能离线），分区不再等它"
            assert speakers[0].played_s == 0
            # The zone played; its line names the speaker that failed.
            assert row.state == RUN_SUCCESS and (row.error or "").startswith("喇叭1：")
        # At the RTP speaker: both items whole, the second right after the first — not after the terminal's
        # 30-second start deadline (an item is about 3 s; the zone waits at most two poll intervals, 1 s, for it).
        runs = speaker.runs()
        assert len(runs) == 2
        for notice in (first, second):
            assert notice.audio_keys is not None
            entry = runtime.speech.cache.get(notice.audio_keys["rtp"])
            assert entry is not None and speaker.plays(item_payloads(entry.path)) == ["full"]
        gap = runs[1].first_arrival_s - runs[0].last_arrival_s
        assert gap < 15, f"the zone waited {gap:.1f} s between two items for an offline terminal"
