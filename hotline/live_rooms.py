"""Live rooms (手机喊话 实时): the cadre's conference, and the loudspeakers brought into it as listeners.

A live phone broadcast is one ConfBridge per call, named ``cx-live-<linkedid>``
(deploy/asterisk/templates/confbridge.conf.j2, profiles ``cx_live*``). The
phone-broadcast line puts the caller in it as the one marked talker; this
module brings the loudspeakers in, each as a muted listener that waits for the
talker and leaves when the talker does (``wait_marked``, ``end_marked``)::

    unicast RTP speaker   Originate UnicastRTP/<host>:<port>/c(ulaw)            → ConfBridge(room, listener)
    multicast zone group  Originate MulticastRTP/basic/<group>:<port>//c(ulaw)t(ttl)l(loop)i(iface)
    SIP paging speaker    Originate Local/<n>@cx-live-sip → Dial(PJSIP/<endpoint>) with the
                          auto-answer headers (the same as a page) ; the other half in the room

A leg's answer is its Originate's success (RTP channels answer at once; the SIP
one when the speaker picks up); its end is its channel's hang-up. ``connect``
returns when ``stop`` is set or every leg has left (the talker left: the room
is gone), then hangs up whatever is still there. ``end`` empties a room (an
emergency takes the zones: the caller is kicked out of it too, and the line
tells them why).

This is hotline's side of broadcast's ``LiveRooms`` seam: hotline may not import
broadcast, so it speaks in its own :class:`RoomLeg`/:class:`LegOutcome` and
server.py translates (``LiveLeg`` → ``RoomLeg``, ``LegOutcome`` → one
``SpeakerResult`` per speaker).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from common.clock import Clock
from hotline.ami import AmiError, AmiLink, AmiNotConnected, Message
from hotline.paging import dial_target

log = logging.getLogger(__name__)

ROOM: Final = re.compile(r"^cx-live-[A-Za-z0-9._-]{1,120}$")
BRIDGE_PROFILE: Final = "cx_live"
TALKER_PROFILE: Final = "cx_live_talker"
LISTENER_PROFILE: Final = "cx_live_listener"
# How long the hang-up of every leg may take once the room is done with.
HANGUP_WAIT_S: Final = 5.0

LegKind = Literal["sip", "unicast", "multicast"]


def room_name(call_id: str) -> str:
    """The conference of one live call (the line makes it from the call's linkedid)."""
    name = f"cx-live-{call_id}"
    if not ROOM.match(name):
        raise ValueError(f"not a live call id: {call_id[:40]!r}")
    return name


@dataclass(frozen=True)
class RoomLeg:
    """One listener to bring into a room: a SIP endpoint, a unicast RTP speaker, or a multicast group."""

    kind: LegKind
    address: str  # "PJSIP/<endpoint>" (or a Local/… stand-in) | "<host>:<port>" | "<group>:<port>"
    ttl: int | None = None
    interface: str | None = None
    loop: bool | None = None


@dataclass(frozen=True)
class LegOutcome:
    leg: RoomLeg
    answered_at: datetime | None  # None: it never joined (error says why)
    ended_at: datetime | None
    error: str | None = None


def _host_port(address: str) -> tuple[ipaddress.IPv4Address, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"not <host>:<port>: {address!r}")
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"not an IPv4 address: {address!r}") from None
    return ip, int(port_text)


def dial_string(leg: RoomLeg, index: int) -> str:
    """What Asterisk dials for ``leg`` (the ``index``-th of its room: Local legs are named by it)."""
    if leg.kind == "sip":
        dial_target(leg.address)  # refuses what is no dial string
        return f"Local/{index}@cx-live-sip"
    ip, port = _host_port(leg.address)
    if leg.kind == "unicast":
        if ip.is_multicast:
            raise ValueError(f"a multicast group is no unicast speaker: {leg.address!r}")
        return f"UnicastRTP/{ip}:{port}/c(ulaw)"
    if not ip.is_multicast:
        raise ValueError(f"not a multicast group: {leg.address!r}")
    options = "c(ulaw)"
    if leg.ttl is not None:
        if not 0 <= leg.ttl <= 255:
            raise ValueError(f"multicast TTL out of range: {leg.ttl}")
        options += f"t({leg.ttl})"
    if leg.loop is not None:
        options += f"l({1 if leg.loop else 0})"
    if leg.interface:
        options += f"i({ipaddress.IPv4Address(leg.interface)})"
    return f"MulticastRTP/basic/{ip}:{port}//{options}"


@dataclass
class _Leg:
    leg: RoomLeg
    channel_id: str
    dial: str
    channel: str = ""
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    done: asyncio.Event | None = None

    def outcome(self) -> LegOutcome:
        return LegOutcome(self.leg, self.answered_at, self.ended_at, self.error)


class ConferenceRooms:
    """Brings loudspeakers into a live call's conference over AMI, and empties it."""

    def __init__(
        self,
        link: AmiLink,
        *,
        clock: Clock,
        ring_timeout_s: float = 15.0,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        if len(headers) > 3:
            raise ValueError("the live SIP context adds at most three SIP headers")
        self._link = link
        self._clock = clock
        self._ring_timeout_s = ring_timeout_s
        self._headers = tuple(headers)

    async def connect(
        self,
        room: str,
        legs: Sequence[RoomLeg],
        stop: asyncio.Event,
        *,
        on_leg: Callable[[int, str | None], None] | None = None,
    ) -> list[LegOutcome]:
        """One outcome per leg, in order. ``on_leg(index, error)`` once per leg as soon as its fate is known:
        error None when it joined (its speakers hear the room from now), else why not. Never raises for a leg."""
        if not ROOM.match(room):
            raise ValueError(f"not a live room: {room[:60]!r}")
        token = secrets.token_hex(3)
        running: list[_Leg] = []
        for index, leg in enumerate(legs):
            state = _Leg(leg, f"{room}-{token}-{index}", "", done=asyncio.Event())
            try:
                state.dial = dial_string(leg, index)
            except ValueError as exc:
                state.error = f"地址无效（{exc}）"
                state.done.set()  # type: ignore[union-attr]
                if on_leg is not None:
                    on_leg(index, state.error)
            running.append(state)
        by_id = {state.channel_id: state for state in running}
        room_gone = asyncio.Event()

        def listen(event: Message) -> None:
            name = event.get("Event")
            if name == "ConfbridgeEnd" and event.get("Conference") == room:
                room_gone.set()
                return
            state = by_id.get(event.get("Uniqueid", ""))
            if state is None:
                return
            if name == "Newchannel":
                state.channel = event.get("Channel", "")
            elif name == "Hangup":
                state.ended_at = self._clock.now()
                assert state.done is not None
                state.done.set()

        self._link.add_listener(listen)
        try:
            starts = [
                self._start(room, index, state, on_leg) for index, state in enumerate(running) if state.error is None
            ]
            await asyncio.gather(*starts)
            every_leg_done = asyncio.gather(*(state.done.wait() for state in running if state.done is not None))
            waits: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(room_gone.wait()),
                every_leg_done,
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
                # A cancelled gather's own CancelledError is not an error of ours: taken here, not logged.
                with contextlib.suppress(asyncio.CancelledError):
                    await every_leg_done
            await self._hang_up(running)
        finally:
            self._link.remove_listener(listen)
        return [state.outcome() for state in running]

    async def _start(
        self, room: str, index: int, state: _Leg, on_leg: Callable[[int, str | None], None] | None
    ) -> None:
        assert state.done is not None
        variables = {"__CX_MARKER": "live", "CX_LIVE_ROOM": room}
        if state.leg.kind == "sip":
            variables["CX_LIVE_DIAL"] = dial_target(state.leg.address)
            variables["CX_LIVE_RING"] = str(max(1, round(self._ring_timeout_s)))
            for number, (name, value) in enumerate(self._headers, start=1):
                variables[f"_CX_PAGE_HNAME_{number}"] = name
                variables[f"_CX_PAGE_HVALUE_{number}"] = value
        try:
            originated = await self._link.originate(
                channel=state.dial,
                channel_id=state.channel_id,
                application="ConfBridge",
                data=f"{room},{BRIDGE_PROFILE},{LISTENER_PROFILE}",
                ring_timeout_s=self._ring_timeout_s,
                variables=variables,
            )
            async with asyncio.timeout(self._ring_timeout_s + HANGUP_WAIT_S):
                response = await originated.result
        except (AmiError, TimeoutError) as exc:
            state.error = f"未能接入（{exc}）" if str(exc) else "未能接入（超时）"
        else:
            if response.get("Response") == "Success":
                state.answered_at = self._clock.now()
                state.channel = state.channel or response.get("Channel", "")
            else:
                state.error = f"未应答（{response.get('Reason', '')}）"
        if state.error is not None:
            state.done.set()
        if on_leg is not None:
            on_leg(index, state.error)

    async def _hang_up(self, running: Sequence[_Leg]) -> None:
        for state in running:
            if state.done is not None and not state.done.is_set() and state.channel:
                with contextlib.suppress(AmiError):
                    await self._link.hangup(state.channel)
        pending = [state.done.wait() for state in running if state.done is not None and not state.done.is_set()]
        if pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HANGUP_WAIT_S):
                    await asyncio.gather(*pending)
        now = self._clock.now()
        for state in running:
            if state.answered_at is not None and state.ended_at is None:
                state.ended_at = now

    async def end(self, room: str) -> None:
        """Empty the room: every listener and the caller are kicked out of it (an emergency took the zones)."""
        if not ROOM.match(room):
            raise ValueError(f"not a live room: {room[:60]!r}")
        try:
            await self._link.action("ConfbridgeKick", Conference=room, Channel="all")
        except AmiNotConnected:
            raise
        except AmiError as exc:  # the room is already gone
            log.info("live room %s: nothing to end (%s)", room, exc)
