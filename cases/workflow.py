"""The petition workflow: every legal transition of a case, its clocks, and its append-only history.

States (``cases.status``)::

    new 待受理 ──accept──▶ accepted 已受理 ──assign──▶ in_progress 办理中 ──resolve──▶ resolved 已办结
      │  └──assign (accepts too)────────────────────▲   │  ▲ transfer (转办)              │
      └──reject──▶ rejected 不予受理                   │  └── extension (one, approved)   │
                                                       └──────── follow-up 不满意 ◀───────┤
                                    closed 已销号 ◀──close── followed_up 已回访 ◀─满意/基本满意─┘

Every method here is one transaction: the case row is locked first (an
``UPDATE`` of itself, which on SQLite also takes the write lock and on
PostgreSQL a row lock), the case is read again, the rule is checked, and only
then is anything written — the change and its ``case_events`` row together.
A refused transition (:class:`common.errors.Conflict`, HTTP 409) or bad input
(:class:`common.errors.InvalidInput`) writes nothing.

Scope and sealing are checked before that, by :class:`cases.sealed.CaseAccess`
(which logs a try at a sealed case even when it is refused).

Every case is created here, whichever door it came in by: entered by staff
(:meth:`Workflow.create`), a missed call being called back
(:meth:`Workflow.case_from_missed_call`), or a hotline call — the hotline's
intake reaches :meth:`Workflow.open_call_case` through its ``CaseDesk``
protocol, which this class implements (with :meth:`Workflow.seals` and
:meth:`Workflow.status_query`). Each gets its number and PIN
(:mod:`cases.numbers`) and its ``created`` event here.
"""

from __future__ import annotations

import hmac
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from cases import numbers
from cases.clocks import ClockPolicy, Deadlines, HolidayTable
from cases.sealed import CREATE_ROLES, CaseAccess, seals
from common.clock import Clock
from common.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from common.phone_numbers import normalise
from storage import audit
from storage.models import (
    CASE_CATEGORIES,
    CASE_CHANNELS,
    CASE_OUTCOMES,
    CASE_STATUS_LABELS,
    FOLLOWUP_METHODS,
    REPLY_METHODS,
    SATISFACTION_LEVELS,
    Case,
    CaseEvent,
    CaseLedger,
    MissedCall,
    Township,
    Unit,
    Village,
)

OPEN_STATUSES = ("accepted", "in_progress")
# Staff enter these (来访, 网格员, 来信, 网上); the hotline opens the others itself.
ENTERED_CHANNELS = tuple(channel for channel in CASE_CHANNELS if channel != "hotline")
MAX_LEADER_CHARS = 64
MAX_SUMMARY_CHARS = 2000


@dataclass(frozen=True)
class Actor:
    """Who changes a case: a signed-in person, or a part of the service (the follow-up runner)."""

    user_id: int | None
    username: str
    display_name: str

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(principal.user_id, principal.username, principal.display_name)


FOLLOWUP_RUNNER = Actor(None, "system:followup", "自动回访")
CALLBACK_RUNNER = Actor(None, "system:callback", "回拨")
HOTLINE_INTAKE = Actor(None, "system:hotline", "热线系统")


@dataclass(frozen=True)
class StatusAnswer:
    """What a caller may learn about a case on the phone (the hotline's ``CaseStatus``)."""

    result: Literal["found", "not_found", "need_pin", "confidential"]
    status: str | None = None
    case_id: int | None = None


@dataclass
class Change:
    """What a transition did, for its event row."""

    kind: str
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    note: str | None = None


def _conflict(message: str, code: str) -> Conflict:
    return Conflict(message, code=code)


def _status_conflict(case: Case, action: str) -> Conflict:
    label = CASE_STATUS_LABELS.get(case.status, case.status)
    return Conflict(f"案件当前是“{label}”，不能{action}", code="case.illegal_transition")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class Workflow:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        holidays: HolidayTable,
        access: CaseAccess,
        *,
        note_max_chars: int = 5000,
        case_number_length: int = 8,
        pin_length: int = 4,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.holidays = holidays
        self.access = access
        self.note_max_chars = note_max_chars
        self._case_number_length = case_number_length
        self._pin_length = pin_length
        self._listeners: list[Callable[[int, str], Awaitable[None]]] = []

    @property
    def policy(self) -> ClockPolicy:
        return self.holidays.policy

    def on_clock(self, clock: Clock) -> Workflow:
        """The same workflow reading another clock, with no listeners: for entering history (the demo's year).

        Every rule, check and event is the workflow's own; only "now" is the caller's, and nothing that
        listens for live changes (the follow-up runner) hears about cases that happened long ago.
        """
        return Workflow(
            self._sessions,
            clock,
            self.holidays,
            self.access,
            note_max_chars=self.note_max_chars,
            case_number_length=self._case_number_length,
            pin_length=self._pin_length,
        )

    def on_change(self, listener: Callable[[int, str], Awaitable[None]]) -> None:
        """Called with (case id, event kind) after each committed change (the follow-up runner listens)."""
        self._listeners.append(listener)

    # -- input cleaning ---------------------------------------------------------------------

    def text(self, value: str | None, field_name: str, label: str, *, required: bool = True) -> str | None:
        """Free text (notes, reasons, results): no control characters, at most note_max_chars."""
        cleaned = unicodedata.normalize("NFC", value or "").strip()
        cleaned = "".join(ch for ch in cleaned if ch in "\n\t" or unicodedata.category(ch) != "Cc")
        if not cleaned:
            if required:
                raise InvalidInput(f"请填写{label}", fields={field_name: "必填"})
            return None
        if len(cleaned) > self.note_max_chars:
            raise InvalidInput(
                f"{label}最多{self.note_max_chars}个字（现在{len(cleaned)}个字）",
                code="text.too_long",
                fields={field_name: f"最多{self.note_max_chars}个字"},
            )
        return cleaned

    @staticmethod
    def _short(value: str | None, field_name: str, label: str, limit: int) -> str | None:
        cleaned = unicodedata.normalize("NFC", value or "").strip()
        if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in cleaned):
            raise InvalidInput(f"{label}里有不可见的控制字符", fields={field_name: "含有控制字符"})
        if len(cleaned) > limit:
            raise InvalidInput(f"{label}最多{limit}个字", fields={field_name: f"最多{limit}个字"})
        return cleaned or None

    # -- reading ----------------------------------------------------------------------------

    async def visible_case(self, principal: Principal, case_id: int, *, via: str) -> Case:
        async with self._sessions() as session:
            case = await session.get(Case, case_id)
        return await self.access.require_visible(principal, case, via=via)

    async def deadlines(self, session: AsyncSession | None = None) -> Deadlines:
        return await self.holidays.deadlines(session)

    # -- the transaction every change goes through ------------------------------------------

    async def _change(
        self,
        principal: Principal | None,
        case_id: int,
        action: str,
        apply: Callable[[AsyncSession, Case, CaseLedger, Deadlines, datetime], Awaitable[list[Change]]],
        *,
        actor: Actor | None = None,
    ) -> Case:
        if principal is not None:
            case = await self.visible_case(principal, case_id, via=f"case.{action}")
            self.access.require(principal, action, sealed=case.sealed)
            actor = Actor.of(principal)
        assert actor is not None
        now = self._clock.now()
        async with self._sessions() as session:
            await self._lock(session, case_id)
            found = await session.get(Case, case_id, populate_existing=True)
            if found is None:
                raise NotFound("案件不存在", code="case.not_found")
            if principal is not None and not self.access.may_see(
                principal, sealed=found.sealed, township_id=found.township_id
            ):
                # Sealed or moved out of scope by someone else since the check above: as if it never existed.
                raise NotFound("案件不存在", code="case.not_found")
            case = found
            ledger = await self._ledger(session, case, now)
            deadlines = await self.deadlines(session)
            from_status = case.status
            changes = await apply(session, case, ledger, deadlines, now)
            case.updated_at = now
            ledger.updated_at = now
            for change in changes:
                session.add(
                    CaseEvent(
                        case_id=case.id,
                        at=now,
                        user_id=actor.user_id,
                        username=actor.username,
                        display_name=actor.display_name,
                        kind=change.kind,
                        from_status=from_status,
                        to_status=case.status,
                        before={key: _plain(value) for key, value in change.before.items()},
                        after={key: _plain(value) for key, value in change.after.items()},
                        note=change.note,
                    )
                )
            await session.commit()
        for listener in self._listeners:
            for change in changes:
                await listener(case.id, change.kind)
        return case

    @staticmethod
    async def _lock(session: AsyncSession, case_id: int) -> None:
        """Serialise changes to one case: writing the row first takes the lock on both databases."""
        await session.execute(update(Case).where(Case.id == case_id).values(updated_at=Case.updated_at))

    @staticmethod
    async def _ledger(session: AsyncSession, case: Case, now: datetime) -> CaseLedger:
        ledger = await session.get(CaseLedger, case.id, populate_existing=True)
        if ledger is None:
            ledger = CaseLedger(
                case_id=case.id, extension_state="none", extension_days=0, reopen_count=0, late=False, updated_at=now
            )
            session.add(ledger)
        return ledger

    async def _unit(self, session: AsyncSession, unit_id: int) -> Unit:
        unit = await session.get(Unit, unit_id)
        if unit is None or not unit.active:
            raise InvalidInput("承办单位不存在或已停用", code="unit.not_found", fields={"unit_id": "没有这个单位"})
        return unit

    # -- creating a case (walk-ins, grid workers, letters) ----------------------------------

    async def create(
        self,
        principal: Principal,
        *,
        channel: str,
        summary: str,
        township_id: int,
        village_id: int | None = None,
        category: str = "petition",
        caller_number: str | None = None,
        caller_name: str | None = None,
    ) -> Case:
        principal.require_role(*CREATE_ROLES)
        if channel not in ENTERED_CHANNELS:
            raise InvalidInput("来源渠道不正确", fields={"channel": "取值不正确"})
        if category not in CASE_CATEGORIES:
            raise InvalidInput("类别不正确", fields={"category": "取值不正确"})
        summary_text = self.text(summary, "summary", "诉求内容")
        name = self._short(caller_name, "caller_name", "姓名", 64)
        number = None
        if caller_number:
            number = normalise(caller_number)
            if number is None:
                raise InvalidInput("电话号码不正确", fields={"caller_number": "格式不正确"})
        if not principal.sees_township(township_id):
            raise InvalidInput("所属乡镇不存在", fields={"township_id": "没有这个乡镇"})
        async with self._sessions() as session:
            if await session.get(Township, township_id) is None:
                raise InvalidInput("所属乡镇不存在", fields={"township_id": "没有这个乡镇"})
            if village_id is not None:
                village = await session.get(Village, village_id)
                if village is None or village.township_id != township_id:
                    raise InvalidInput("村不在所选乡镇", fields={"village_id": "不属于这个乡镇"})
            fields = {
                "channel": channel,
                "category": category,
                "sealed": seals(category),
                "caller_number": number,
                "caller_name": name,
                "village_id": village_id,
                "township_id": township_id,
                "summary": summary_text,
                "test_call": False,
            }
            after = {key: fields[key] for key in ("channel", "category", "township_id", "village_id", "sealed")}
            return await self._open_new_case(session, principal, fields, after)

    async def case_from_missed_call(self, principal: Principal, missed_id: int) -> Case:
        """A missed call being called back becomes a case (once): the conversation needs a case to belong to."""
        async with self._sessions() as session:
            missed = await session.get(MissedCall, missed_id)
            if missed is None or not self.access.may_see(
                principal, sealed=missed.sealed, township_id=missed.township_id
            ):
                if missed is not None and missed.sealed:
                    self.access.deny(principal, "missed_call.sealed_denied", "missed_call", missed_id, {})
                raise NotFound("未接来电不存在", code="missed_call.not_found")
            if missed.case_id is not None:
                case = await session.get(Case, missed.case_id)
                assert case is not None
                return case
            if missed.caller_number is None:
                raise Conflict("这通未接来电没有号码，无法回拨", code="missed_call.no_number")
            self.access.require(principal, "callback", sealed=missed.sealed)
            fields = {
                "channel": "hotline",
                "category": "discipline" if missed.sealed else "petition",
                "sealed": missed.sealed,
                "caller_number": missed.caller_number,
                "caller_name": missed.caller_name,
                "village_id": missed.village_id,
                "township_id": missed.township_id,
                "ivr_choice": missed.ivr_choice,
                "summary": None,
                "test_call": missed.test_call,
            }
            after = {"channel": "hotline", "missed_call_id": missed.id, "missed_at": missed.at.isoformat()}

            async def link(case: Case) -> None:
                returned = await session.get(MissedCall, missed_id)
                assert returned is not None
                returned.case_id = case.id

            return await self._open_new_case(session, principal, fields, after, "回拨未接来电，转为案件", link)

    async def _open_new_case(
        self,
        session: AsyncSession,
        principal: Principal,
        fields: dict[str, Any],
        after: dict[str, Any],
        note: str | None = None,
        also: Callable[[Case], Awaitable[None]] | None = None,
    ) -> Case:
        """A new case under a freshly drawn number (drawn again if taken), with its 登记 event; committed."""
        fields = {"linkedid": None, "caller_withheld": False, **fields}
        for _ in range(50):
            try:
                case = await self._add_case(session, fields, Actor.of(principal), after, note)
            except IntegrityError:
                await session.rollback()  # the random number was taken: draw again
                continue
            if also is not None:
                await also(case)
            await session.commit()
            for listener in self._listeners:
                await listener(case.id, "created")
            return case
        raise RuntimeError("could not draw a free case number")

    async def _add_case(
        self,
        session: AsyncSession,
        fields: dict[str, Any],
        actor: Actor,
        after: dict[str, Any],
        note: str | None,
        *,
        came_in_at: datetime | None = None,
    ) -> Case:
        """The one place a case row is made: a drawn number and PIN, flushed, and its ``created`` event.

        ``came_in_at``: when the case really came in, if earlier than now (a call the service learnt
        of late); the case dates from it and its clocks start there. ``learnt_at`` is always now,
        and so is the ``created`` event (the history says when the service registered it).
        """
        now = self._clock.now()
        case = Case(
            number=numbers.new_case_number(self._case_number_length),
            pin=numbers.new_pin(self._pin_length),
            status="new",
            created_at=min(came_in_at, now) if came_in_at is not None else now,
            learnt_at=now,
            updated_at=now,
            **fields,
        )
        session.add(case)
        await session.flush()
        session.add(
            CaseEvent(
                case_id=case.id,
                at=now,
                user_id=actor.user_id,
                username=actor.username,
                display_name=actor.display_name,
                kind="created",
                from_status=None,
                to_status="new",
                before={},
                after=after,
                note=note,
            )
        )
        return case

    # -- the hotline's door (its intake's CaseDesk protocol) --------------------------------

    @staticmethod
    def seals(category: str) -> bool:
        return seals(category)

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
        """A hotline call's case, added and flushed in the intake's transaction (which writes the call row too).

        It dates from ``called_at``, when the call began (its acceptance clock starts there,
        however late the service learnt of the call). Not committed: the intake commits the
        case and its call row together, and on a UNIQUE violation (another path was first,
        or the number was taken) rolls back and looks again.
        """
        sealed = seals(category)
        fields = {
            "linkedid": linkedid,
            "channel": "hotline",
            "category": category,
            "sealed": sealed,
            "caller_number": caller_number,
            "caller_withheld": caller_withheld,
            "caller_name": caller_name,
            "village_id": village_id,
            "township_id": township_id,
            "ivr_choice": ivr_choice,
            "test_call": test_call,
            "number_told": number_told,
        }
        after = {
            "channel": "hotline",
            "category": category,
            "township_id": township_id,
            "village_id": village_id,
            "sealed": sealed,
            "via": via,
        }
        if called_at is not None:
            after["called_at"] = called_at.isoformat()
        case = await self._add_case(session, fields, HOTLINE_INTAKE, after, None, came_in_at=called_at)
        audit.record(
            session,
            audit.Actor(user_id=None, username=HOTLINE_INTAKE.username),
            at=case.learnt_at or case.created_at,
            action="case.create",
            object_type="case",
            object_id=case.id,
            detail={"channel": "hotline", "via": via, "sealed": sealed, "test": test_call},
        )
        return case

    @staticmethod
    async def mark_number_told(session: AsyncSession, case_id: int) -> None:
        """The caller heard her number read back in full: nobody needs to call her back to tell it."""
        await session.execute(
            update(Case).where(Case.id == case_id, Case.number_told.is_(False)).values(number_told=True)
        )

    async def status_query(self, typed_number: str, caller_number: str | None, typed_pin: str) -> StatusAnswer:
        """Only to the number that filed the case, or with its PIN; never for a sealed case."""
        number = numbers.clean_typed(typed_number)
        if not numbers.is_valid(number, length=self._case_number_length):
            return StatusAnswer("not_found")
        async with self._sessions() as session:
            case = await session.scalar(select(Case).where(Case.number == number))
        if case is None:
            return StatusAnswer("not_found")
        pin = numbers.clean_typed(typed_pin or "")
        filed_it = caller_number is not None and case.caller_number is not None and caller_number == case.caller_number
        if not filed_it and not (pin and hmac.compare_digest(pin, case.pin)):
            # The same answer for every case, sealed or not: another phone must not learn that a
            # number belongs to a report (检举控告工作规则 art. 47: even its existence is confidential).
            return StatusAnswer("need_pin", case_id=case.id)
        if case.sealed:
            return StatusAnswer("confidential", case_id=case.id)
        return StatusAnswer("found", case.status, case.id)

    # -- triage (分拣) ------------------------------------------------------------------------

    async def triage(
        self,
        principal: Principal,
        case_id: int,
        *,
        township_id: int | None = None,
        village_id: int | None = None,
        category: str | None = None,
        unit_id: int | None = None,
        summary: str | None = None,
        caller_name: str | None = None,
        note: str | None = None,
    ) -> Case:
        note_text = self.text(note, "note", "说明", required=False)
        summary_text = self.text(summary, "summary", "诉求摘要", required=False) if summary is not None else None
        if summary_text is not None and len(summary_text) > MAX_SUMMARY_CHARS:
            raise InvalidInput(f"诉求摘要最多{MAX_SUMMARY_CHARS}个字", fields={"summary": "太长"})
        name = self._short(caller_name, "caller_name", "姓名", 64) if caller_name is not None else None
        if category is not None and category not in CASE_CATEGORIES:
            raise InvalidInput("类别不正确", fields={"category": "取值不正确"})
        if township_id is not None and not principal.sees_township(township_id):
            raise InvalidInput("所属乡镇不存在", fields={"township_id": "没有这个乡镇"})

        async def apply(
            session: AsyncSession, case: Case, ledger: CaseLedger, _d: Deadlines, _now: datetime
        ) -> list[Change]:
            if case.status in ("rejected", "closed"):
                raise _status_conflict(case, "修改分拣信息")
            if case.sealed and category is not None and not seals(category):
                raise Conflict("违纪举报案件一经密封不能解除", code="case.sealed_forever")
            change = Change("triaged", note=note_text)
            await self._move(session, case, change, township_id, village_id)
            if category is not None and category != case.category:
                change.before["category"], change.after["category"] = case.category, category
                case.category = category
                if seals(category) and not case.sealed:
                    change.before["sealed"], change.after["sealed"] = False, True
                    case.sealed = True
            if unit_id is not None and unit_id != case.unit_id:
                await self._triage_unit(session, case, change, unit_id)
            if summary_text is not None and summary_text != case.summary:
                change.before["summary"], change.after["summary"] = case.summary, summary_text
                case.summary = summary_text
            if name is not None and name != case.caller_name:
                change.before["caller_name"], change.after["caller_name"] = case.caller_name, name
                case.caller_name = name
            if not change.after and not note_text:
                raise InvalidInput("没有需要修改的内容", code="case.nothing_changed")
            return [change]

        return await self._change(principal, case_id, "triage", apply)

    @staticmethod
    async def _move(
        session: AsyncSession, case: Case, change: Change, township_id: int | None, village_id: int | None
    ) -> None:
        """Triage's new township and village (either may stay): checked, set and noted in ``change``."""
        new_township = township_id if township_id is not None else case.township_id
        if township_id is not None and township_id != case.township_id:
            if await session.get(Township, township_id) is None:
                raise InvalidInput("所属乡镇不存在", fields={"township_id": "没有这个乡镇"})
            change.before["township_id"], change.after["township_id"] = case.township_id, township_id
            case.township_id = township_id
            if village_id is None and case.village_id is not None:
                # A village of the old township cannot stay.
                change.before["village_id"], change.after["village_id"] = case.village_id, None
                case.village_id = None
        if village_id is not None and village_id != case.village_id:
            village = await session.get(Village, village_id)
            if village is None or village.township_id != new_township:
                raise InvalidInput("村不在所选乡镇", fields={"village_id": "不属于这个乡镇"})
            change.before["village_id"], change.after["village_id"] = case.village_id, village_id
            case.village_id = village_id

    async def _triage_unit(self, session: AsyncSession, case: Case, change: Change, unit_id: int) -> None:
        """Triage names the unit of a new case only; once accepted, assignment and transfer change it."""
        if case.status != "new":
            raise Conflict("已受理的案件请用“交办”或“转办”更换承办单位", code="case.use_transfer")
        await self._unit(session, unit_id)
        change.before["unit_id"], change.after["unit_id"] = case.unit_id, unit_id
        case.unit_id = unit_id

    # -- acceptance -------------------------------------------------------------------------

    @staticmethod
    def _accept(case: Case, ledger: CaseLedger, deadlines: Deadlines, now: datetime) -> Change:
        if case.township_id is None:
            raise Conflict("请先分拣，确定所属乡镇，再受理", code="case.needs_township")
        ledger.acceptance_due = deadlines.acceptance_deadline(case.created_at)
        ledger.accepted_at = now
        ledger.resolution_due = deadlines.resolution_deadline(now)
        if now >= ledger.acceptance_due:
            ledger.late = True
        case.status = "accepted"
        return Change(
            "accepted",
            before={"status": "new"},
            after={"status": "accepted", "resolution_due": ledger.resolution_due, "late": ledger.late},
        )

    async def accept(self, principal: Principal, case_id: int, *, note: str | None = None) -> Case:
        note_text = self.text(note, "note", "说明", required=False)

        async def apply(
            _session: AsyncSession, case: Case, ledger: CaseLedger, deadlines: Deadlines, now: datetime
        ) -> list[Change]:
            if case.status != "new":
                raise _status_conflict(case, "受理")
            change = self._accept(case, ledger, deadlines, now)
            change.note = note_text
            return [change]

        return await self._change(principal, case_id, "accept", apply)

    async def reject(self, principal: Principal, case_id: int, *, reason: str) -> Case:
        reason_text = self.text(reason, "reason", "不予受理的理由")

        async def apply(
            _session: AsyncSession, case: Case, ledger: CaseLedger, deadlines: Deadlines, now: datetime
        ) -> list[Change]:
            if case.status != "new":
                raise _status_conflict(case, "不予受理")
            ledger.acceptance_due = deadlines.acceptance_deadline(case.created_at)
            ledger.rejected_at = now
            ledger.rejected_reason = reason_text
            if now >= ledger.acceptance_due:
                ledger.late = True
            case.status = "rejected"
            return [Change("rejected", {"status": "new"}, {"status": "rejected"}, reason_text)]

        return await self._change(principal, case_id, "reject", apply)

    # -- assignment (交办) and transfer (转办) --------------------------------------------------

    async def assign(
        self, principal: Principal, case_id: int, *, unit_id: int, leader_name: str, note: str | None = None
    ) -> Case:
        leader = self._short(leader_name, "leader_name", "包案领导", MAX_LEADER_CHARS)
        if not leader:
            raise InvalidInput("请填写包案领导", fields={"leader_name": "必填"})
        note_text = self.text(note, "note", "交办意见", required=False)

        async def apply(
            session: AsyncSession, case: Case, ledger: CaseLedger, deadlines: Deadlines, now: datetime
        ) -> list[Change]:
            if case.status not in ("new", "accepted"):
                if case.status == "in_progress":
                    raise Conflict("案件已在办理中，更换承办单位请用“转办”", code="case.use_transfer")
                raise _status_conflict(case, "交办")
            unit = await self._unit(session, unit_id)
            changes = []
            if case.status == "new":
                changes.append(self._accept(case, ledger, deadlines, now))
            before = {"status": case.status, "unit_id": case.unit_id, "leader_name": ledger.leader_name}
            case.unit_id = unit.id
            case.status = "in_progress"
            ledger.leader_name = leader
            ledger.assigned_at = now
            after = {"status": "in_progress", "unit_id": unit.id, "unit_name": unit.name, "leader_name": leader}
            changes.append(Change("assigned", before, after, note_text))
            return changes

        return await self._change(principal, case_id, "assign", apply)

    async def transfer(self, principal: Principal, case_id: int, *, unit_id: int, reason: str) -> Case:
        reason_text = self.text(reason, "reason", "转办理由")

        async def apply(
            session: AsyncSession, case: Case, ledger: CaseLedger, _d: Deadlines, _now: datetime
        ) -> list[Change]:
            if case.status != "in_progress":
                raise _status_conflict(case, "转办")
            unit = await self._unit(session, unit_id)
            if unit.id == case.unit_id:
                raise InvalidInput("案件已经在这个单位办理", fields={"unit_id": "与现承办单位相同"})
            old = await session.get(Unit, case.unit_id) if case.unit_id is not None else None
            before = {"unit_id": case.unit_id, "unit_name": old.name if old else None}
            case.unit_id = unit.id
            return [Change("transferred", before, {"unit_id": unit.id, "unit_name": unit.name}, reason_text)]

        return await self._change(principal, case_id, "transfer", apply)

    # -- the one extension ------------------------------------------------------------------

    async def request_extension(self, principal: Principal, case_id: int, *, days: int, reason: str) -> Case:
        limit = self.policy.max_extension_days
        if not 1 <= days <= limit:
            raise InvalidInput(f"延期天数应为1到{limit}天", code="extension.too_long", fields={"days": f"1到{limit}天"})
        reason_text = self.text(reason, "reason", "延期理由")

        async def apply(
            _session: AsyncSession, case: Case, ledger: CaseLedger, _d: Deadlines, _now: datetime
        ) -> list[Change]:
            if case.status not in OPEN_STATUSES:
                raise _status_conflict(case, "申请延期")
            if ledger.extension_state == "approved":
                raise _conflict("这个案件已经延期过一次，不能再次延期", "extension.already_extended")
            if ledger.extension_state == "requested":
                raise _conflict("已有延期申请在等待审批", "extension.pending")
            ledger.extension_state = "requested"
            ledger.extension_requested_days = days
            ledger.extension_reason = reason_text
            ledger.extension_requested_by = principal.user_id
            ledger.extension_decided_by = None
            return [Change("extension_requested", {}, {"days": days}, reason_text)]

        return await self._change(principal, case_id, "request_extension", apply)

    async def decide_extension(
        self, principal: Principal, case_id: int, *, approve: bool, note: str | None = None
    ) -> Case:
        note_text = self.text(note, "note", "审批意见", required=not approve)

        async def apply(
            _session: AsyncSession, case: Case, ledger: CaseLedger, deadlines: Deadlines, _now: datetime
        ) -> list[Change]:
            if ledger.extension_state != "requested":
                raise _conflict("没有等待审批的延期申请", "extension.none_pending")
            if case.status not in OPEN_STATUSES:
                raise _status_conflict(case, "审批延期")
            if ledger.extension_requested_by == principal.user_id:
                raise PermissionDenied("不能审批自己提出的延期申请", code="extension.own_request")
            ledger.extension_decided_by = principal.user_id
            days = ledger.extension_requested_days or 0
            if not approve:
                ledger.extension_state = "denied"
                return [Change("extension_denied", {}, {"days": days}, note_text)]
            assert ledger.resolution_due is not None
            before = {"resolution_due": ledger.resolution_due}
            ledger.resolution_due = deadlines.extend(ledger.resolution_due, days)
            ledger.extension_state = "approved"
            ledger.extension_days = days
            return [
                Change("extension_approved", before, {"resolution_due": ledger.resolution_due, "days": days}, note_text)
            ]

        return await self._change(principal, case_id, "decide_extension", apply)

    # -- resolution, follow-up, closing -----------------------------------------------------

    async def resolve(
        self, principal: Principal, case_id: int, *, outcome: str, result: str, told_via: str, note: str | None = None
    ) -> Case:
        if outcome not in CASE_OUTCOMES:
            raise InvalidInput("办结结果只能是已化解或部分化解", fields={"outcome": "取值不正确"})
        if told_via not in REPLY_METHODS:
            raise InvalidInput("请选择告知群众的方式", fields={"told_via": "取值不正确"})
        result_text = self.text(result, "result", "办理结果")
        note_text = self.text(note, "note", "说明", required=False)

        async def apply(
            _session: AsyncSession, case: Case, ledger: CaseLedger, deadlines: Deadlines, now: datetime
        ) -> list[Change]:
            if case.status not in OPEN_STATUSES:
                raise _status_conflict(case, "办结")
            before: dict[str, Any] = {"status": case.status}
            dropped = ledger.extension_state == "requested"
            if dropped:
                # The approver's question would be moot; say so (in the history too) rather than leave it dangling.
                ledger.extension_state = "none"
                before["extension_state"] = "requested"
            case.status = "resolved"
            ledger.resolved_at = now
            ledger.outcome = outcome
            ledger.result = result_text
            ledger.result_told_via = told_via
            ledger.result_told_at = now
            ledger.followup_due = deadlines.followup_day_start(now)
            if ledger.resolution_due is not None and now >= ledger.resolution_due:
                ledger.late = True
            after = {"status": "resolved", "outcome": outcome, "told_via": told_via, "result": result_text}
            if dropped:
                after["extension_state"] = "none"
            return [Change("resolved", before, after, note_text)]

        return await self._change(principal, case_id, "resolve", apply)

    async def follow_up(
        self, principal: Principal, case_id: int, *, satisfaction: str, method: str, note: str | None = None
    ) -> Case:
        """An operator records the follow-up by hand (by phone or a visit) instead of the automated call."""
        if method not in FOLLOWUP_METHODS or method == "auto_call":
            raise InvalidInput("请选择回访方式", fields={"method": "取值不正确"})
        note_text = self.text(note, "note", "回访记录", required=satisfaction == "unsatisfied")
        return await self._follow_up(principal, None, case_id, satisfaction, method, note_text, None)

    async def record_survey_answer(self, case_id: int, *, round: int, satisfaction: str, attempt_id: int) -> bool:
        """The automated follow-up's answer; False if the case has moved on meanwhile (answer kept in the attempt)."""
        try:
            await self._follow_up(None, FOLLOWUP_RUNNER, case_id, satisfaction, "auto_call", None, (round, attempt_id))
        except Conflict:
            return False
        return True

    async def _follow_up(
        self,
        principal: Principal | None,
        actor: Actor | None,
        case_id: int,
        satisfaction: str,
        method: str,
        note: str | None,
        survey: tuple[int, int] | None,
    ) -> Case:
        if satisfaction not in SATISFACTION_LEVELS:
            raise InvalidInput("满意度只能是满意、基本满意或不满意", fields={"satisfaction": "取值不正确"})

        async def apply(
            _session: AsyncSession, case: Case, ledger: CaseLedger, deadlines: Deadlines, now: datetime
        ) -> list[Change]:
            if case.status != "resolved":
                raise _status_conflict(case, "回访")
            if survey is not None and survey[0] != ledger.reopen_count:
                raise _conflict("案件已重新办理，这次回访的答复不再适用", "survey.stale")
            ledger.followed_up_at = now
            ledger.satisfaction = satisfaction
            ledger.followup_method = method
            after: dict[str, Any] = {"satisfaction": satisfaction, "method": method}
            if survey is not None:
                after["survey_attempt_id"] = survey[1]
            if satisfaction != "unsatisfied":
                case.status = "followed_up"
                after["status"] = "followed_up"
                return [Change("followed_up", {"status": "resolved"}, after, note)]
            # 不满意: back to the unit, with the days it had left (at least reopen_min_days).
            assert ledger.resolved_at is not None
            old_due = ledger.resolution_due or deadlines.resolution_deadline(ledger.accepted_at or now)
            new_due = deadlines.reopened_deadline(ledger.resolved_at, old_due, now)
            before_reopen = {"resolved_at": ledger.resolved_at, "outcome": ledger.outcome, "resolution_due": old_due}
            case.status = "in_progress"
            ledger.reopen_count += 1
            ledger.resolution_due = new_due
            ledger.resolved_at = None
            ledger.outcome = None
            ledger.followup_due = None
            after["status"] = "in_progress"
            return [
                Change("followed_up", {"status": "resolved"}, after, note),
                Change(
                    "reopened",
                    before_reopen,
                    {"resolution_due": new_due, "reopen_count": ledger.reopen_count},
                    "群众不满意，重新办理",
                ),
            ]

        return await self._change(principal, case_id, "follow_up", apply, actor=actor)

    async def close(
        self, principal: Principal, case_id: int, *, note: str | None = None, unreachable: bool = False
    ) -> Case:
        """销号: after the follow-up; or, when the villager could not be reached for it, with a note saying so."""
        note_text = self.text(note, "note", "销号说明", required=unreachable)

        async def apply(
            _session: AsyncSession, case: Case, ledger: CaseLedger, _d: Deadlines, now: datetime
        ) -> list[Change]:
            if case.status == "resolved" and unreachable:
                pass
            elif case.status == "resolved":
                raise _conflict(
                    "案件还没有回访，不能销号（联系不上群众时请勾选“无法回访”并说明）", "case.not_followed_up"
                )
            elif case.status != "followed_up":
                raise _status_conflict(case, "销号")
            before = {"status": case.status}
            case.status = "closed"
            ledger.closed_at = now
            return [Change("closed", before, {"status": "closed", "unreachable": unreachable}, note_text)]

        return await self._change(principal, case_id, "close", apply)

    # -- notes and 催办 ------------------------------------------------------------------------

    async def add_note(self, principal: Principal, case_id: int, *, text: str) -> Case:
        note_text = self.text(text, "text", "备注")

        async def apply(
            _session: AsyncSession, _case: Case, _ledger: CaseLedger, _d: Deadlines, _now: datetime
        ) -> list[Change]:
            return [Change("noted", note=note_text)]

        return await self._change(principal, case_id, "note", apply)

    async def urge(self, principal: Principal, case_id: int, *, note: str | None = None) -> Case:
        note_text = self.text(note, "note", "催办意见", required=False)

        async def apply(
            _session: AsyncSession, case: Case, _ledger: CaseLedger, _d: Deadlines, _now: datetime
        ) -> list[Change]:
            if case.status not in ("new", *OPEN_STATUSES):
                raise _status_conflict(case, "催办")
            return [Change("urged", {}, {"unit_id": case.unit_id}, note_text)]

        return await self._change(principal, case_id, "urge", apply)

    async def record_call(self, case_id: int, kind: str, actor: Actor, after: dict[str, Any], note: str | None) -> None:
        """A callback or follow-up call's result, in the case's history (no status change)."""

        async def apply(
            _session: AsyncSession, _case: Case, _ledger: CaseLedger, _d: Deadlines, _now: datetime
        ) -> list[Change]:
            return [Change(kind, {}, after, note)]

        await self._change(None, case_id, kind, apply, actor=actor)

    # -- what may be done next -------------------------------------------------------------

    def allowed(self, principal: Principal, case: Case, ledger: CaseLedger | None) -> list[str]:
        """The actions the case's state and the user's roles allow now (the page shows only these)."""
        state = case.status
        extension = ledger.extension_state if ledger is not None else "none"
        candidates = {
            "triage": state not in ("rejected", "closed"),
            "accept": state == "new",
            "reject": state == "new",
            "assign": state in ("new", "accepted"),
            "transfer": state == "in_progress",
            "request_extension": state in OPEN_STATUSES and extension in ("none", "denied"),
            "decide_extension": state in OPEN_STATUSES
            and extension == "requested"
            and ledger is not None
            and ledger.extension_requested_by != principal.user_id,
            "resolve": state in OPEN_STATUSES,
            "follow_up": state == "resolved",
            "close": state in ("resolved", "followed_up"),
            "note": True,
            "urge": state in ("new", *OPEN_STATUSES),
            "callback": case.caller_number is not None and state not in ("closed",),
        }
        return [
            action
            for action, possible in candidates.items()
            if possible and self.access.may(principal, action, sealed=case.sealed)
        ]

    # -- history ----------------------------------------------------------------------------

    async def ledger_of(self, case_id: int) -> CaseLedger | None:
        """The case's workflow state (deadlines, extension, outcome…); call only after access was checked."""
        async with self._sessions() as session:
            return await session.get(CaseLedger, case_id)

    async def history(self, case_id: int) -> Sequence[CaseEvent]:
        """The case's events, oldest first (call only after the caller's access was checked)."""
        async with self._sessions() as session:
            statement = select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
            return (await session.scalars(statement)).all()
