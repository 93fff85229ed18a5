"""The call tracker: follows every call by Linkedid over AMI and reports each one when its last channel is gone.

A call is all channels sharing a Linkedid: both halves of a Local channel, the
operator's leg of a transfer, the villager's leg of a callback. The tracker
keeps, per Linkedid, the set of live channels (``Newchannel`` adds, ``Hangup``
removes) and what our dialplan said about the call (``UserEvent CxStage``:
kind, stage, key, category, recording). When the set empties the call is over
— only then may its recordings be moved — and it is queued for
``on_finished`` (intake: settle, then attach), which runs in owned worker
tasks so the event stream is never held up by the database.

It handles events synchronously and cheaply: an event it does not care about
(most of them: Newexten, VarSet…) costs one dict lookup. While the AMI link is
down it sees nothing; after a reconnect :meth:`resync` takes the list of live
channels and finishes every call that ended in the meantime.

Calls our dialplan never announced (no ``CxStage``) are not ours to settle and
are dropped when they end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from common.clock import Clock
from common.tasks import BackgroundTasks
from hotline.intake import CallFacts

log = logging.getLogger(__name__)

Finished = Callable[[CallFacts], Awaitable[None]]
# Remember this many hung-up channel ids, so a live-channel list taken just before a hang-up
# does not bring the channel back to life.
RECENT_HANGUPS: Final = 4096
KNOWN_KINDS: Final = frozenset({"hotline", "callback", "survey", "page"})
_PLACEHOLDERS: Final = frozenset({"", "<unknown>", "unknown"})


@dataclass
class TrackedCall:
    linkedid: str
    started_at: datetime
    channels: set[str] = field(default_factory=set)
    kind: str | None = None
    stage: str | None = None
    choice: str | None = None
    category: str | None = None
    presentation: str | None = None
    dial_status: str | None = None
    caller_raw: str | None = None
    caller_name: str | None = None
    test_call: bool = False
    case_id: int | None = None

    def facts(self, ended_at: datetime) -> CallFacts:
        return CallFacts(
            linkedid=self.linkedid,
            kind=self.kind or "hotline",
            caller_raw=self.caller_raw,
            caller_name=self.caller_name,
            presentation=self.presentation,
            started_at=self.started_at,
            ended_at=ended_at,
            stage=self.stage,
            choice=self.choice,
            category=self.category,
            dial_status=self.dial_status,
            test_call=self.test_call,
            case_id=self.case_id,
        )


class CallTracker:
    name = "call-tracker"

    def __init__(self, on_finished: Finished, *, clock: Clock, workers: int = 2) -> None:
        self._on_finished = on_finished
        self._clock = clock
        self._workers = workers
        self.calls: dict[str, TrackedCall] = {}
        self._recent_hangups: OrderedDict[str, None] = OrderedDict()
        self._queue: asyncio.Queue[CallFacts] | None = None
        self._tasks: BackgroundTasks | None = None
        self._idle: asyncio.Event | None = None
        self._in_flight = 0
        self.finished = 0
        self._handlers: Mapping[str, Callable[[Mapping[str, str]], None]] = {
            "Newchannel": self._new_channel,
            "Hangup": self._hangup,
            "UserEvent": self._user_event,
            "NewCallerid": self._caller_id,
        }

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks is not None:
            return
        self._queue = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks = BackgroundTasks("call-tracker")
        for number in range(self._workers):
            self._tasks.spawn(self._work(), f"finisher-{number}")

    async def stop(self) -> None:
        if self._tasks is not None:
            await self._tasks.close()
            self._tasks = None
            self._queue = None

    async def wait_idle(self, timeout_s: float) -> None:
        """Until every finished call has been handed over (tests and the dial test)."""
        if self._idle is None:
            return
        async with asyncio.timeout(timeout_s):
            await self._idle.wait()

    # -- events -----------------------------------------------------------------------------------

    def handle(self, event: Mapping[str, str]) -> None:
        """The AMI listener: every event, in order, from the link."""
        handler = self._handlers.get(event.get("Event", ""))
        if handler is not None:
            handler(event)

    def _call(self, event: Mapping[str, str]) -> TrackedCall | None:
        linkedid = event.get("Linkedid")
        if not linkedid:
            return None
        call = self.calls.get(linkedid)
        if call is None:
            call = TrackedCall(linkedid, self._clock.now())
            self.calls[linkedid] = call
        return call

    def _new_channel(self, event: Mapping[str, str]) -> None:
        uniqueid = event.get("Uniqueid")
        call = self._call(event)
        if call is None or not uniqueid:
            return
        call.channels.add(uniqueid)
        self._take_caller(call, event)

    def _caller_id(self, event: Mapping[str, str]) -> None:
        call = self.calls.get(event.get("Linkedid", ""))
        if call is not None:
            self._take_caller(call, event)

    @staticmethod
    def _take_caller(call: TrackedCall, event: Mapping[str, str]) -> None:
        number = event.get("CallerIDNum", "")
        if call.caller_raw is None and number not in _PLACEHOLDERS:
            call.caller_raw = number
            name = event.get("CallerIDName", "")
            call.caller_name = None if name in _PLACEHOLDERS else name

    def _hangup(self, event: Mapping[str, str]) -> None:
        uniqueid = event.get("Uniqueid", "")
        self._recent_hangups[uniqueid] = None
        if len(self._recent_hangups) > RECENT_HANGUPS:
            self._recent_hangups.popitem(last=False)
        linkedid = event.get("Linkedid", "")
        call = self.calls.get(linkedid)
        if call is None:
            return
        call.channels.discard(uniqueid)
        if not call.channels:
            self._finish(call)

    def _user_event(self, event: Mapping[str, str]) -> None:
        name = event.get("UserEvent")
        if name != "CxStage":
            return
        call = self._call(event)
        if call is None:
            return
        uniqueid = event.get("Uniqueid")
        if uniqueid and uniqueid not in self._recent_hangups:
            # A call we first hear of mid-way (started while we were disconnected).
            call.channels.add(uniqueid)
        kind = event.get("Kind", "")
        if call.kind is None and kind in KNOWN_KINDS:
            call.kind = kind
        stage = event.get("Stage")
        if stage:
            call.stage = stage
        choice = event.get("Choice")
        if choice:
            call.choice = choice
        category = event.get("Category")
        if category:
            call.category = category
        presentation = event.get("Pres")
        if presentation:
            call.presentation = presentation
        if event.get("Test") == "1":
            call.test_call = True
        case = event.get("Case", "")
        if case.isdigit():
            call.case_id = int(case)
        self._take_caller(call, event)

    # -- finishing --------------------------------------------------------------------------------

    def _finish(self, call: TrackedCall) -> None:
        self.calls.pop(call.linkedid, None)
        if call.kind is None:
            return  # not a call of ours
        facts = call.facts(self._clock.now())
        if self._queue is None:
            log.warning("call %s ended while the tracker is stopped; reconciliation will settle it", call.linkedid)
            return
        self._in_flight += 1
        if self._idle is not None:
            self._idle.clear()
        self._queue.put_nowait(facts)

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            facts = await queue.get()
            try:
                await self._on_finished(facts)
                self.finished += 1
            except Exception:
                log.exception("settling call %s failed; reconciliation will retry it", facts.linkedid)
            finally:
                self._in_flight -= 1
                if not self._in_flight and self._idle is not None:
                    self._idle.set()

    def resync(self, live_channels: Iterable[Mapping[str, str]]) -> list[str]:
        """After an outage: the live channels Asterisk lists are the truth; finish calls that are gone.

        Returns the Linkedids finished now.
        """
        live: dict[str, set[str]] = {}
        for channel in live_channels:
            linkedid, uniqueid = channel.get("Linkedid"), channel.get("Uniqueid")
            if linkedid and uniqueid and uniqueid not in self._recent_hangups:
                live.setdefault(linkedid, set()).add(uniqueid)
        for linkedid, uniqueids in live.items():
            call = self.calls.get(linkedid)
            if call is None:
                call = TrackedCall(linkedid, self._clock.now())
                self.calls[linkedid] = call
            call.channels = uniqueids
        ended = [call for linkedid, call in self.calls.items() if linkedid not in live]
        for call in ended:
            self._finish(call)
        return [call.linkedid for call in ended]

    @property
    def live_linkedids(self) -> set[str]:
        return set(self.calls)
