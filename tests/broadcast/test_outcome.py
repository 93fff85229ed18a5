"""An item's status is derived from its speakers (broadcast.outcome), never from a summary state."""

from __future__ import annotations

from broadcast.outcome import SpeakerOutcome, item_speakers, summarize, zone_outcome
from storage.models import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_PLAYING,
    RUN_SUCCESS,
    RUN_WAITING,
    BroadcastSpeaker,
    BroadcastZone,
)


def speaker(name: str, transport: str, state: int, error: str | None = None) -> SpeakerOutcome:
    return SpeakerOutcome(name, transport, "addr", "甲乡 一村 · 广场", state, error)


def test_all_played_some_played_none_played() -> None:
    assert summarize([speaker("音柱", "rtp", RUN_SUCCESS)]).label == "全部成功"
    partial = summarize(
        [
            speaker("音柱", "rtp", RUN_SUCCESS),
            speaker("大喇叭", "sip", RUN_FAILED, "终端未应答"),
            speaker("4G音箱", "http", RUN_FAILED, "终端未在规定时间内取走并开始播放（可能离线）"),
        ]
    )
    assert (partial.label, partial.tone) == ("部分成功（1/3）", "partial")
    assert [(s.name, s.transport_label, s.reason) for s in partial.failed] == [
        ("大喇叭", "SIP 寻呼", "终端未应答"),
        ("4G音箱", "4G 终端", "终端未在规定时间内取走并开始播放（可能离线）"),
    ]
    assert summarize([speaker("大喇叭", "sip", RUN_FAILED, "终端未应答")]).label == "失败"
    quiet = summarize([speaker("音柱", "rtp", RUN_CANCELLED, "22:00 在甲乡的静默时段内")] * 2)
    assert (quiet.label, quiet.reason) == ("已取消", "22:00 在甲乡的静默时段内")
    running = summarize([speaker("音柱", "rtp", RUN_SUCCESS), speaker("大喇叭", "sip", RUN_PLAYING)])
    assert (running.label, running.finished) == ("播出中（已完成 1/2）", False)


def _run(run_id: int, zone_id: int, attempt: int, state: int, error: str | None = None) -> BroadcastZone:
    return BroadcastZone(id=run_id, zone_id=zone_id, attempt=attempt, state=state, error=error)


def _row(run_id: int, speaker_id: int, state: int, error: str | None = None) -> BroadcastSpeaker:
    return BroadcastSpeaker(
        zone_run_id=run_id, speaker_id=speaker_id, transport="sink", address="file:a", state=state, error=error
    )


def test_a_cut_item_counts_as_played_once_replayed_and_as_waiting_while_its_replay_waits() -> None:
    cut = _run(1, 7, 0, RUN_INTERRUPTED, "被更高优先级的广播插播中断")
    names = {5: "广播室"}
    replayed = item_speakers(
        [(cut, [_row(1, 5, RUN_INTERRUPTED)]), (_run(2, 7, 1, RUN_SUCCESS), [_row(2, 5, RUN_SUCCESS)])],
        names=names, places={}, zone_speakers={},
    )  # fmt: skip
    assert summarize(replayed).label == "全部成功"
    waiting = item_speakers(
        [(cut, [_row(1, 5, RUN_INTERRUPTED)]), (_run(2, 7, 1, RUN_WAITING), [])],
        names=names, places={}, zone_speakers={},
    )  # fmt: skip
    assert summarize(waiting).label == "等待播出"
    never = item_speakers([(cut, [_row(1, 5, RUN_INTERRUPTED)])], names=names, places={}, zone_speakers={})
    assert summarize(never).label == "失败" and never[0].reason == "被中断：被更高优先级的广播插播中断"


def test_a_zone_nobody_was_sent_to_counts_its_speakers_as_not_played_for_the_zones_reason() -> None:
    cancelled = _run(1, 7, 0, RUN_CANCELLED, "22:00 在甲乡的静默时段内，只有应急广播可以播出")
    outcomes = item_speakers(
        [(cancelled, [])], names={}, places={7: "甲乡 一村 · 广场"},
        zone_speakers={7: [(5, "广播室", "sink", "alsa:default"), (6, "音柱", "rtp", "127.0.0.1:5004")]},
    )  # fmt: skip
    assert [(s.name, s.transport_label, s.state_label) for s in outcomes] == [
        ("广播室", "声卡", "已取消"),
        ("音柱", "RTP", "已取消"),
    ]
    assert zone_outcome(cancelled, [], {}).label == "已取消"
