"""Call intake: every hotline call becomes exactly one case — or one missed call, or a status query.

Three parts of the service learn that a call happened, and any of them may be
first or the only one:

* the **FastAGI** request at the end of a message (live: the caller is waiting
  to hear the case number), and the one the hang-up handler makes;
* the **call tracker**, when the last channel of the call's Linkedid hangs up
  (AMI);
* **reconciliation**, for calls that ended while the service was not
  listening (spool files, CDR records).

They all call :meth:`IntakeService.settle` (or :meth:`open_case`) with what
they know, keyed by the call's Linkedid. The database decides who was first:
``cases.linkedid``, ``missed_calls.linkedid`` and ``calls.linkedid`` are
UNIQUE, so a second writer's insert fails, it rolls back and reads what the
first one wrote. The decision itself depends only on where the caller got to
and on the recording's content, so every path reaches the same one.

Intake decides *that* a call becomes a case and what is known of its caller;
the case itself — its number and PIN, whether it is sealed, its ``created``
event in the history — is the case workflow's, reached through the small
:class:`CaseDesk` protocol (``cases.workflow.Workflow`` implements it;
``server.py`` hands it in). So a case is created in one place, whichever door
it came in by, and this package imports nothing from ``cases/``.

Recordings are attached by :meth:`attach`, which the tracker and
reconciliation call only once no channel of the call is left (a file still
being written is never moved). Calls the service placed itself (callbacks,
follow-ups, paging) carry a marker: they are recorded as ``placed`` and never
become cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum, auto
from pathlib import Path
from typing import Any, Literal, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from hotline.group_commit import GroupCommit
from hotline.phones import CallerNumber, PhoneRegistry, Placement, caller_number
from hotline.recordings import AudioFacts, RecordingStore, SpoolName, done_marker, file_time, inspect, sha256_file
from storage.models import Call, Case, MissedCall, Recording

log = logging.getLogger(__name__)

# Where in the IVR a caller has left a message (or was about to).
MESSAGE_STAGES = frozenset({"recording", "recorded", "readback"})
STATUS_STAGES = frozenset({"number", "status", "pin"})
MISSED_REASONS = {
    "welcome": "hung_up_at_welcome",
    "menu": "hung_up_at_menu",
    "transfer": "operator_not_reached",
}
# Who ended a call (``calls.ended_by``): the caller, our IVR having finished, or the system — Asterisk
# stopping with the call up, or the call limit. A call the system ended is never "she hung up".
ENDINGS = frozenset({"caller", "ivr", "call_limit", "system"})
SYSTEM_ENDINGS = frozenset({"call_limit", "system"})
ENDED_BY_SYSTEM = "ended_by_system"
PLACED_KINDS = frozenset({"callback", "survey", "page"})
# Recordings closed by the time their channel's hang-up handler runs: the caller's message, written by
# Record() in the very channel that runs the handler (the application has returned, its file closed,
# before any handler runs). MixMonitor's files (transfer, callback, survey) close later, on their own
# thread, and wait for the call's last channel and their ``.done`` marker.
CLOSED_AT_HANGUP = frozenset({"message"})
MAX_NUMBER_TRIES = 50
# How much later a second report's end of a call must be to move ``calls.ended_at``. The hang-up handler
# reports the end as the caller's channel hangs up; the tracker, a few milliseconds later, the last
# channel's Hangup (the other half of a Local channel, a bridged leg): the same hang-up, not worth a write
# (on SQLite it would wait for, then hold, the write lock the next caller's case needs). A leg that
# really outlives hers (an operator still on the line) moves it.
ENDED_AT_MOVES_BY = timedelta(seconds=1)

Outcome = Literal["case", "missed", "status_query", "placed"]


@dataclass
class CallFacts:
    """What one part of the service knows about a call when it reports it."""

    linkedid: str
    kind: str = "hotline"
    caller_raw: str | None = None
    caller_name: str | None = None
    presentation: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    stage: str | None = None
    choice: str | None = None
    category: str | None = None
    dial_status: str | None = None
    test_call: bool = False
    # Callbacks and surveys belong to an existing case.
    case_id: int | None = None
    # Who ended the call (one of ENDINGS), when the reporting part knows.
    ended_by: str | None = None
    # Whether the caller heard her case number read back in full (None: this part does not know).
    number_told: bool | None = None

    @property
    def ended_by_system(self) -> bool:
        return self.ended_by in SYSTEM_ENDINGS

    @property
    def operator_answered(self) -> bool:
        return self.stage == "talked" or (self.stage == "transfer" and (self.dial_status or "").upper() == "ANSWER")


@dataclass(frozen=True)
class CaseTicket:
    case_id: int
    number: str
    pin: str
    sealed: bool
    caller_withheld: bool
    created: bool


@dataclass(frozen=True)
class Settlement:
    outcome: Outcome
    case_id: int | None = None
    missed_call_id: int | None = None
    created: bool = False
    number: str | None = None


class _Unread(Enum):
    """A call row not read yet (``None`` says it was read and there is none)."""

    UNREAD = auto()


UNREAD = _Unread.UNREAD


@dataclass(frozen=True)
class _SettledHere:
    """A call this process settled by opening its case, and the report it wrote (see ``settle``)."""

    settlement: Settlement
    facts: CallFacts

    def adds_nothing(self, later: CallFacts) -> bool:
        """Whether ``later`` would change nothing of what was written: its call row's times, ending, stage
        and choice merged as :func:`_merge_times` merges them, and whether she heard her number.

        Every merge but the stage's only moves one way (the earliest start, the latest end, a system
        ending over the caller's), so the row — which other reports may have moved further since — is
        changed by ``later`` only if what this process wrote would be.
        """
        if later.number_told and not self.facts.number_told:
            return False
        written, merged = _call_times(self.facts), _call_times(self.facts)
        _merge_times(merged, later)
        return all(getattr(written, name) == getattr(merged, name) for name in _MERGED_FIELDS)


# The call row's fields a report merges into (:func:`_merge_times`).
_MERGED_FIELDS = ("started_at", "ended_at", "ended_by", "stage", "ivr_choice")
# Calls settled here with a case, remembered so that their second report (nearly every call: the hang-up
# handler's, then the call tracker's) costs no database round trip while 20 calls end together.
SETTLED_HERE_KEPT = 1000


class CaseStatus(Protocol):
    """The answer to a status query typed on the phone."""

    @property
    def result(self) -> Literal["found", "not_found", "need_pin", "confidential"]: ...

    @property
    def status(self) -> str | None: ...

    @property
    def case_id(self) -> int | None: ...


class CaseDesk(Protocol):
    """What intake needs of the case workflow (implemented by ``cases.workflow.Workflow``)."""

    def seals(self, category: str) -> bool:
        """Whether a case, call or missed call of this category is sealed (for inspectors only)."""
        ...

    async def open_call_case(
        self,
        session: AsyncSession,
        *,
        linkedid: str,
        category: str,
        caller_number: str | None,
        caller_withheld: bool,
        caller_name: str | None,
        village_id: int | None,
        township_id: int | None,
        ivr_choice: str,
        test_call: bool,
        via: str,
        called_at: datetime | None,
        number_told: bool,
    ) -> Case:
        """A new case for a call, with its ``created`` event, added and flushed in ``session`` (not committed).

        ``called_at`` is when the call began (Asterisk's time, not when the service heard of
        it): the case dates from it and its clocks start there; None when no part knew.
        ``number_told``: whether the caller has already heard her number in full.

        A UNIQUE violation (this call already has a case, or the drawn number was taken)
        surfaces as :class:`~sqlalchemy.exc.IntegrityError` at the flush; the caller rolls
        back and looks again.
        """
        ...

    async def mark_number_told(self, session: AsyncSession, case_id: int) -> None:
        """The caller of this hotline case has now heard her number in full (in ``session``, not committed)."""
        ...

    async def status_query(self, typed_number: str, caller_number: str | None, typed_pin: str) -> CaseStatus:
        """What a caller may learn on the phone about the case whose number she typed."""
        ...


@dataclass
class _KeyLocks:
    """One asyncio lock per Linkedid while someone holds it (in-process: only the elected worker writes)."""

    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self.locks.setdefault(key, asyncio.Lock())
        self.users[key] = self.users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self.users[key] -= 1
            if not self.users[key]:
                del self.users[key]
                del self.locks[key]


@dataclass(frozen=True)
class _CaseToOpen:
    """A call's case to be written (``IntakeService.open_case``)."""

    facts: CallFacts
    category: str
    caller: CallerNumber
    via: str


def _clean_name(raw: str | None, number: str | None) -> str | None:
    """A caller name worth keeping: not empty, not a placeholder, not just the number again."""
    if not raw:
        return None
    name = "".join(ch for ch in unicodedata.normalize("NFC", raw) if unicodedata.category(ch)[0] != "C").strip()
    if not name or name.lower() in ("<unknown>", "unknown", "anonymous") or name == number:
        return None
    return name[:64]


def category_of(facts: CallFacts, message: SpoolName | None = None) -> str:
    """Key 3 (or a discipline-tagged file) is a report: sealed from the first moment, whatever else is known."""
    if facts.choice == "3" or facts.category == "discipline" or (message is not None and message.tag == "discipline"):
        return "discipline"
    return "petition"


class IntakeService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        store: RecordingStore,
        phones: PhoneRegistry,
        cases: CaseDesk | None = None,
        *,
        min_speech_s: float = 0.4,
        mixmonitor_wait_s: float = 10.0,
        write_together: bool = True,
    ) -> None:
        """``write_together``: cases and recordings of calls that end together in one transaction each
        (:mod:`hotline.group_commit`); False writes each in its own, side by side."""
        self._sessions = sessions
        self._clock = clock
        self.store = store
        self._phones = phones
        self._desk = cases
        self._min_speech_s = min_speech_s
        self._mixmonitor_wait_s = mixmonitor_wait_s
        self._locks = _KeyLocks()
        self._settled_here: OrderedDict[str, _SettledHere] = OrderedDict()
        self._committed: list[Callable[[], None]] = []
        # Cases of calls that end together are written together (see ``open_case``).
        self._case_writes = GroupCommit("cases", self._open_together, self._open_alone, enabled=write_together)
        # So are the rows of their recordings, moved at the same hang-up (see ``_attach_one``).
        self._recording_writes = GroupCommit(
            "recordings", self._record_together, self._record_alone, enabled=write_together
        )

    def use_case_desk(self, cases: CaseDesk) -> None:
        """Open cases through ``cases`` (the composition root connects the workflow once both parts exist)."""
        self._desk = cases

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Called after the intake commits what operators see (a call's case, a missed call, a recording).

        The composition root hands in the case ledger's live feed, so an operator's screen shows a new
        call's case as soon as it is written.
        """
        self._committed.append(listener)

    def _tell_committed(self) -> None:
        for listener in self._committed:
            listener()

    @property
    def _cases(self) -> CaseDesk:
        if self._desk is None:
            raise RuntimeError("call intake has no case desk: server.py connects the case workflow")
        return self._desk

    # -- cases ----------------------------------------------------------------------------------

    async def open_case(self, facts: CallFacts, *, via: str, message: SpoolName | None = None) -> CaseTicket:
        """The call's case, created now if it has none (idempotent by Linkedid).

        Cases of calls that end together are written together (:mod:`hotline.group_commit`): 20 callers
        hanging up at once cost a few commits, not 20 turns of SQLite's one write lock (each ~30 ms on a
        busy event loop). If a group's transaction fails, each of its cases is written alone.
        """
        caller = caller_number(facts.caller_raw, facts.presentation)
        return await self._case_writes.write(_CaseToOpen(facts, category_of(facts, message), caller, via))

    async def _open_together(self, group: list[_CaseToOpen]) -> list[CaseTicket] | None:
        """All of ``group`` in one transaction, one commit; None (nothing written) if any write failed."""
        results: list[tuple[_CaseToOpen, Case, bool]] = []
        async with self._sessions() as session:
            try:
                # Everything read before the first write, as for one case (see ``_open_alone``): the cases, the
                # call rows and the callers' villages of the whole group in three statements.
                linkedids = {waiting.facts.linkedid for waiting in group}
                existing = {
                    case.linkedid: case
                    for case in (await session.scalars(select(Case).where(Case.linkedid.in_(linkedids)))).all()
                }
                calls = {
                    call.linkedid: call
                    for call in (await session.scalars(select(Call).where(Call.linkedid.in_(linkedids)))).all()
                }
                places = await self._phones.place_all(session, {waiting.caller.number for waiting in group})
                for waiting in group:
                    facts = waiting.facts
                    known = existing.get(facts.linkedid)
                    if known is not None:  # opened by another path before, or earlier in this very group
                        results.append((waiting, known, False))
                        continue
                    placement = places.get(waiting.caller.number) if waiting.caller.number else None
                    case = await self._write_case(session, waiting, placement, calls.get(facts.linkedid))
                    existing[facts.linkedid] = case
                    results.append((waiting, case, True))
                await session.commit()
            except Exception as exc:  # noqa: BLE001 - nothing lost: each is written alone next, its error its own
                # A UNIQUE violation (another path was first, a drawn number taken) or anything else.
                log.info("%d cases written together: %s (%s)", len(group), type(exc).__name__, exc)
                await session.rollback()
                return None
        if any(created for _, _, created in results):
            self._tell_committed()
        for waiting, case, created in results:
            if created:
                log.info(
                    "case %s opened for call %s (via %s%s, with %d others)",
                    case.id,
                    waiting.facts.linkedid,
                    waiting.via,
                    ", sealed" * case.sealed,
                    len(group) - 1,
                )
        return [_ticket(case, created=created) for _, case, created in results]

    async def _open_alone(self, waiting: _CaseToOpen) -> CaseTicket:
        facts, via = waiting.facts, waiting.via
        for _attempt in range(MAX_NUMBER_TRIES):
            async with self._sessions() as session:
                existing = await session.scalar(select(Case).where(Case.linkedid == facts.linkedid))
                if existing is not None:
                    return _ticket(existing, created=False)
                # Everything read before the first write: from the case's INSERT to the commit, SQLite's one
                # write lock (PostgreSQL: the day's roll-up rows) is held, and the next call's case waits for it.
                call = await session.scalar(select(Call).where(Call.linkedid == facts.linkedid))
                placement = await self._phones.place(session, waiting.caller.number)
                try:
                    case = await self._write_case(session, waiting, placement, call)
                except IntegrityError:
                    # Another path created this call's case first, or the random number was taken: look again.
                    await session.rollback()
                    continue
                await session.commit()
                self._tell_committed()
                log.info(
                    "case %s opened for call %s (via %s%s)", case.id, facts.linkedid, via, ", sealed" * case.sealed
                )
                return _ticket(case, created=True)
        raise RuntimeError(f"could not open a case for call {facts.linkedid}")

    async def _write_case(
        self, session: AsyncSession, waiting: _CaseToOpen, placement: Placement | None, call: Call | None
    ) -> Case:
        """The case and its call row, flushed (``placement`` and ``call`` read before, as every write here)."""
        case = await self._new_case(session, waiting.facts, waiting.category, waiting.caller, waiting.via, placement)
        await self._upsert_call(
            session, waiting.facts, "case", waiting.via, waiting.caller, case_id=case.id, known=call
        )
        await session.flush()
        return case

    async def _new_case(
        self,
        session: AsyncSession,
        facts: CallFacts,
        category: str,
        caller: CallerNumber,
        via: str,
        placement: Placement | None,
    ) -> Case:
        """The case's rows (``placement``: the caller's registered village, read before the first write)."""
        return await self._cases.open_call_case(
            session,
            linkedid=facts.linkedid,
            category=category,
            caller_number=caller.number,
            caller_withheld=caller.withheld,
            caller_name=(placement.name if placement and placement.name else None)
            or _clean_name(facts.caller_name, caller.number),
            village_id=placement.village_id if placement else None,
            township_id=placement.township_id if placement else None,
            ivr_choice=facts.choice or "",
            test_call=facts.test_call,
            via=via,
            called_at=facts.started_at,
            number_told=facts.number_told is True,
        )

    async def _upsert_call(
        self,
        session: AsyncSession,
        facts: CallFacts,
        outcome: Outcome,
        via: str,
        caller: CallerNumber,
        *,
        case_id: int | None = None,
        missed_call_id: int | None = None,
        known: Call | _Unread | None = UNREAD,
    ) -> Call:
        """The call's row, added or brought up to date (``known``: the row as already read in ``session``, None
        when it had none — a group's first read of its calls is not made again; by default it is read here)."""
        now = self._clock.now()
        call = await session.scalar(select(Call).where(Call.linkedid == facts.linkedid)) if known is UNREAD else known
        if call is None:
            call = Call(
                linkedid=facts.linkedid,
                kind=facts.kind if facts.kind in ("hotline", *PLACED_KINDS) else "hotline",
                direction="out" if facts.kind in PLACED_KINDS else "in",
                caller_number=caller.number,
                caller_withheld=caller.withheld,
                started_at=facts.started_at,
                ended_at=facts.ended_at,
                ended_by=facts.ended_by if facts.ended_by in ENDINGS else None,
                stage=facts.stage,
                ivr_choice=facts.choice,
                outcome=outcome,
                sealed=self._cases.seals(category_of(facts)) if facts.kind == "hotline" else False,
                case_id=case_id,
                missed_call_id=missed_call_id,
                settled_by=via,
                test_call=facts.test_call,
                created_at=now,
                updated_at=now,
            )
            session.add(call)
            return call
        if outcome == "case" and call.outcome != "case":
            call.outcome = "case"
        call.case_id = call.case_id or case_id
        call.missed_call_id = call.missed_call_id or missed_call_id
        _merge_times(call, facts)
        _touched(session, call, now)
        return call

    # -- settling a call that has ended -----------------------------------------------------------

    async def settle(self, facts: CallFacts, *, via: str) -> Settlement:
        """What became of a call that has ended (or whose caller hung up); idempotent."""
        if facts.kind in PLACED_KINDS:
            return await self._settle_placed(facts, via)
        async with self._locks.hold(facts.linkedid):
            settled_here = self._settled_here.get(facts.linkedid)
            if settled_here is not None and settled_here.adds_nothing(facts):
                return settled_here.settlement  # its case is open and its call row says all this already
            known = await self._known(facts, via)
            if known is not None:
                return known
            message = await self._message_file(facts.linkedid)
            has_speech = False
            if message is not None:
                audio = await asyncio.to_thread(_inspect_or_empty, message[0])
                has_speech = audio.has_speech(self._min_speech_s)
            if has_speech or facts.operator_answered:
                ticket = await self.open_case(facts, via=via, message=message[1] if message else None)
                if ticket.created:  # its call row was written from these facts (or merged with them)
                    self._remember(facts, Settlement("case", case_id=ticket.case_id, number=ticket.number))
                return Settlement("case", case_id=ticket.case_id, created=ticket.created, number=ticket.number)
            if facts.choice == "2" and (facts.stage in STATUS_STAGES or facts.stage == "done"):
                return await self._record_outcome(facts, via, "status_query")
            return await self._record_missed(
                facts, via, missed_reason(facts, message is not None), message[1] if message else None
            )

    def _remember(self, facts: CallFacts, settlement: Settlement) -> None:
        # A copy: a reporting part may go on filling in its own facts object.
        self._settled_here[facts.linkedid] = _SettledHere(settlement, replace(facts))
        while len(self._settled_here) > SETTLED_HERE_KEPT:
            self._settled_here.popitem(last=False)

    async def _known(self, facts: CallFacts, via: str) -> Settlement | None:
        """The call's settlement if one path already made it (bringing its end time up to date)."""
        async with self._sessions() as session:
            # The call row first: a case and its call row are committed together, and each SELECT may see
            # a newer snapshot than the one before (SQLite outside a write, PostgreSQL's READ COMMITTED).
            # Read the other way round, a case committed in between looked like a call without its case.
            call = await session.scalar(select(Call).where(Call.linkedid == facts.linkedid))
            case = await session.scalar(select(Case).where(Case.linkedid == facts.linkedid))
            if case is None and call is None:
                return None
            caller = caller_number(facts.caller_raw, facts.presentation)
            if case is not None:
                call = await self._upsert_call(session, facts, "case", via, caller, case_id=case.id)
                if facts.number_told and case.number_told is False:
                    await self._cases.mark_number_told(session, case.id)
                await session.commit()
                return Settlement("case", case_id=case.id, number=case.number)
            assert call is not None
            _merge_times(call, facts)
            _touched(session, call, self._clock.now())
            if facts.ended_by_system and call.missed_call_id is not None:
                # The first part to report may not have known that the system, not the caller, ended it.
                missed = await session.get(MissedCall, call.missed_call_id)
                if missed is not None and missed.reason != ENDED_BY_SYSTEM:
                    log.info("missed call %s: ended by the system, not %s", missed.id, missed.reason)
                    missed.reason = ENDED_BY_SYSTEM
            await session.commit()
            outcome: Outcome = call.outcome if call.outcome in ("missed", "status_query", "placed") else "case"  # type: ignore[assignment]
            return Settlement(outcome, case_id=call.case_id, missed_call_id=call.missed_call_id)

    async def _message_file(self, linkedid: str) -> tuple[Path, SpoolName] | None:
        # A directory listing: off the event loop, which paces the speakers' audio.
        for path, name in await asyncio.to_thread(self.store.spool_files, linkedid):
            if name.kind == "message":
                return path, name
        return None

    async def _record_outcome(self, facts: CallFacts, via: str, outcome: Outcome) -> Settlement:
        caller = caller_number(facts.caller_raw, facts.presentation)
        async with self._sessions() as session:
            await self._upsert_call(session, facts, outcome, via, caller)
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                known = await self._known(facts, via)
                return known or Settlement(outcome)
        return Settlement(outcome, created=True)

    async def _record_missed(self, facts: CallFacts, via: str, reason: str, message: SpoolName | None) -> Settlement:
        caller = caller_number(facts.caller_raw, facts.presentation)
        sealed = self._cases.seals(category_of(facts, message))
        async with self._sessions() as session:
            placement = await self._phones.place(session, caller.number)
            missed = MissedCall(
                linkedid=facts.linkedid,
                caller_number=caller.number,
                caller_withheld=caller.withheld,
                caller_name=(placement.name if placement and placement.name else None)
                or _clean_name(facts.caller_name, caller.number),
                village_id=placement.village_id if placement else None,
                township_id=placement.township_id if placement else None,
                at=facts.started_at or facts.ended_at or self._clock.now(),
                stage=facts.stage,
                reason=reason,
                ivr_choice=facts.choice,
                sealed=sealed,
                callback_state="pending" if caller.number else "no_number",
                test_call=facts.test_call,
                created_at=self._clock.now(),
            )
            session.add(missed)
            try:
                await session.flush()
                await self._upsert_call(session, facts, "missed", via, caller, missed_call_id=missed.id)
                await session.commit()
            except IntegrityError:
                await session.rollback()
                known = await self._known(facts, via)
                return known or Settlement("missed")
        self._tell_committed()
        log.info("missed call %s recorded for call %s (%s, via %s)", missed.id, facts.linkedid, reason, via)
        return Settlement("missed", missed_call_id=missed.id, created=True)

    async def _settle_placed(self, facts: CallFacts, via: str) -> Settlement:
        """A call the service placed (callback, survey, page): recorded, never a case."""
        caller = caller_number(facts.caller_raw, facts.presentation)
        async with self._sessions() as session:
            case_id = facts.case_id
            if case_id is not None and await session.get(Case, case_id) is None:
                case_id = None
            existing = await session.scalar(select(Call.id).where(Call.linkedid == facts.linkedid))
            await self._upsert_call(session, facts, "placed", via, caller, case_id=case_id)
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                return Settlement("placed", case_id=facts.case_id)
        return Settlement("placed", case_id=facts.case_id, created=existing is None)

    # -- recordings -------------------------------------------------------------------------------

    async def attach(self, linkedid: str, *, kinds: frozenset[str] | None = None) -> list[int]:
        """Move every spool recording of a call that has fully ended into storage and onto its case.

        Call only when no channel of ``linkedid`` is left — or, with ``kinds``, only for recordings of
        those kinds that are known to be closed (the hang-up handler's ``message``: see
        :data:`CLOSED_AT_HANGUP`). Idempotent: a file already attached (same source name, same checksum)
        is only removed from the spool. Returns the ids of the recordings attached now.
        """
        attached: list[int] = []
        async with self._locks.hold(f"attach:{linkedid}"):
            for path, name in await asyncio.to_thread(self.store.spool_files, linkedid):
                if kinds is not None and name.kind not in kinds:
                    continue
                try:
                    recording_id = await self._attach_one(path, name)
                except OSError as exc:
                    log.error("recording %s of call %s not moved: %s", path.name, linkedid, exc)
                    continue
                if recording_id is not None:
                    attached.append(recording_id)
        return attached

    async def _attach_one(self, path: Path, name: SpoolName) -> int | None:
        if name.kind in ("transfer", "callback", "survey"):
            await self._wait_for_mixmonitor(path)
        async with self._sessions() as session:
            existing = await session.scalar(select(Recording).where(Recording.source_name == path.name))
            if existing is not None:
                source_sha = await asyncio.to_thread(sha256_file, path)
                if source_sha == existing.sha256:
                    await asyncio.to_thread(self.store.release, path)
                else:
                    log.error("spool file %s differs from the recording already stored; left in place", path.name)
                return None
            owner = await self._owner(session, name)
            if owner is None:
                log.warning(
                    "recording %s: call %s has no case or missed call yet; kept in the spool", path.name, name.linkedid
                )
                return None
            case, missed = owner
        audio = await asyncio.to_thread(_inspect_or_empty, path)
        recorded_at = await asyncio.to_thread(file_time, path)
        safe_linkedid = name.linkedid.replace("/", "_")
        stem = f"{case.number if case else f'missed{missed.id if missed else 0}'}-{name.kind}-{safe_linkedid}"
        relative = self.store.destination(recorded_at, stem)
        stored = await asyncio.to_thread(self.store.adopt, path, relative)
        recording_id = await self._recording_writes.write(
            {
                "case_id": case.id if case else None,
                "missed_call_id": missed.id if (missed and not case) else None,
                "kind": name.kind,
                "linkedid": name.linkedid,
                "source_name": path.name,
                "path": stored.relative,
                "sha256": stored.sha256,
                "bytes": stored.bytes,
                "duration_s": audio.duration_s,
                "empty": audio.empty or audio.sound_s == 0,
                "recorded_at": recorded_at,
                "created_at": self._clock.now(),
            }
        )
        if recording_id is None:
            return None  # attached by another path first (its source file's name is UNIQUE)
        await asyncio.to_thread(self.store.release, path)
        log.info("recording %s attached (%s, %.1f s)", recording_id, name.kind, audio.duration_s)
        return recording_id

    async def _record_together(self, group: list[dict[str, Any]]) -> list[int | None] | None:
        """The rows of recordings moved together (callers hanging up together): one transaction, one commit."""
        async with self._sessions() as session:
            recordings = [Recording(**fields) for fields in group]
            session.add_all(recordings)
            try:
                await session.commit()
            except Exception as exc:  # noqa: BLE001 - nothing lost: each is recorded alone next, its error its own
                log.info("%d recordings written together: %s (%s)", len(group), type(exc).__name__, exc)
                await session.rollback()
                return None
        self._tell_committed()
        return [recording.id for recording in recordings]

    async def _record_alone(self, fields: dict[str, Any]) -> int | None:
        async with self._sessions() as session:
            recording = Recording(**fields)
            session.add(recording)
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                return None
        self._tell_committed()
        return recording.id

    async def _owner(self, session: AsyncSession, name: SpoolName) -> tuple[Case | None, MissedCall | None] | None:
        if name.case_id is not None:
            case = await session.get(Case, name.case_id)
            return (case, None) if case is not None else None
        case = await session.scalar(select(Case).where(Case.linkedid == name.linkedid))
        if case is not None:
            return case, None
        missed = await session.scalar(select(MissedCall).where(MissedCall.linkedid == name.linkedid))
        return (None, missed) if missed is not None else None

    async def _wait_for_mixmonitor(self, path: Path) -> None:
        """MixMonitor closes its file a moment after the call; its post-command marks when it has."""
        marker = done_marker(path)
        deadline = self._clock.monotonic() + self._mixmonitor_wait_s
        delay = 0.02
        while not await asyncio.to_thread(marker.exists):
            if self._clock.monotonic() >= deadline:
                log.warning(
                    "no MixMonitor marker for %s after %.0f s; taking it as it is", path.name, self._mixmonitor_wait_s
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # -- questions asked during a call --------------------------------------------------------------

    async def message_audio(self, linkedid: str) -> tuple[AudioFacts, SpoolName] | None:
        found = await self._message_file(linkedid)
        if found is None:
            return None
        return await asyncio.to_thread(_inspect_or_empty, found[0]), found[1]

    def has_speech(self, audio: AudioFacts) -> bool:
        return audio.has_speech(self._min_speech_s)

    async def status(self, typed: str, caller_raw: str | None, presentation: str | None, pin: str = "") -> CaseStatus:
        """A status query: the case workflow decides what this caller may hear (see ``CaseDesk``)."""
        caller = caller_number(caller_raw, presentation)
        return await self._cases.status_query(typed, caller.number, pin)

    # -- reading back -------------------------------------------------------------------------------

    async def outcome(self, linkedid: str) -> dict[str, Any] | None:
        """What became of a call, for the dial test and the API (None: nothing known yet)."""
        async with self._sessions() as session:
            call = await session.scalar(select(Call).where(Call.linkedid == linkedid))
            case = await session.scalar(select(Case).where(Case.linkedid == linkedid))
            if call is None and case is None:
                return None
            result: dict[str, Any] = {"linkedid": linkedid, "outcome": call.outcome if call else "case"}
            if call is not None:
                result["call"] = call_json(call)
            if case is None and call is not None and call.case_id is not None:
                case = await session.get(Case, call.case_id)
            if case is not None:
                result["case"] = case_json(case, await self._recordings(session, case_id=case.id))
            if call is not None and call.missed_call_id is not None:
                missed = await session.get(MissedCall, call.missed_call_id)
                if missed is not None:
                    result["missed_call"] = missed_json(missed, await self._recordings(session, missed_id=missed.id))
        return result

    @staticmethod
    async def _recordings(
        session: AsyncSession, *, case_id: int | None = None, missed_id: int | None = None
    ) -> list[Recording]:
        statement = select(Recording).order_by(Recording.id)
        if case_id is not None:
            statement = statement.where(Recording.case_id == case_id)
        else:
            statement = statement.where(Recording.missed_call_id == missed_id)
        return list((await session.scalars(statement)).all())

    # -- retention ------------------------------------------------------------------------------------

    async def purge_before(self, cutoff: datetime, *, batch: int = 500) -> int:
        """Delete recording files recorded before ``cutoff`` (the retention setting); rows stay, marked purged."""
        purged = 0
        while True:
            async with self._sessions() as session:
                rows: Sequence[Recording] = (
                    await session.scalars(
                        select(Recording)
                        .where(Recording.purged_at.is_(None), Recording.recorded_at < cutoff)
                        .order_by(Recording.id)
                        .limit(batch)
                    )
                ).all()
                if not rows:
                    return purged
                for recording in rows:
                    await asyncio.to_thread(self.store.purge, recording.path)
                    recording.purged_at = self._clock.now()
                    purged += 1
                await session.commit()


def _inspect_or_empty(path: Path) -> AudioFacts:
    """A file Asterisk created but never wrote into (0 bytes, or a broken header) is an empty recording."""
    try:
        return inspect(path)
    except (ValueError, OSError):
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        return AudioFacts(size, 0.0, True, 0.0, 8000)


def missed_reason(facts: CallFacts, has_message: bool) -> str:
    """Why a call left no case: where the caller got to — unless the system, not she, ended it."""
    if facts.ended_by_system:
        return ENDED_BY_SYSTEM
    if facts.stage in MESSAGE_STAGES or facts.stage == "done":
        return "nothing_said"
    return MISSED_REASONS.get(facts.stage or "", "nothing_said" if has_message else "unknown")


def _merge_times(call: Call, facts: CallFacts) -> None:
    """What another part reports adds to the call row: the earliest start, the latest end, a known ending.

    The latest end to the second (:data:`ENDED_AT_MOVES_BY`): a report a few milliseconds later is the same hang-up.
    """
    if facts.started_at is not None and (call.started_at is None or facts.started_at < call.started_at):
        call.started_at = facts.started_at
    if facts.ended_at is not None and (call.ended_at is None or facts.ended_at - call.ended_at >= ENDED_AT_MOVES_BY):
        call.ended_at = facts.ended_at
    if facts.ended_by in ENDINGS and (call.ended_by is None or facts.ended_by in SYSTEM_ENDINGS):
        call.ended_by = facts.ended_by
    if facts.stage and facts.stage != "done":
        call.stage = facts.stage
    if facts.choice and not call.ivr_choice:
        call.ivr_choice = facts.choice


def _call_times(facts: CallFacts) -> Call:
    """The fields a new call row takes from ``facts`` (as :meth:`IntakeService._upsert_call` writes them),
    on a row never added to a session."""
    return Call(
        started_at=facts.started_at,
        ended_at=facts.ended_at,
        ended_by=facts.ended_by if facts.ended_by in ENDINGS else None,
        stage=facts.stage,
        ivr_choice=facts.choice,
    )


def _touched(session: AsyncSession, call: Call, now: datetime) -> None:
    """The call row's ``updated_at`` moves only when a report changed it.

    A second path reporting what is already known (the tracker after the hang-up handler, nearly every
    call) then commits without writing: on SQLite it never waits for, nor holds, the one write lock that
    the next caller's case is waiting for.
    """
    if session.is_modified(call):
        call.updated_at = now


def _ticket(case: Case, *, created: bool) -> CaseTicket:
    return CaseTicket(case.id, case.number, case.pin, case.sealed, case.caller_withheld, created)


def recording_json(recording: Recording) -> dict[str, Any]:
    return {
        "id": recording.id,
        "kind": recording.kind,
        "path": recording.path,
        "sha256": recording.sha256,
        "bytes": recording.bytes,
        "duration_s": recording.duration_s,
        "empty": recording.empty,
        "recorded_at": recording.recorded_at,
        "purged": recording.purged_at is not None,
    }


def case_json(case: Case, recordings: Sequence[Recording] = ()) -> dict[str, Any]:
    return {
        "id": case.id,
        "number": case.number,
        "linkedid": case.linkedid,
        "channel": case.channel,
        "status": case.status,
        "category": case.category,
        "sealed": case.sealed,
        "caller_number": case.caller_number,
        "caller_withheld": case.caller_withheld,
        "caller_name": case.caller_name,
        "village_id": case.village_id,
        "township_id": case.township_id,
        "ivr_choice": case.ivr_choice,
        "test_call": case.test_call,
        "created_at": case.created_at,
        "learnt_at": case.learnt_at,
        "number_told": case.number_told,
        "recordings": [recording_json(recording) for recording in recordings],
    }


def missed_json(missed: MissedCall, recordings: Sequence[Recording] = ()) -> dict[str, Any]:
    return {
        "id": missed.id,
        "linkedid": missed.linkedid,
        "caller_number": missed.caller_number,
        "caller_withheld": missed.caller_withheld,
        "village_id": missed.village_id,
        "township_id": missed.township_id,
        "at": missed.at,
        "learnt_at": missed.created_at,
        "caller_name": missed.caller_name,
        "stage": missed.stage,
        "reason": missed.reason,
        "ivr_choice": missed.ivr_choice,
        "sealed": missed.sealed,
        "callback_state": missed.callback_state,
        "test_call": missed.test_call,
        "recordings": [recording_json(recording) for recording in recordings],
    }


def call_json(call: Call) -> dict[str, Any]:
    return {
        "linkedid": call.linkedid,
        "kind": call.kind,
        "direction": call.direction,
        "started_at": call.started_at,
        "ended_at": call.ended_at,
        "ended_by": call.ended_by,
        "learnt_at": call.created_at,
        "stage": call.stage,
        "ivr_choice": call.ivr_choice,
        "outcome": call.outcome,
        "settled_by": call.settled_by,
        "case_id": call.case_id,
        "missed_call_id": call.missed_call_id,
    }
