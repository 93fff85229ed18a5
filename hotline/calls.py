"""The call tracker: follows every call by Linkedid over AMI and reports each one when its last channel is gone.

A call is all channels sharing a Linkedid: both halves of a Local channel, the
operator's leg of a transfer, the villager's leg of a callback. The tracker
keeps, per Linkedid, the set of live channels (``Newchannel`` adds, ``Hangup``
removes) and what our dialplan said about the call (``UserEvent CxStage``:
kind, stage, key, category, recording). When the set empties the call is over
— only then may its recordings be moved — and it is queued for
``on_finished`` (intake: settle, then attach), which runs in an owned task of
its own so the event stream is never held up by the database — one task per
call, so 20 callers hanging up within a second each have their call settled and
recording moved at once, not behind the others' (the database's connection
pool is what bounds how many talk to it at a time).

It handles events synchronously and cheaply: an event it does not care about
(most of them: Newexten, VarSet…) costs one dict lookup. While the AMI link is
down it sees nothing; after a reconnect :meth:`resync` takes the list of live
channels: calls it still holds that are gone are handed back to reconciliation
(which settles them with the CDR's times), and calls it had never heard of —
started while the service was down or restarting — are followed from then on,
their kind told by the dialplan context their channels are in, so they are
finished (and their recordings moved) the moment they hang up, announced again
or not.

Times are Asterisk's: a call starts at its first channel's ``Newchannel``
(every AMI event carries a ``Timestamp``: ``timestampevents = yes``), or at
the ``Started`` our dialplan puts in every ``CxStage``, or, for a call found in
the live-channel list, its age; it ends at its last ``Hangup``. Never at the
moment the service happened to hear of it.

Only a started tracker follows calls: a process that has the link but is not
the worker (the dial test beside a running service) keeps no calls and logs
nothing about other people's. Calls our dialplan never announced and whose
channels are in none of our contexts are not ours to settle and are dropped
when they end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
# Which kind of call a channel in one of our dialplan contexts belongs to (a call found in the live list).
CONTEXT_KINDS: Final = (
    ("hotline", "hotline"),
    ("cx-callback", "callback"),
    ("cx-survey", "survey"),
    ("cx-page", "page"),
)


def event_time(event: Mapping[str, str]) -> datetime | None:
    """When Asterisk emitted an event (its ``Timestamp`` header), None without one."""
    return epoch_time(event.get("Timestamp"))


def epoch_time(text: str | None) -> datetime | None:
    try:
        value = float(text) if text else 0.0
    except ValueError:
        return None
    return datetime.fromtimestamp(value, UTC) if value > 0 else None


def context_kind(context: str) -> str | None:
    for prefix, kind in CONTEXT_KINDS:
        if context.startswith(prefix):
            return kind
    return None


def _age(duration: str) -> timedelta | None:
    """CoreShowChannel's ``Duration`` (``HH:MM:SS``)."""
    try:
        hours, minutes, seconds = (int(part) for part in duration.split(":"))
    except ValueError:
        return None
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


@dataclass
class TrackedCall:
    linkedid: str
    # Asterisk's time of the call's start; None until some event says.
    started_at: datetime | None
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
    ended_at: datetime | None = None
    number_told: bool | None = None

    def facts(self, ended_at: datetime | None) -> CallFacts:
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
            number_told=self.number_told,
        )


class CallTracker:
    name = "call-tracker"

    def __init__(self, on_finished: Finished, *, clock: Clock) -> None:
        self._on_finished = on_finished
        self._clock = clock
        self.calls: dict[str, TrackedCall] = {}
        self._recent_hangups: OrderedDict[str, None] = OrderedDict()
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
        self._user_events: Mapping[str, Callable[[Mapping[str, str]], None]] = {
            "CxStage": self._stage,
            "CxReadBack": self._read_back,
        }

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks is not None:
            return
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = 0
        self._tasks = BackgroundTasks("call-tracker")

    async def stop(self) -> None:
        if self._tasks is not None:
            tasks, self._tasks = self._tasks, None
            await tasks.close()
            # What it held is stale by the next start; the live-channel list will say what is still up.
            self.calls.clear()

    async def wait_idle(self, timeout_s: float) -> None:
        """Until every finished call has been handed over (tests and the dial test)."""
        if self._idle is None:
            return
        async with asyncio.timeout(timeout_s):
            await self._idle.wait()

    # -- events -----------------------------------------------------------------------------------

    def handle(self, event: Mapping[str, str]) -> None:
        """The AMI listener: every event, in order, from the link (ignored until the tracker is started)."""
        handler = self._handlers.get(event.get("Event", ""))
        if handler is not None and self._tasks is not None:
            handler(event)

    def _call(self, event: Mapping[str, str]) -> TrackedCall | None:
        linkedid = event.get("Linkedid")
        if not linkedid:
            return None
        call = self.calls.get(linkedid)
        if call is None:
            call = TrackedCall(linkedid, event_time(event) if event.get("Event") == "Newchannel" else None)
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
        call.ended_at = event_time(event) or self._clock.now()
        if not call.channels:
            self._finish(call)

    def _user_event(self, event: Mapping[str, str]) -> None:
        handler = self._user_events.get(event.get("UserEvent", ""))
        if handler is not None:
            handler(event)

    def _read_back(self, event: Mapping[str, str]) -> None:
        """The dialplan read the case number back to the end (raised after the Playback, only if it finished)."""
        call = self.calls.get(event.get("Linkedid", ""))
        if call is not None and event.get("Playback") == "SUCCESS":
            call.number_told = True

    def _stage(self, event: Mapping[str, str]) -> None:
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
        started = epoch_time(event.get("Started"))
        if started is not None:
            call.started_at = started  # the dialplan's own record of when the call began
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
        if call.kind is None or self._tasks is None:
            return  # not a call of ours (or the tracker is stopping: reconciliation settles it)
        facts = call.facts(call.ended_at or self._clock.now())
        self._in_flight += 1
        if self._idle is not None:
            self._idle.clear()
        self._tasks.spawn(self._hand_over(facts), f"finish-{call.linkedid}")

    async def _hand_over(self, facts: CallFacts) -> None:
        try:
            await self._on_finished(facts)
            self.finished += 1
        except Exception:
            log.exception("settling call %s failed; reconciliation will retry it", facts.linkedid)
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._idle is not None:
                self._idle.set()

    def resync(self, live_channels: Iterable[Mapping[str, str]]) -> list[CallFacts]:
        """After an outage or a restart: the live channels Asterisk lists are the truth.

        Calls it had never heard of are followed from now on (their kind from the context
        their channels are in, their start from their age). Calls it held that are gone
        ended unseen: they are dropped here and returned, with no end time (nobody saw
        it), for the caller to settle with what the CDR says.
        """
        now = self._clock.now()
        live: dict[str, list[Mapping[str, str]]] = {}
        for channel in live_channels:
            linkedid, uniqueid = channel.get("Linkedid"), channel.get("Uniqueid")
            if linkedid and uniqueid and uniqueid not in self._recent_hangups:
                live.setdefault(linkedid, []).append(channel)
        for linkedid, channels in live.items():
            call = self.calls.get(linkedid)
            if call is None:
                call = TrackedCall(linkedid, None)
                self.calls[linkedid] = call
            call.channels = {channel["Uniqueid"] for channel in channels}
            for channel in channels:
                age = _age(channel.get("Duration", ""))
                if age is not None and (call.started_at is None or now - age < call.started_at):
                    call.started_at = now - age
                kind = context_kind(channel.get("Context", ""))
                if kind is not None and call.kind is None:
                    call.kind = kind
                if kind is not None:
                    self._take_caller(call, channel)
        ended = [call for linkedid, call in self.calls.items() if linkedid not in live]
        for call in ended:
            self.calls.pop(call.linkedid, None)
        return [call.facts(None) for call in ended if call.kind is not None]

    @property
    def live_linkedids(self) -> set[str]:
        return set(self.calls)
