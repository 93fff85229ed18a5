"""Reading the as-run log (播出记录): filters, one broadcast's result, CSV export, the disclosure coverage report.

Every status shown is derived from the speakers' own rows (:mod:`broadcast.outcome`).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from broadcast.outcome import Outcome, SpeakerOutcome, item_speakers, summarize, zone_outcome
from common.errors import NotFound
from storage.models import (
    KIND_LABELS,
    REPLAY_LABEL,
    RUN_STATE_LABELS,
    RUN_SUCCESS,
    Broadcast,
    BroadcastSpeaker,
    BroadcastZone,
    Speaker,
    Township,
    User,
    Village,
    Zone,
    transport_label,
)

DISCLOSURE_KINDS = ("disclosure_party", "disclosure_village", "disclosure_finance")
MAX_ROWS = 5000
ORIGIN_LABELS = {"schedule": "按安排播出", "emergency": "应急广播", "manual": "立即播出", "test": "拨测"}


@dataclass(frozen=True)
class AsRunFilter:
    township_id: int | None = None
    village_id: int | None = None
    zone_id: int | None = None
    kind: str | None = None
    state: int | None = None
    since: date | None = None
    until: date | None = None
    limit: int = 200
    offset: int = 0


@dataclass(frozen=True)
class AsRunLine:
    zone_run: BroadcastZone
    broadcast: Broadcast
    zone_name: str
    village_name: str
    township_name: str
    speakers: tuple[BroadcastSpeaker, ...]
    speaker_names: Mapping[int, str]

    @property
    def outcome(self) -> Outcome:
        return zone_outcome(self.zone_run, self.speakers, self.speaker_names)

    def as_json(self, zone: ZoneInfo) -> dict[str, Any]:
        run = self.zone_run
        return {
            "id": run.id,
            "broadcast_id": run.broadcast_id,
            "title": self.broadcast.title,
            "origin": self.broadcast.origin,
            "kind": run.kind,
            "kind_label": KIND_LABELS.get(run.kind, run.kind),
            "priority": run.priority,
            "township_id": run.township_id,
            "township": self.township_name,
            "village_id": run.village_id,
            "village": self.village_name,
            "zone_id": run.zone_id,
            "zone": self.zone_name,
            "schedule_id": run.schedule_id,
            "attempt": run.attempt,
            # A 重播: the play of ``replay_of`` again, from its start, after the service stopped during it.
            "replay_of": run.replay_of,
            "replay_label": REPLAY_LABEL if run.replay_of is not None else None,
            "state": run.state,
            "state_label": RUN_STATE_LABELS[run.state],
            "outcome": outcome_json(self.outcome),
            "scheduled_at": _local(run.scheduled_at, zone),
            "started_at": _local(run.started_at, zone),
            "ended_at": _local(run.ended_at, zone),
            "error": run.error,
            "speakers": [
                {
                    "id": speaker.id,
                    "speaker_id": speaker.speaker_id,
                    "name": self.speaker_names.get(speaker.speaker_id, speaker.address),
                    "transport": speaker.transport,
                    "transport_label": transport_label(speaker.transport, speaker.address),
                    "address": speaker.address,
                    "state": speaker.state,
                    "state_label": RUN_STATE_LABELS[speaker.state],
                    "started_at": _local(speaker.started_at, zone),
                    "ended_at": _local(speaker.ended_at, zone),
                    "error": speaker.error,
                    # What it was given: RTP packets sent (RTP only), seconds played (None: not known).
                    "packets_sent": speaker.packets_sent,
                    "played_s": speaker.played_s,
                }
                for speaker in self.speakers
            ],
        }


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "label": outcome.label,
        "tone": outcome.tone,
        "finished": outcome.finished,
        "played": outcome.played,
        "total": outcome.total,
        "reason": outcome.reason,
        "not_played": [
            {"name": speaker.name, "transport_label": speaker.transport_label, "place": speaker.place,
             "state_label": speaker.state_label, "reason": speaker.reason}
            for speaker in outcome.failed
        ],
    }  # fmt: skip


@dataclass(frozen=True)
class BroadcastResult:
    """One broadcast (an emergency, a manual play, a scheduled slot) and what became of it on every speaker."""

    broadcast: Broadcast
    requested_by: str | None
    speakers: tuple[SpeakerOutcome, ...]
    zone_count: int

    @property
    def outcome(self) -> Outcome:
        if self.broadcast.state == 0 and not self.speakers:
            return Outcome("等待播出", "running", 0, 0)
        return summarize(self.speakers)

    @property
    def origin_label(self) -> str:
        return ORIGIN_LABELS.get(self.broadcast.origin, "")

    def as_json(self, zone: ZoneInfo) -> dict[str, Any]:
        broadcast = self.broadcast
        return {
            "id": broadcast.id,
            "title": broadcast.title,
            "kind": broadcast.kind,
            "kind_label": KIND_LABELS.get(broadcast.kind, broadcast.kind),
            "origin": broadcast.origin,
            "origin_label": self.origin_label,
            "requested_by": self.requested_by,
            "created_at": _local(broadcast.created_at, zone),
            "outcome": outcome_json(self.outcome),
            "speakers": [
                {
                    "name": speaker.name,
                    "place": speaker.place,
                    "transport": speaker.transport,
                    "transport_label": speaker.transport_label,
                    "address": speaker.address,
                    "state": speaker.state,
                    "state_label": speaker.state_label,
                    "played": speaker.played,
                    "reason": speaker.reason or None,
                    "started_at": _local(speaker.started_at, zone),
                    "ended_at": _local(speaker.ended_at, zone),
                }
                for speaker in self.speakers
            ],
        }


def _blank_if_none(value: object) -> object:
    return "" if value is None else value


def _local(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).isoformat(timespec="seconds") if value else None


class AsRunLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], zone: ZoneInfo) -> None:
        self._sessions = sessions
        self.zone = zone

    def _statement(self, principal: Principal, query: AsRunFilter) -> Select[BroadcastZone, Broadcast, str, str, str]:
        statement = (
            select(BroadcastZone, Broadcast, Zone.name, Village.name, Township.name)
            .join(Broadcast, BroadcastZone.broadcast_id == Broadcast.id)
            .join(Zone, BroadcastZone.zone_id == Zone.id)
            .join(Village, BroadcastZone.village_id == Village.id)
            .join(Township, BroadcastZone.township_id == Township.id)
        )
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(BroadcastZone.township_id.in_(scope))
        if query.township_id is not None:
            statement = statement.where(BroadcastZone.township_id == query.township_id)
        if query.village_id is not None:
            statement = statement.where(BroadcastZone.village_id == query.village_id)
        if query.zone_id is not None:
            statement = statement.where(BroadcastZone.zone_id == query.zone_id)
        if query.kind:
            statement = statement.where(BroadcastZone.kind == query.kind)
        if query.state is not None:
            statement = statement.where(BroadcastZone.state == query.state)
        if query.since is not None:
            statement = statement.where(BroadcastZone.scheduled_at >= datetime.combine(query.since, time(), self.zone))
        if query.until is not None:
            end = datetime.combine(query.until + timedelta(days=1), time(), self.zone)
            statement = statement.where(BroadcastZone.scheduled_at < end)
        return statement.order_by(BroadcastZone.scheduled_at.desc(), BroadcastZone.id.desc())

    async def lines(self, principal: Principal, query: AsRunFilter) -> list[AsRunLine]:
        statement = self._statement(principal, query).limit(min(query.limit, MAX_ROWS)).offset(query.offset)
        async with self._sessions() as session:
            rows = (await session.execute(statement)).all()
            speakers, names = await self._speakers(session, [row[0].id for row in rows])
        return [
            AsRunLine(run, broadcast, zone_name, village_name, township_name, tuple(speakers[run.id]), names)
            for run, broadcast, zone_name, village_name, township_name in rows
        ]

    @staticmethod
    async def _speakers(
        session: AsyncSession, zone_run_ids: Sequence[int]
    ) -> tuple[dict[int, list[BroadcastSpeaker]], dict[int, str]]:
        """The speaker rows of these zone runs, and each speaker's name."""
        speakers: dict[int, list[BroadcastSpeaker]] = defaultdict(list)
        names: dict[int, str] = {}
        if zone_run_ids:
            found = await session.execute(
                select(BroadcastSpeaker, Speaker.name)
                .join(Speaker, BroadcastSpeaker.speaker_id == Speaker.id)
                .where(BroadcastSpeaker.zone_run_id.in_(zone_run_ids))
                .order_by(BroadcastSpeaker.id)
            )
            for row, name in found.all():
                speakers[row.zone_run_id].append(row)
                names[row.speaker_id] = name
        return speakers, names

    async def result(self, principal: Principal, broadcast_id: int) -> BroadcastResult:
        """One broadcast's result on every speaker in the caller's scope (404 when none of it is theirs)."""
        scope = principal.township_filter()
        async with self._sessions() as session:
            broadcast = await session.get(Broadcast, broadcast_id)
            if broadcast is None:
                raise NotFound("播出记录不存在")
            places_statement = (
                select(Zone.id, Zone.name, Village.name, Township.name, Township.id)
                .join(Village, Zone.village_id == Village.id)
                .join(Township, Village.township_id == Township.id)
                .where(Zone.id.in_(broadcast.zone_ids or []))
            )
            places = {
                zone_id: (f"{township} {village} · {zone}", township_id)
                for zone_id, zone, village, township, township_id in (await session.execute(places_statement)).all()
            }
            visible = {zone_id for zone_id, (_name, township) in places.items() if scope is None or township in scope}
            runs = [
                run
                for run in (
                    await session.scalars(
                        select(BroadcastZone)
                        .where(BroadcastZone.broadcast_id == broadcast.id)
                        .order_by(BroadcastZone.zone_id, BroadcastZone.attempt)
                    )
                ).all()
                if scope is None or run.township_id in scope
            ]
            if not runs and not visible:
                raise NotFound("播出记录不存在")
            speakers, names = await self._speakers(session, [run.id for run in runs])
            listed = (
                await session.execute(
                    select(Speaker.zone_id, Speaker.id, Speaker.name, Speaker.transport, Speaker.address)
                    .where(Speaker.zone_id.in_([run.zone_id for run in runs]), Speaker.enabled.is_(True))
                    .order_by(Speaker.id)
                )
            ).all()
            requested_by = await session.scalar(select(User.display_name).where(User.id == broadcast.requested_by))
        zone_speakers: dict[int, list[tuple[int, str, str, str]]] = defaultdict(list)
        for zone_id, speaker_id, name, transport, address in listed:
            zone_speakers[zone_id].append((speaker_id, name, transport, address))
        outcomes = item_speakers(
            [(run, speakers[run.id]) for run in runs],
            names=names,
            places={zone_id: name for zone_id, (name, _t) in places.items()},
            zone_speakers=zone_speakers,
        )
        return BroadcastResult(broadcast, requested_by, tuple(outcomes), len({run.zone_id for run in runs} or visible))

    async def csv(self, principal: Principal, query: AsRunFilter) -> str:
        """One CSV line per speaker (a zone without speakers still gets its line); UTF-8 with BOM for Excel."""
        lines = await self.lines(principal, AsRunFilter(**{**query.__dict__, "limit": MAX_ROWS, "offset": 0}))
        out = io.StringIO()
        out.write("\ufeff")
        writer = csv.writer(out)
        writer.writerow(
            [
                "记录号", "标题", "类别", "来源", "乡镇", "村", "播出分区", "计划时间", "开始", "结束",
                "分区结果", "重播", "终端", "传输方式", "终端状态", "终端开始", "终端结束", "已发送包数", "播出秒数",
                "原因",
            ]
        )  # fmt: skip
        for line in lines:
            data = line.as_json(self.zone)
            replay = f"{REPLAY_LABEL}（重播记录号{data['replay_of']}）" if data["replay_of"] is not None else ""
            base = [
                data["id"], data["title"], data["kind_label"], ORIGIN_LABELS.get(data["origin"], ""), data["township"],
                data["village"],
                data["zone"], data["scheduled_at"], data["started_at"] or "", data["ended_at"] or "",
                data["outcome"]["label"], replay,
            ]  # fmt: skip
            if not data["speakers"]:
                writer.writerow([*base, "", "", "", "", "", "", "", data["error"] or ""])
            for speaker in data["speakers"]:
                writer.writerow(
                    [
                        *base,
                        speaker["address"],
                        speaker["transport_label"],
                        speaker["state_label"],
                        speaker["started_at"] or "",
                        speaker["ended_at"] or "",
                        _blank_if_none(speaker["packets_sent"]),
                        _blank_if_none(speaker["played_s"]),
                        speaker["error"] or data["error"] or "",
                    ]
                )
        return out.getvalue()

    async def coverage(
        self, principal: Principal, *, since: date, until: date, township_id: int | None = None
    ) -> list[dict[str, Any]]:
        """For each village and month: how many distinct disclosure notices of each kind actually played.

        "Played" means at least one zone of the village finished it successfully;
        the same notice played every day of a month counts once for that month
        (the county reports notices published, not repetitions), and the number
        of successful plays is given beside it.
        """
        start = datetime.combine(since, time(), self.zone)
        end = datetime.combine(until + timedelta(days=1), time(), self.zone)
        statement = (
            select(
                BroadcastZone.village_id,
                BroadcastZone.kind,
                BroadcastZone.notice_id,
                BroadcastZone.started_at,
            )
            .where(BroadcastZone.state == RUN_SUCCESS)
            .where(BroadcastZone.kind.in_(DISCLOSURE_KINDS))
            .where(BroadcastZone.started_at >= start, BroadcastZone.started_at < end)
        )
        scope = principal.township_filter()
        if scope is not None:
            statement = statement.where(BroadcastZone.township_id.in_(scope))
        if township_id is not None:
            statement = statement.where(BroadcastZone.township_id == township_id)
        villages_statement = select(Village.id, Village.name, Township.id, Township.name).join(Township)
        if scope is not None:
            villages_statement = villages_statement.where(Township.id.in_(scope))
        if township_id is not None:
            villages_statement = villages_statement.where(Township.id == township_id)
        async with self._sessions() as session:
            played = (await session.execute(statement)).all()
            villages = (await session.execute(villages_statement.order_by(Township.id, Village.id))).all()
        notices: dict[tuple[int, str, str], set[int | None]] = defaultdict(set)
        plays: dict[tuple[int, str, str], int] = defaultdict(int)
        for village_id, kind, notice_id, started_at in played:
            if started_at is None:
                continue
            month = started_at.astimezone(self.zone).strftime("%Y-%m")
            notices[(village_id, month, kind)].add(notice_id)
            plays[(village_id, month, kind)] += 1
        months = _months(since, until)
        report = []
        for village_id, village_name, township_key, township_name in villages:
            for month in months:
                row: dict[str, Any] = {
                    "township_id": township_key,
                    "township": township_name,
                    "village_id": village_id,
                    "village": village_name,
                    "month": month,
                }
                for kind in DISCLOSURE_KINDS:
                    row[kind] = len(notices.get((village_id, month, kind), ()))
                    row[f"{kind}_plays"] = plays.get((village_id, month, kind), 0)
                row["total"] = sum(row[kind] for kind in DISCLOSURE_KINDS)
                report.append(row)
        return report

    async def last_results(self, speaker_ids: Sequence[int]) -> dict[int, BroadcastSpeaker]:
        """Each speaker's most recent as-run result (for the speaker list)."""
        if not speaker_ids:
            return {}
        latest = (
            select(func.max(BroadcastSpeaker.id))
            .where(BroadcastSpeaker.speaker_id.in_(speaker_ids))
            .group_by(BroadcastSpeaker.speaker_id)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(select(BroadcastSpeaker).where(BroadcastSpeaker.id.in_(latest)))).all()
        return {row.speaker_id: row for row in rows}


def _months(since: date, until: date) -> list[str]:
    months = []
    year, month = since.year, since.month
    while (year, month) <= (until.year, until.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


__all__ = ["DISCLOSURE_KINDS", "ORIGIN_LABELS", "AsRunFilter", "AsRunLine", "AsRunLog", "BroadcastResult", "Speaker"]
