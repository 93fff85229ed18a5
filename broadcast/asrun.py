"""Reading the as-run log (播出记录): filters, CSV export, and the disclosure coverage report."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from storage.models import (
    KIND_LABELS,
    RUN_STATE_LABELS,
    RUN_SUCCESS,
    Broadcast,
    BroadcastSpeaker,
    BroadcastZone,
    Speaker,
    Township,
    Village,
    Zone,
)

DISCLOSURE_KINDS = ("disclosure_party", "disclosure_village", "disclosure_finance")
MAX_ROWS = 5000


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
            "state": run.state,
            "state_label": RUN_STATE_LABELS[run.state],
            "scheduled_at": _local(run.scheduled_at, zone),
            "started_at": _local(run.started_at, zone),
            "ended_at": _local(run.ended_at, zone),
            "error": run.error,
            "speakers": [
                {
                    "id": speaker.id,
                    "speaker_id": speaker.speaker_id,
                    "transport": speaker.transport,
                    "address": speaker.address,
                    "state": speaker.state,
                    "state_label": RUN_STATE_LABELS[speaker.state],
                    "started_at": _local(speaker.started_at, zone),
                    "ended_at": _local(speaker.ended_at, zone),
                    "error": speaker.error,
                }
                for speaker in self.speakers
            ],
        }


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
            ids = [row[0].id for row in rows]
            speakers: dict[int, list[BroadcastSpeaker]] = defaultdict(list)
            if ids:
                for speaker in (
                    await session.scalars(
                        select(BroadcastSpeaker)
                        .where(BroadcastSpeaker.zone_run_id.in_(ids))
                        .order_by(BroadcastSpeaker.id)
                    )
                ).all():
                    speakers[speaker.zone_run_id].append(speaker)
        return [
            AsRunLine(run, broadcast, zone_name, village_name, township_name, tuple(speakers[run.id]))
            for run, broadcast, zone_name, village_name, township_name in rows
        ]

    async def csv(self, principal: Principal, query: AsRunFilter) -> str:
        """One CSV line per speaker (a zone without speakers still gets its line); UTF-8 with BOM for Excel."""
        lines = await self.lines(principal, AsRunFilter(**{**query.__dict__, "limit": MAX_ROWS, "offset": 0}))
        out = io.StringIO()
        out.write("\ufeff")
        writer = csv.writer(out)
        writer.writerow(
            [
                "记录号", "标题", "类别", "来源", "乡镇", "村", "播出分区", "计划时间", "开始", "结束",
                "分区状态", "终端", "传输方式", "终端状态", "终端开始", "终端结束", "错误",
            ]
        )  # fmt: skip
        for line in lines:
            data = line.as_json(self.zone)
            base = [
                data["id"], data["title"], data["kind_label"], data["origin"], data["township"], data["village"],
                data["zone"], data["scheduled_at"], data["started_at"] or "", data["ended_at"] or "",
                data["state_label"],
            ]  # fmt: skip
            if not data["speakers"]:
                writer.writerow([*base, "", "", "", "", "", data["error"] or ""])
            for speaker in data["speakers"]:
                writer.writerow(
                    [
                        *base,
                        speaker["address"],
                        speaker["transport"],
                        speaker["state_label"],
                        speaker["started_at"] or "",
                        speaker["ended_at"] or "",
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


__all__ = ["DISCLOSURE_KINDS", "AsRunFilter", "AsRunLine", "AsRunLog", "Speaker"]
