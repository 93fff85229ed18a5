"""What really played: an item's status derived from its speakers, never from a summary state.

A zone's as-run row says 成功 when *any* of its speakers played (the dispatcher's
rule, kept for coverage: the village heard it); a broadcast's row says 成功 when
any zone did. Neither may be shown as the item's status: an emergency whose SIP
loudspeaker did not answer and whose 4G terminal never fetched it did not
"succeed". What people see is derived here, per speaker:

* **played** — the speaker's row reached a played state (:data:`PLAYED_STATES`) on
  some attempt (an item cut off and played again counts once it has been played);
* **in progress** — its zone's latest attempt is still waiting or playing;
* otherwise **not played**, with the reason: 失败, 已取消, 被中断, 错过, 已跳过.

and an item is 全部成功, 部分成功（n/m）, or 失败 (已取消 / 错过 / 已跳过 when every
speaker was left out for that one reason), with the speakers that did not play
listed with their reasons, or 播出中 / 等待播出 while it runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from storage.models import (
    RUN_CANCELLED,
    RUN_INTERRUPTED,
    RUN_MISSED,
    RUN_PLAYING,
    RUN_SKIPPED,
    RUN_STATE_LABELS,
    RUN_SUCCESS,
    RUN_UNPROCESSED,
    RUN_WAITING,
    BroadcastSpeaker,
    BroadcastZone,
    transport_label,
)

# The one place that says which as-run states count as heard. States added later are sorted here: a 重播
# (a replay after a crash) that finishes is recorded as 成功 on its own attempt and so counts as played; one
# that has not finished, and an item 未开始（被抢占）, are final states that are simply not in this set.
PLAYED_STATES: Final = frozenset({RUN_SUCCESS})
IN_PROGRESS_STATES: Final = frozenset({RUN_UNPROCESSED, RUN_WAITING, RUN_PLAYING})
# When nothing played and every speaker was left out for one of these reasons, the item says that reason.
WHOLE_ITEM_REASONS: Final = (RUN_CANCELLED, RUN_MISSED, RUN_SKIPPED)


@dataclass(frozen=True)
class SpeakerOutcome:
    """One loudspeaker's part in an item: what became of it, and why when it did not play."""

    name: str
    transport: str
    address: str
    place: str  # 乡镇 村 · 分区
    state: int
    error: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    speaker_id: int | None = None

    @property
    def played(self) -> bool:
        return self.state in PLAYED_STATES

    @property
    def finished(self) -> bool:
        return self.state not in IN_PROGRESS_STATES

    @property
    def transport_label(self) -> str:
        return transport_label(self.transport, self.address)

    @property
    def state_label(self) -> str:
        return RUN_STATE_LABELS.get(self.state, "未知")

    @property
    def reason(self) -> str:
        """Why it did not play (the transport's own words when it gave some); nothing while it may still play."""
        if self.played or not self.finished:
            return ""
        if self.error:
            return self.error if self.state != RUN_INTERRUPTED else f"被中断：{self.error}"
        return self.state_label


@dataclass(frozen=True)
class Outcome:
    label: str
    tone: str  # ok, partial, failed, running: the colour it is shown in
    played: int
    total: int
    failed: tuple[SpeakerOutcome, ...] = ()
    reason: str | None = None  # an item no speaker was reached for: why (quiet hours, a missed slot…)

    @property
    def finished(self) -> bool:
        return self.tone != "running"


def summarize(speakers: Sequence[SpeakerOutcome]) -> Outcome:
    """An item's status from its speakers' outcomes."""
    total = len(speakers)
    played = sum(1 for speaker in speakers if speaker.played)
    failed = tuple(speaker for speaker in speakers if speaker.finished and not speaker.played)
    if any(not speaker.finished for speaker in speakers):
        running = any(speaker.state == RUN_PLAYING for speaker in speakers)
        label = "播出中" if running else "等待播出"
        if played or failed:
            label += f"（已完成 {played + len(failed)}/{total}）"
        return Outcome(label, "running", played, total, failed)
    if total == 0:
        return Outcome("失败", "failed", 0, 0, (), "没有可播出的终端")
    if played == total:
        return Outcome("全部成功", "ok", played, total)
    if played:
        return Outcome(f"部分成功（{played}/{total}）", "partial", played, total, failed)
    states = {speaker.state for speaker in speakers}
    if len(states) == 1 and (only := next(iter(states))) in WHOLE_ITEM_REASONS:
        return Outcome(RUN_STATE_LABELS[only], "failed", 0, total, failed, failed[0].reason)
    return Outcome("失败", "failed", 0, total, failed)


def zone_outcome(run: BroadcastZone, rows: Sequence[BroadcastSpeaker], names: Mapping[int, str]) -> Outcome:
    """One zone run (one line of the as-run log) from its speakers' rows; a zone nobody was sent to says why."""
    if not rows:
        label = RUN_STATE_LABELS.get(run.state, "未知")
        if run.state in IN_PROGRESS_STATES:
            return Outcome("播出中" if run.state == RUN_PLAYING else "等待播出", "running", 0, 0)
        return Outcome(label, "failed", 0, 0, (), run.error or label)
    return summarize([_speaker(row, run, names.get(row.speaker_id, row.address), "") for row in rows])


def item_speakers(
    runs: Iterable[tuple[BroadcastZone, Sequence[BroadcastSpeaker]]],
    *,
    names: Mapping[int, str],
    places: Mapping[int, str],
    zone_speakers: Mapping[int, Sequence[tuple[int, str, str, str]]],
) -> list[SpeakerOutcome]:
    """Every speaker of a broadcast across its zones and attempts, each once, as it ended up.

    ``places`` names each zone; ``zone_speakers`` lists each zone's speakers now (id, name, transport,
    address), for zones whose run never reached a speaker (cancelled in quiet hours, missed, still waiting):
    their speakers were not played, for the zone's reason.
    """
    by_zone: dict[int, list[tuple[BroadcastZone, Sequence[BroadcastSpeaker]]]] = {}
    for run, rows in runs:
        by_zone.setdefault(run.zone_id, []).append((run, rows))
    outcomes: list[SpeakerOutcome] = []
    for zone_id, attempts in by_zone.items():
        attempts.sort(key=lambda attempt: attempt[0].attempt)
        latest = attempts[-1][0]
        place = places.get(zone_id, "")
        seen: dict[int, tuple[BroadcastSpeaker, BroadcastZone]] = {}
        for run, rows in attempts:
            for row in rows:
                before = seen.get(row.speaker_id)
                if before is None or before[0].state not in PLAYED_STATES:
                    seen[row.speaker_id] = (row, run)
        if not seen:
            # Nothing was sent to any speaker of this zone: each of them shares the zone's fate.
            listed = zone_speakers.get(zone_id, ())
            for speaker_id, name, transport, address in listed:
                outcomes.append(
                    SpeakerOutcome(name, transport, address, place, latest.state, latest.error, speaker_id=speaker_id)
                )
            if not listed:
                reason = latest.error or "分区没有启用的终端"
                outcomes.append(SpeakerOutcome("（分区没有终端）", "", "", place, latest.state, reason))
            continue
        for row, run in seen.values():
            outcome = _speaker(row, run, names.get(row.speaker_id, row.address), place)
            if not outcome.played and latest.state in IN_PROGRESS_STATES and run is not latest:
                # Cut off, and queued to play again: not played yet, not failed either.
                outcome = SpeakerOutcome(
                    outcome.name, outcome.transport, outcome.address, place, latest.state, speaker_id=row.speaker_id
                )
            outcomes.append(outcome)
    return outcomes


def _speaker(row: BroadcastSpeaker, run: BroadcastZone, name: str, place: str) -> SpeakerOutcome:
    error = row.error
    if row.state == RUN_INTERRUPTED and not error:
        error = run.error
    state = row.state
    if state in (RUN_UNPROCESSED, RUN_WAITING) and run.state == RUN_PLAYING:
        state = RUN_PLAYING  # its zone is on air: the speaker's own result is written when the item ends
    return SpeakerOutcome(
        name=name,
        transport=row.transport,
        address=row.address,
        place=place,
        state=state,
        error=error,
        started_at=row.started_at,
        ended_at=row.ended_at,
        speaker_id=row.speaker_id,
    )


__all__ = [
    "IN_PROGRESS_STATES",
    "PLAYED_STATES",
    "Outcome",
    "SpeakerOutcome",
    "item_speakers",
    "summarize",
    "zone_outcome",
]
