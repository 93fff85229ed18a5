"""Transport semantics: per-speaker results, a silent speaker fails alone, a stop reaches every speaker.

The SIP paging transport is driven here by a scripted originator (the real one,
Asterisk's ``Page()`` over AMI, is the hotline's and is exercised against the
sandbox there); what is checked is the contract the dispatcher relies on.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from broadcast.transports import PageResult, PlayItem, SinkTransport, SipPagingTransport, SpeakerTarget
from common.clock import ManualClock
from storage.models import RUN_FAILED, RUN_INTERRUPTED, RUN_SUCCESS
from tests.support.required import missing
from tts.audio import Profile


@dataclass
class ScriptedPager:
    """Answers for the endpoints in ``answering``; a page lasts ``length_s`` unless hung up."""

    answering: set[str]
    length_s: float = 0.2
    hung_up: list[str] = field(default_factory=list)
    pages: list[tuple[list[str], Path]] = field(default_factory=list)
    # The speakers ring this long (on ``clock``) before the answering ones answer.
    clock: ManualClock | None = None
    ring_s: float = 0.0
    _stops: dict[str, asyncio.Event] = field(default_factory=dict)

    async def page(
        self,
        endpoints: Sequence[str],
        audio_path: Path,
        channel_id: str,
        timeout_s: float,
        *,
        on_answer: Callable[[str], None] | None = None,
    ) -> Any:
        self.pages.append((list(endpoints), audio_path))
        stop = self._stops.setdefault(channel_id, asyncio.Event())
        await asyncio.sleep(0)  # ringing
        if self.clock is not None:
            self.clock.advance(self.ring_s)
        for endpoint in endpoints:
            if endpoint in self.answering and on_answer is not None:
                on_answer(endpoint)
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


async def test_each_sip_speaker_is_reported_started_when_it_answers_and_only_then(tmp_path: Path) -> None:
    stopwatch = clock()
    paged_at = stopwatch.now()
    pager = ScriptedPager(answering={"spk1"}, clock=stopwatch, ring_s=3)
    transport = SipPagingTransport(pager, stopwatch)
    answered: list[tuple[str, datetime]] = []

    async def on_answered(target: SpeakerTarget, at: datetime) -> None:
        answered.append((target.address, at))

    played = replace(item(tmp_path), on_answered=on_answered)
    results = await transport.play(
        played, [SpeakerTarget("sip", "spk1"), SpeakerTarget("sip", "spk2")], asyncio.Event()
    )
    # Reported as it happened (3 s after the page began), and only for the speaker that answered.
    answer_at = paged_at + timedelta(seconds=3)
    assert answered == [("spk1", answer_at)]
    assert results[0].state == RUN_SUCCESS and results[0].started_at == answer_at
    assert results[1].state == RUN_FAILED and results[1].played_s == 0.0


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
    assert results[0].state == RUN_FAILED and results[0].error == "没有连接电话交换机，不能SIP寻呼"


async def test_a_file_sink_writes_the_item_and_holds_the_zone_until_stopped(tmp_path: Path) -> None:
    sink = SinkTransport(tmp_path / "sink", clock())
    stop = asyncio.Event()
    playing = asyncio.ensure_future(sink.play(item(tmp_path, length_s=30), [SpeakerTarget("sink", "file:room")], stop))
    written = tmp_path / "sink" / "room.wav"
    async with asyncio.timeout(10):  # copied in a thread: on a loaded machine that takes a moment
        while not written.exists():  # noqa: ASYNC110 - a file another thread writes; no event to wait on
            await asyncio.sleep(0.02)
    assert not playing.done()  # a 30 s item holds the zone
    stop.set()
    results = await asyncio.wait_for(playing, 5)
    assert results[0].state == RUN_INTERRUPTED


# -- the sound card sink ------------------------------------------------------------------------
# No sound card here. The real aplay plays to ALSA's null device (it does not pace, so it cannot be
# stopped mid-item); for the rest a stand-in player records the command line it was given and plays
# for as long as it is told, exiting 143 on SIGTERM like aplay does.


async def test_the_real_aplay_plays_to_alsas_null_device_and_a_missing_card_fails_that_speaker(
    tmp_path: Path,
) -> None:
    if shutil.which("aplay") is None:
        missing("aplay is not installed (Debian package alsa-utils)")
    wav = tmp_path / "item.wav"
    with wave.open(str(wav), "wb") as writer:  # a real 16 kHz item: aplay reads its header
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(b"\x00\x10" * 16000)
    played = PlayItem(title="测试", files={Profile.WAV16K: wav}, duration_s=1.0, priority=2, zone_run_id=7)
    sink = SinkTransport(tmp_path / "sink", clock())  # the default player: aplay
    targets = [SpeakerTarget("sink", "alsa:null"), SpeakerTarget("sink", "alsa:hw:9,0")]
    results = await sink.play(played, targets, asyncio.Event())
    assert results[0].state == RUN_SUCCESS, results[0].error
    assert results[1].state == RUN_FAILED
    assert (results[1].error or "").startswith("声卡播放失败：") and "aplay" in (results[1].error or "")


PLAYER = """#!{python}
import pathlib, signal, sys, time
def stopped(*_):
    pathlib.Path({stop!r}).write_text("TERM")
    sys.exit(143)
signal.signal(signal.SIGTERM, stopped)
pathlib.Path({args!r}).write_text("\\n".join(sys.argv[1:]))
time.sleep({seconds})
sys.stderr.write({stderr!r})
sys.exit({code})
"""


def player(tmp_path: Path, *, seconds: float = 0.0, code: int = 0, stderr: str = "") -> Path:
    path = tmp_path / "fake-aplay"
    path.write_text(
        PLAYER.format(
            python=sys.executable,
            stop=str(tmp_path / "player.stopped"),
            args=str(tmp_path / "player.args"),
            seconds=seconds,
            stderr=stderr,
            code=code,
        )
    )
    path.chmod(0o755)
    return path


async def test_a_sound_card_speaker_plays_the_16k_item_with_the_player_on_its_alsa_device(tmp_path: Path) -> None:
    sink = SinkTransport(tmp_path / "sink", clock(), player=str(player(tmp_path)))
    played = item(tmp_path)
    results = await sink.play(played, [SpeakerTarget("sink", "alsa:plughw:1,0")], asyncio.Event())
    assert results[0].state == RUN_SUCCESS, results[0].error
    arguments = (tmp_path / "player.args").read_text().splitlines()
    assert arguments == ["-q", "-D", "plughw:1,0", str(played.files[Profile.WAV16K])]


async def test_a_stop_terminates_the_sound_card_player_and_the_speaker_is_interrupted(tmp_path: Path) -> None:
    sink = SinkTransport(tmp_path / "sink", clock(), player=str(player(tmp_path, seconds=30)))
    stop = asyncio.Event()
    playing = asyncio.ensure_future(sink.play(item(tmp_path, 30), [SpeakerTarget("sink", "alsa:default")], stop))
    async with asyncio.timeout(10):
        # The player is running (its handler is installed) once its file appears; it tells no one else.
        while not (tmp_path / "player.args").exists():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    stop.set()
    results = await asyncio.wait_for(playing, 5)
    assert results[0].state == RUN_INTERRUPTED
    assert (tmp_path / "player.stopped").read_text() == "TERM"


async def test_a_sound_card_that_fails_fails_that_speaker_with_the_players_message(tmp_path: Path) -> None:
    failing = player(tmp_path, code=1, stderr="aplay: main:831: audio open error: No such file or directory\n")
    sink = SinkTransport(tmp_path / "sink", clock(), player=str(failing))
    targets = [SpeakerTarget("sink", "alsa:hw:9,0"), SpeakerTarget("sink", "file:room")]
    results = await sink.play(item(tmp_path), targets, asyncio.Event())
    assert [result.state for result in results] == [RUN_FAILED, RUN_SUCCESS]  # the file sink is unaffected
    assert "声卡播放失败" in (results[0].error or "") and "audio open error" in (results[0].error or "")


async def test_without_the_player_or_with_a_bad_address_a_sink_speaker_fails_with_a_reason(tmp_path: Path) -> None:
    sink = SinkTransport(tmp_path / "sink", clock(), player=str(tmp_path / "no-such-aplay"))
    targets = [SpeakerTarget("sink", "alsa:default"), SpeakerTarget("sink", "speaker:1")]
    results = await sink.play(item(tmp_path), targets, asyncio.Event())
    assert [result.state for result in results] == [RUN_FAILED, RUN_FAILED]
    assert "找不到播放程序" in (results[0].error or "")
    assert results[1].error == "本地输出地址不对"
