"""Transport semantics: per-speaker results, a silent speaker fails alone, a stop reaches every speaker.

The SIP paging transport is driven here by a scripted originator (the real one,
Asterisk's ``Page()`` over AMI, is the hotline's and is exercised against the
sandbox there); what is checked is the contract the dispatcher relies on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broadcast.transports import PageResult, PlayItem, SinkTransport, SipPagingTransport, SpeakerTarget
from common.clock import ManualClock
from storage.models import RUN_FAILED, RUN_INTERRUPTED, RUN_SUCCESS
from tts.audio import Profile


@dataclass
class ScriptedPager:
    """Answers for the endpoints in ``answering``; a page lasts ``length_s`` unless hung up."""

    answering: set[str]
    length_s: float = 0.2
    hung_up: list[str] = field(default_factory=list)
    pages: list[tuple[list[str], Path]] = field(default_factory=list)
    _stops: dict[str, asyncio.Event] = field(default_factory=dict)

    async def page(self, endpoints: Sequence[str], audio_path: Path, channel_id: str, timeout_s: float) -> Any:
        self.pages.append((list(endpoints), audio_path))
        stop = self._stops.setdefault(channel_id, asyncio.Event())
        try:
            await asyncio.wait_for(stop.wait(), self.length_s)
        except TimeoutError:
            pass
        return PageResult({endpoint: endpoint in self.answering for endpoint in endpoints})

    async def hangup(self, channel_id: str) -> None:
        self.hung_up.append(channel_id)
        self._stops.setdefault(channel_id, asyncio.Event()).set()


def item(tmp_path: Path, length_s: float = 0.2) -> PlayItem:
    wav = tmp_path / "item.wav"
    wav.write_bytes(b"RIFF")
    return PlayItem(
        title="测试", files={Profile.ASTERISK: wav, Profile.WAV16K: wav}, duration_s=length_s, priority=2, zone_run_id=7
    )


def clock() -> ManualClock:
    return ManualClock(datetime(2026, 11, 25, tzinfo=UTC))


async def test_a_sip_speaker_that_does_not_answer_fails_alone(tmp_path: Path) -> None:
    pager = ScriptedPager(answering={"spk1", "spk3"})
    transport = SipPagingTransport(pager, clock())
    targets = [SpeakerTarget("sip", name) for name in ("spk1", "spk2", "spk3")]
    results = await transport.play(item(tmp_path), targets, asyncio.Event())
    assert [result.state for result in results] == [RUN_SUCCESS, RUN_FAILED, RUN_SUCCESS]
    assert results[1].error == "终端未应答"
    assert pager.pages == [(["spk1", "spk2", "spk3"], item(tmp_path).files[Profile.ASTERISK])]


async def test_a_stop_hangs_up_the_page_and_the_answered_speakers_are_interrupted(tmp_path: Path) -> None:
    pager = ScriptedPager(answering={"spk1"}, length_s=30)
    transport = SipPagingTransport(pager, clock())
    stop = asyncio.Event()
    playing = asyncio.ensure_future(transport.play(item(tmp_path), [SpeakerTarget("sip", "spk1")], stop))
    await asyncio.sleep(0.05)
    stop.set()
    results = await asyncio.wait_for(playing, 5)
    assert pager.hung_up and results[0].state == RUN_INTERRUPTED


async def test_without_asterisk_sip_speakers_fail_with_a_reason_and_nothing_else_breaks(tmp_path: Path) -> None:
    results = await SipPagingTransport(None, clock()).play(
        item(tmp_path), [SpeakerTarget("sip", "spk1")], asyncio.Event()
    )
    assert results[0].state == RUN_FAILED and "Asterisk" in (results[0].error or "")


async def test_a_file_sink_writes_the_item_and_holds_the_zone_until_stopped(tmp_path: Path) -> None:
    sink = SinkTransport(tmp_path / "sink", clock())
    stop = asyncio.Event()
    playing = asyncio.ensure_future(sink.play(item(tmp_path, length_s=30), [SpeakerTarget("sink", "file:room")], stop))
    await asyncio.sleep(0.1)
    assert (tmp_path / "sink" / "room.wav").exists()
    assert not playing.done()
    stop.set()
    results = await asyncio.wait_for(playing, 5)
    assert results[0].state == RUN_INTERRUPTED
