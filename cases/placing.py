"""Calls the case workflow places — 回拨 callbacks and 回访 follow-ups — and the runner both are built on.

``cases/`` knows nothing of Asterisk. It places a call through a
:class:`CallLine`, a protocol defined here for what it needs: "ring this
number into this dialplan context, with these variables, and tell me what
happened". The hotline implements it (``hotline.placing.OutboundCalls``, over
its AMI link) and ``server.py`` hands it in; with ``asterisk = none`` there is
no line at all, and nothing is ever placed.

The promises a line keeps, whatever happens to the connection:

* a call is handed to Asterisk **once**; if the connection drops afterwards
  its outcome is ``unknown``, and it is never sent again (a second Originate is
  a second call to an old person);
* ``placement`` says whether the call left at all: ``not_sent`` (nothing
  reached Asterisk: the attempt failed cleanly), ``unknown`` (it may or may
  not have been placed), or ``sent``;
* what the dialplan reports (``UserEvent``\\ s) and how the far end answered
  (the dial status) are read from the call itself, keyed by the call id the
  runner chose (it becomes the call's Linkedid).

:class:`CallRunner` is the lifecycle both runners share: started only on the
elected worker, it finishes what a previous worker left mid-call as
``unknown`` (never re-sent), then looks for work every ``poll_s`` seconds — or
at once when woken — until it is stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Generic, Literal, Protocol, TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.clock import Clock
from common.health import ComponentHealth
from common.tasks import BackgroundTasks
from storage.models import CallbackAttempt, SurveyAttempt

log = logging.getLogger(__name__)

Placement = Literal["sent", "not_sent", "unknown"]
# How the first phone rung answered (the operator's for a callback, the villager's for a follow-up).
FirstAnswer = Literal["answered", "busy", "no_answer", "failed", "unknown"]


class PlacedCall(Protocol):
    """One call handed to the line; what became of it, as Asterisk reports it."""

    @property
    def placement(self) -> Placement: ...

    @property
    def detail(self) -> str:
        """Why it was not sent, why the first phone did not answer (``reason 3``), or what went wrong."""
        ...

    async def first_answer(self, timeout_s: float) -> FirstAnswer:
        """Wait for the first phone's answer (``unknown`` when the link dropped or nothing came in time)."""
        ...

    async def wait_end(self, timeout_s: float) -> bool:
        """True once every channel of the call has hung up within the time."""
        ...

    @property
    def dial_status(self) -> str | None:
        """How the second phone answered (``ANSWER``, ``NOANSWER``, ``BUSY``…), if the call dialled one."""
        ...

    @property
    def reached(self) -> bool:
        """Whether the second phone answered."""
        ...

    def dialplan_events(self, name: str) -> Sequence[Mapping[str, str]]:
        """What the dialplan reported on this call (``UserEvent: <name>``), in order."""
        ...

    def close(self) -> None:
        """Stop following the call (its events are no longer kept)."""
        ...


class CallLine(Protocol):
    """How the case workflow reaches phones (implemented by the hotline; ``None`` with ``asterisk = none``)."""

    @property
    def connected(self) -> bool: ...

    async def place(
        self, *, dial: str, call_id: str, context: str, ring_s: float, variables: Mapping[str, str]
    ) -> PlacedCall:
        """Ring ``dial`` and run dialplan ``context`` once it answers; ``call_id`` becomes the call's Linkedid."""
        ...


def dial_string(template: str, number: str) -> str:
    return template.replace("{number}", number)


async def poll_rounds(round_: Callable[[], Awaitable[object]], wake: asyncio.Event, poll_s: float, what: str) -> None:
    """Run ``round_`` every ``poll_s`` seconds, or at once when ``wake`` is set, until cancelled.

    A round that fails is logged and the next one runs as usual (the database or the link may be back).
    """
    while True:
        try:
            await round_()
        except Exception:
            log.exception("%s: a round failed; trying again", what)
        try:
            async with asyncio.timeout(poll_s):
                await wake.wait()
        except TimeoutError:
            pass
        wake.clear()


class RunnerConfig(Protocol):
    @property
    def poll_s(self) -> float: ...


ConfigT = TypeVar("ConfigT", bound=RunnerConfig)


class CallRunner(Generic[ConfigT]):
    """The lifecycle of a runner that places calls: a worker service, started only where a line exists.

    Subclasses give their name, their attempt table and its states that mean "a
    call is under way", and :meth:`run_once` (one round of placing calls).
    ``config`` may be replaced while the runner is stopped (the tests shorten rings).
    """

    name = "calls"
    attempts_model: type[CallbackAttempt] | type[SurveyAttempt]
    open_states: Iterable[str] = ()

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        line: CallLine | None,
        config: ConfigT,
        *,
        health: ComponentHealth,
        working: str,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._line = line
        self.config = config
        self.health = health
        self._working = working
        self._tasks: BackgroundTasks | None = None
        self._wake: asyncio.Event | None = None

    def disabled_because(self) -> str | None:
        """Why this runner is switched off by configuration (None: it is not)."""
        return None

    async def start(self) -> None:
        if self._tasks is not None or self._line is None:
            return
        off = self.disabled_because()
        if off is not None:
            self.health.set("disabled", off, at=self._clock.now())
            return
        await self._orphans()
        self._wake = asyncio.Event()
        self._tasks = BackgroundTasks(self.name)
        self._tasks.spawn(self._run(), "poll")
        self.health.set("ok", self._working, at=self._clock.now())

    async def stop(self) -> None:
        if self._tasks is None:
            return
        tasks, self._tasks = self._tasks, None
        await tasks.close()
        self._wake = None
        self.stopped()
        self.health.set("standby", "stopped", at=self._clock.now())

    def stopped(self) -> None:
        """Forget what only a running runner keeps (called by :meth:`stop`)."""

    def wake(self) -> None:
        """Look for work now rather than at the next poll (when this process runs the runner)."""
        if self._wake is not None:
            self._wake.set()

    async def run_once(self) -> int:
        raise NotImplementedError

    def spawn(self, follow: Coroutine[Any, Any, None], name: str) -> None:
        """Follow one placed call to its end, as a task the runner owns (cancelled by :meth:`stop`)."""
        assert self._tasks is not None
        self._tasks.spawn(follow, name)

    async def _orphans(self) -> None:
        """Attempts a previous worker left mid-call: their outcome is unknown, and they are never re-sent."""
        model = self.attempts_model
        async with self._sessions() as session:
            await session.execute(
                update(model)
                .where(model.state.in_(tuple(self.open_states)))
                .values(state="unknown", ended_at=self._clock.now(), detail="the worker stopped during the call")
            )
            await session.commit()

    async def _run(self) -> None:
        assert self._wake is not None
        await poll_rounds(self.run_once, self._wake, self.config.poll_s, self.name)

    async def _set(self, attempt_id: int, **values: Any) -> None:
        model = self.attempts_model
        async with self._sessions() as session:
            await session.execute(update(model).where(model.id == attempt_id).values(**values))
            await session.commit()
