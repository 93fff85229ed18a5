"""Who may see and work which case: township scope, sealed cases (违纪举报), masked numbers, the audit trail.

The rules, in one place:

* Every role may read the cases of its townships (county-wide users: every
  case, including those not yet placed in a township). Outside its scope a
  case does not exist: 404, never 403.
* A **sealed** case (a discipline report, 检举控告工作规则 art. 47) exists only
  for discipline inspectors. Anybody else asking for one gets the same 404 as
  for a case that does not exist — and the attempt is written to the audit log
  with who and when. Every time an inspector opens a sealed case or plays one
  of its recordings, that is logged too.
* Other roles learn only how many sealed cases there are (anonymous counts).
* The caller's number is shown in full only to inspectors, and to operators
  on the (unsealed) cases they call back; everyone else sees ``138****1111``.
* Which role may take which action is :data:`ACTION_ROLES`; on a sealed case
  inspectors take every action and nobody else any.

This module is the one owner of sealing: :func:`seals` says which categories
are sealed, for cases however they are opened and for the hotline's call and
missed-call records (which ask through the workflow: the hotline imports
nothing from ``cases/``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from accounts.principal import Principal
from common.clock import Clock
from common.errors import NotFound, PermissionDenied
from storage import audit
from storage.models import Case

# Categories whose cases and recordings only discipline inspectors may see, from the first moment.
SEALED_CATEGORIES = frozenset({"discipline"})
READ_ROLES = ("admin", "staff", "approver", "operator", "inspector", "leader")
ACTION_ROLES: Mapping[str, frozenset[str]] = {
    "triage": frozenset({"operator"}),
    "accept": frozenset({"operator"}),
    "reject": frozenset({"operator"}),
    "assign": frozenset({"operator"}),
    "transfer": frozenset({"operator"}),
    "request_extension": frozenset({"operator", "staff"}),
    "decide_extension": frozenset({"approver"}),
    "resolve": frozenset({"operator", "staff"}),
    "follow_up": frozenset({"operator"}),
    "close": frozenset({"operator"}),
    "note": frozenset({"operator", "staff", "approver", "leader", "inspector"}),
    "urge": frozenset({"operator", "leader"}),
    "callback": frozenset({"operator"}),
    "play": frozenset(READ_ROLES),
    "download": frozenset({"operator", "inspector"}),
}
# Filing a walk-in, grid-worker or letter case (来访/网格员/来信登记).
CREATE_ROLES = ("operator", "staff", "inspector")

NOT_FOUND_MESSAGE = "案件不存在"


def seals(category: str) -> bool:
    """Whether a case (or call, or missed call) of this category is sealed: for inspectors only, for ever."""
    return category in SEALED_CATEGORIES


def mask_number(number: str | None) -> str | None:
    """``13800001111`` → ``138****1111``; shorter numbers keep only their last two digits."""
    if not number:
        return number
    if len(number) >= 11:
        return number[:3] + "*" * (len(number) - 7) + number[-4:]
    return "*" * max(1, len(number) - 2) + number[-2:]


class CaseAccess:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        # Refusals are written by this queue's own task: the 404 must not wait for (and so betray) the write.
        self.denials = audit.AuditQueue(sessions, name="sealed-denials")

    # -- questions without side effects -----------------------------------------------------

    @staticmethod
    def may_see(principal: Principal, *, sealed: bool, township_id: int | None) -> bool:
        if not principal.has_role(*READ_ROLES):
            return False
        if sealed and not principal.has_role("inspector"):
            return False
        return principal.sees_township(township_id)

    @staticmethod
    def may(principal: Principal, action: str, *, sealed: bool) -> bool:
        if sealed:
            # Sealed cases are worked by inspectors alone (an inspector decides its own extensions' fate
            # only through another inspector: see the workflow).
            return principal.has_role("inspector")
        return principal.has_role(*ACTION_ROLES[action])

    def require(self, principal: Principal, action: str, *, sealed: bool) -> None:
        if not self.may(principal, action, sealed=sealed):
            raise PermissionDenied("您的角色不能对这个案件做此操作", code="case.action_not_allowed")

    @staticmethod
    def shows_full_number(principal: Principal, *, sealed: bool) -> bool:
        if principal.has_role("inspector"):
            return True
        return not sealed and principal.has_role("operator")

    def caller_display(self, principal: Principal, case: Case) -> str | None:
        if case.caller_number is None:
            return None
        if self.shows_full_number(principal, sealed=case.sealed):
            return case.caller_number
        return mask_number(case.caller_number)

    # -- checks that leave a trace -----------------------------------------------------------

    async def require_visible(
        self, principal: Principal, case: Case | None, *, via: str, extra: Mapping[str, Any] | None = None
    ) -> Case:
        """The case if ``principal`` may see it; else 404 (a try at a sealed case is audit-logged, queued).

        An inspector's look at a sealed case is logged here too. Call it before
        opening a writing transaction: it commits its own audit entry.
        """
        if case is None:
            raise NotFound(NOT_FOUND_MESSAGE, code="case.not_found")
        visible = self.may_see(principal, sealed=case.sealed, township_id=case.township_id)
        if case.sealed and not visible:
            # Answered exactly as a case that does not exist, as fast: the record is queued, not awaited.
            self.deny(principal, "case.sealed_denied", "case", case.id, {"via": via, **(extra or {})})
        if not visible:
            raise NotFound(NOT_FOUND_MESSAGE, code="case.not_found")
        if case.sealed:
            await self.log(principal, "case.view_sealed", "case", case.id, {"via": via, **(extra or {})})
        return case

    def deny(
        self, principal: Principal, action: str, object_type: str, object_id: int | str | None, detail: dict[str, Any]
    ) -> None:
        """Record a refused try at something sealed without making the refusal wait for the write.

        The entry goes through :attr:`denials` (an owned queue, flushed when the service stops and
        never dropped): a refusal that took a database write longer than "not found" would tell
        which ids are sealed cases.
        """
        self.denials.put(principal.actor, at=self._clock.now(), action=action, object_type=object_type,
                         object_id=object_id, detail=detail)  # fmt: skip

    async def log(
        self, principal: Principal, action: str, object_type: str, object_id: int | str | None, detail: dict[str, Any]
    ) -> None:
        await self.record(principal.actor, action, object_type, object_id, detail)

    async def record(
        self, actor: audit.Actor, action: str, object_type: str, object_id: int | str | None, detail: dict[str, Any]
    ) -> None:
        """One audit entry, committed on its own (also for a look from the command line, where no one signed in)."""
        async with self._sessions() as session:
            audit.record(
                session,
                actor,
                at=self._clock.now(),
                action=action,
                object_type=object_type,
                object_id=object_id,
                detail=detail,
            )
            await session.commit()
