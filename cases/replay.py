"""Recording replay: which file a (case id, recording id) pair may play, for whom, and the audit trail.

A client never names a file. It names a case and one of that case's
recordings by their numeric ids; the path comes from the database row and is
resolved inside the recordings directory (the hotline's recording store,
through :class:`RecordingFiles`, refuses anything that leaves it). The case's scope and sealing are checked
first (404 for anything the user may not see, a try at a sealed case logged).

Every play is logged, once per listening. The case page's player asks for the
file only when the person presses play (nothing is fetched when the page opens)
and names that listening with a token of its own (``listening=…``): the
listening's first request is one play in the audit log, and its seeks, skips
and speed changes — more requests with the same token — are not more plays.
Playing again after the end is a new listening. A request without a token (a
copied link, a download tool) is logged as before: a request for the start of
the file (no Range, or a range from byte 0) is one play, and for a sealed
recording every request is logged, seeks included, because each one hands out
part of a protected report.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from cases.sealed import CaseAccess
from common.errors import NotFound, PermissionDenied
from storage.models import Case, Recording

RECORDING_KIND_LABELS = {"message": "来电留言", "transfer": "转人工通话", "callback": "回拨通话", "survey": "回访通话"}


class RecordingFiles(Protocol):
    """Where recordings are kept (the hotline's ``RecordingStore``; ``server.py`` hands it in)."""

    def path_of(self, relative: str) -> Path:
        """The file of a recording row's ``path``; ValueError if it would leave the recordings directory."""
        ...


@dataclass(frozen=True)
class PlayableRecording:
    path: Path
    recording: Recording
    sealed: bool
    download_name: str


# Listenings remembered (per process) to log each once: far more than people listen to at a time.
LISTENINGS_KEPT = 10_000


class Replay:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], files: RecordingFiles, access: CaseAccess) -> None:
        self._sessions = sessions
        self.files = files
        self.access = access
        # (user id, recording id, token) of the listenings already logged, oldest first.
        self._listenings: OrderedDict[tuple[int, int, str], None] = OrderedDict()

    def _new_listening(self, principal: Principal, recording_id: int, token: str) -> bool:
        """Whether this is the listening's first request (then it is remembered)."""
        key = (principal.user_id, recording_id, token)
        if key in self._listenings:
            self._listenings.move_to_end(key)
            return False
        self._listenings[key] = None
        while len(self._listenings) > LISTENINGS_KEPT:
            self._listenings.popitem(last=False)
        return True

    async def open(
        self,
        principal: Principal,
        case_id: int,
        recording_id: int,
        *,
        range_start: int | None,
        range_header: str | None,
        download: bool,
        listening: str | None = None,
    ) -> PlayableRecording:
        async with self._sessions() as session:
            case = await session.get(Case, case_id)
            recording = await session.get(Recording, recording_id)
        extra = {"recording_id": recording_id}
        case = await self.access.require_visible(principal, case, via="recording", extra=extra)
        if recording is None or recording.case_id != case.id:
            raise NotFound("录音不存在", code="recording.not_found")
        if download and not self.access.may(principal, "download", sealed=case.sealed):
            raise PermissionDenied("您的角色不能下载录音", code="recording.download_not_allowed")
        if recording.purged_at is not None:
            raise NotFound("这段录音已按保存期限删除", code="recording.purged")
        try:
            path = self.files.path_of(recording.path)
        except ValueError:
            raise NotFound("录音不存在", code="recording.not_found") from None
        if not path.is_file():
            raise NotFound("录音文件不存在", code="recording.file_missing")
        if download:
            logged = True
        elif listening is not None:
            logged = self._new_listening(principal, recording.id, listening)
        else:
            logged = range_start in (None, 0) or case.sealed
        if logged:
            action = "recording.download" if download else "recording.play"
            if case.sealed:
                action += "_sealed"
            await self.access.log(
                principal,
                action,
                "recording",
                recording.id,
                {"case_id": case.id, "range": range_header or "", "kind": recording.kind}
                | ({"listening": listening} if listening else {}),
            )
        return PlayableRecording(path, recording, case.sealed, f"{case.number}-{recording.kind}-{recording.id}.wav")

    async def recordings(self, case_id: int) -> list[Recording]:
        """A case's recordings, oldest first (call only after the case's access was checked)."""
        async with self._sessions() as session:
            statement = select(Recording).where(Recording.case_id == case_id).order_by(Recording.id)
            return list((await session.scalars(statement)).all())
