"""The phone-broadcast line (手机喊话): a village cadre's call, from the PIN to what became of the message.

A call to ``hotline.phonecast_did`` lands in the dialplan's ``[cx-phonecast]``,
which answers and hands the whole conversation to the FastAGI script
``phonecast`` (:meth:`PhonecastLine.call`). The service drives it command by
command (``STREAM FILE``, ``GET DATA``, ``RECORD FILE``) rather than the
dialplan asking a question at each step, because what the call has proven —
this cadre, this PIN, this place — must never sit in channel variables that a
later request would have to trust.

The flow (docs/hotline.md, "The phone-broadcast line"):

1. Caller id only selects whose PIN is asked: a number the desk does not know
   (or a withheld one, or no desk at all) hears a polite refusal and nothing
   else. A known one is always asked the PIN; three wrong PINs in a call end
   it, LOCKED ends it at once.
2. Where: 1 = 本村 (the one village, or a numbered list), 2 = a township (by
   number when there are several), 3 = a zone by its 喊话编号. The choice is
   read back by name with its number of loudspeakers.
3. Speak after the tone (up to ``phonecast_max_recording_s``; ``#`` ends it),
   hear it back, then 1 = broadcast now, 2 = record again, 3 = at a time of
   day typed as HHMM.
4. The end says what the desk answered: started on N loudspeakers (and how
   many did not answer), queued, scheduled for H:M, or why it was refused.

Forgiving like the hotline's IVR: a question that hears nothing is asked again
(``phonecast_attempts`` times, then the call ends with nothing broadcast), ``*``
repeats a question, ``#`` ends what was typed. Nothing is broadcast unless the
cadre pressed 1 or 3 after hearing the recording: a hang-up anywhere before
that submits nothing. The recording is the line's own file in the spool; the
desk copies it, and the line removes it when the call ends.

Everything the caller hears is announced as ``UserEvent CxHeard`` (the prompt's
name, or ``tts:`` and the sentence spoken at call time), where the line waits
for keys or speech as ``CxStage`` (``Kind: phonecast``), and the outcome as
``CxPhonecast``: the dial test (hotline/dialtest.py) plays the cadre from them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time as time_module
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import time
from pathlib import Path, PurePosixPath
from typing import Final, NoReturn, Protocol
from zoneinfo import ZoneInfo

from common.clock import Clock
from hotline.fastagi import AgiHandler, AgiHangup, AgiRequest, AgiSession, BadAgiRequest, quote
from hotline.live_rooms import TALKER_PROFILE, room_name
from hotline.phonecast import (
    REFUSAL_REASONS,
    Cadre,
    LiveEnd,
    LiveStart,
    LiveStatus,
    PhonecastDesk,
    PhonecastTarget,
    PinVerdict,
    SubmitResult,
    SubmitStatus,
)
from hotline.phones import caller_number
from hotline.recordings import inspect

log = logging.getLogger(__name__)

LINKEDID: Final = re.compile(r"^[A-Za-z0-9._-]{1,150}$")
PIN_DIGITS: Final = 6
ZONE_CODE_DIGITS: Final = 8
WRONG_PINS_PER_CALL: Final = 3
# How long a prompt (or the recording played back) may take, beyond the waits the settings give.
PLAYING_S: Final = 120.0
# How often an emergency's kick out of a live room is repeated until the caller has left it.
ROOM_KICK_INTERVAL_S: Final = 1.0
_RESULT: Final = re.compile(r"^result=(-?[0-9*#A-D]*)")
_UNSAID: Final = str.maketrans({",": "，", "\n": " ", "\r": " ", "|": " "})

# Speaks a sentence through the service's TTS into a file Asterisk plays; its path as Asterisk sees it.
SentenceMaker = Callable[[str], Awaitable[PurePosixPath]]


class RoomEnder(Protocol):
    async def end(self, room: str) -> None:
        """Empty a live call's conference (its caller too): an emergency took the zones."""


# How ConfBridge says the caller left the room (CONFBRIDGE_RESULT), as the desk is told it.
_LEFT_BY: Final = {
    "DTMF": LiveEnd.CALLER,
    "HANGUP": LiveEnd.CALLER,
    "TIMEOUT": LiveEnd.LIMIT,
    "KICKED": LiveEnd.FAILED,  # an emergency kicks too; the line knows that one by the desk's event
    "ENDMARKED": LiveEnd.FAILED,
    "FAILED": LiveEnd.FAILED,
}
# What the caller hears once off the air.
_OFF_AIR_PROMPT: Final = {
    LiveEnd.CALLER: "pc_live_ended",
    LiveEnd.LIMIT: "pc_live_limit",
    LiveEnd.EMERGENCY: "pc_live_emergency",
    LiveEnd.FAILED: "pc_live_failed",
}


@dataclass(frozen=True)
class PhonecastLineConfig:
    prompts_dir: PurePosixPath  # as Asterisk sees it
    spool_host: Path  # where Asterisk records, as this service sees it …
    spool_asterisk: PurePosixPath  # … and as Asterisk does
    timezone: ZoneInfo
    max_recording_s: int = 180
    record_silence_s: int = 5
    key_timeout_s: float = 15.0
    attempts: int = 3
    min_speech_s: float = 0.4
    # 实时喊话: the hard limit of a live call (0: no live mode is offered) and how long the recording of
    # one may take to be closed by Asterisk once the caller left the room.
    live_max_s: int = 0
    mixmonitor_wait_s: float = 10.0


@dataclass(frozen=True)
class Spoken:
    """A sentence spoken at call time: the file Asterisk plays, and what it says (for the dial test)."""

    path: PurePosixPath
    text: str


class _Ended(Exception):
    """The conversation is over (its last words said); nothing more to ask."""


class PhonecastLine:
    """The FastAGI script of the phone-broadcast line; the desk behind it is handed in (or not)."""

    def __init__(
        self,
        config: PhonecastLineConfig,
        *,
        clock: Clock,
        desk: PhonecastDesk | None = None,
        sentences: SentenceMaker | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._desk = desk
        self._sentences = sentences
        self._rooms: RoomEnder | None = None

    def use_rooms(self, rooms: RoomEnder | None) -> None:
        """The live calls' conferences (hotline.live_rooms); None, or ``live_max_s`` 0: no live mode."""
        self._rooms = rooms

    @property
    def rooms(self) -> RoomEnder | None:
        return self._rooms if self.config.live_max_s > 0 else None

    def use_desk(self, desk: PhonecastDesk | None) -> None:
        """Who decides and plays (server.py connects phonecast/'s desk); None: every caller is refused."""
        self._desk = desk

    def handlers(self) -> dict[str, AgiHandler]:
        return {"phonecast": self.call}

    async def call(self, request: AgiRequest, session: AgiSession) -> None:
        linkedid = request.require(1, "linkedid")
        if not LINKEDID.match(linkedid):
            raise BadAgiRequest(f"phonecast: not a linkedid: {linkedid[:40]!r}")
        conversation = _Conversation(self, request, session, linkedid, self._desk)
        try:
            await conversation.run()
        except _Ended:
            pass
        finally:
            await asyncio.to_thread(conversation.remove_recordings)
        await session.set_variable("CX_RESULT", "done")

    async def sentence(self, text: str) -> Spoken | None:
        """``text`` spoken now by the service's TTS (off the event loop); None when it cannot be."""
        if self._sentences is None:
            return None
        try:
            return Spoken(await self._sentences(text), text)
        except Exception:  # a name the engines refuse, an engine down: the fixed prompt is said instead
            log.exception("phone broadcast: could not speak %r", text)
            return None

    @property
    def clock(self) -> Clock:
        return self._clock


class _Conversation:
    """One call: the questions in order, each one forgiving."""

    def __init__(
        self,
        line: PhonecastLine,
        request: AgiRequest,
        session: AgiSession,
        linkedid: str,
        desk: PhonecastDesk | None,
    ) -> None:
        self._line = line
        self._config = line.config
        self._session = session
        self._linkedid = linkedid
        self._desk = desk
        # Normalised as everywhere (common.phone_numbers); withheld — by the network's presentation bit or a
        # placeholder — is refused like an unknown number, without asking the desk.
        caller = caller_number(request.caller_number, request.caller_presentation)
        self._caller = caller.number or ""
        self._takes: list[Path] = []

    # -- the flow -------------------------------------------------------------------------------------

    async def run(self) -> None:
        desk = self._desk
        cadre = None
        if desk is not None and self._caller:
            cadre = await desk.identify(self._caller)
        if desk is None or cadre is None:
            await self._stage("refused")
            await self._play("pc_refusal")
            return
        await self._verify(desk, cadre)
        target = await self._choose_target(desk, cadre)
        rooms = self._line.rooms
        if rooms is not None:
            mode = await self._ask("mode", "pc_mode_menu", 1, give_up="pc_no_keys_bye", wrong_keys="12")
            if mode == "2" and not await self._live(desk, cadre, target, rooms):
                return
        while True:
            recording = await self._record()
            decision = await self._review(recording)
            if decision == "again":
                continue
            at_local = decision if isinstance(decision, time) else None
            await self._submit(desk, cadre, target, recording, at_local)
            return

    async def _verify(self, desk: PhonecastDesk, cadre: Cadre) -> None:
        wrong = 0
        prompt = "pc_enter_pin"
        while True:
            typed = await self._ask("pin", prompt, PIN_DIGITS, give_up="pc_no_keys_bye")
            verdict = await desk.check_pin(cadre, self._caller, typed)
            if verdict is PinVerdict.ACCEPTED:
                return
            if verdict is PinVerdict.LOCKED:
                await self._stage("locked")
                await self._end("pc_locked")
            wrong += 1
            if wrong >= WRONG_PINS_PER_CALL:
                await self._stage("pin_refused")
                await self._end("pc_pin_wrong_final")
            prompt = "pc_pin_wrong"

    async def _choose_target(self, desk: PhonecastDesk, cadre: Cadre) -> PhonecastTarget:
        while True:
            key = await self._ask("target", "pc_target_menu", 1, give_up="pc_no_keys_bye", wrong_keys="123")
            target: PhonecastTarget | None
            if key == "3":
                target = await self._zone(desk, cadre)
            else:
                targets = await desk.targets(cadre)
                if key == "1":
                    target = await self._pick(targets.villages, "pc_choose_village", "pc_no_village")
                else:
                    target = await self._pick(targets.townships, "pc_choose_township", "pc_no_township")
            if target is None:
                continue
            spoken = await self._line.sentence(f"{target.name}，共{target.speakers}个喇叭。")
            await self._play("pc_target_is", *([] if spoken is None else [spoken]))
            if target.speakers <= 0:
                await self._play("pc_target_silent")
                continue
            return target

    async def _pick(self, choices: Sequence[PhonecastTarget], before: str, none_prompt: str) -> PhonecastTarget | None:
        if not choices:
            await self._play(none_prompt)
            return None
        if len(choices) == 1:
            return choices[0]
        listing = "".join(f"按{number}，{target.name}。" for number, target in enumerate(choices, start=1))
        spoken = await self._line.sentence(f"{listing}再听一遍，请按星号键。")
        if spoken is None:
            await self._end("pc_unavailable")
        digits = len(str(len(choices)))
        valid = {str(number) for number in range(1, len(choices) + 1)}
        await self._play(before)
        while True:
            # One file per question: the list itself takes the keys, so a cadre may press as she hears it.
            typed = await self._ask("choose", spoken, digits, give_up="pc_no_keys_bye")
            if typed in valid:
                return choices[int(typed) - 1]
            await self._play("wrong_key")

    async def _zone(self, desk: PhonecastDesk, cadre: Cadre) -> PhonecastTarget | None:
        for _ in range(self._config.attempts):
            code = await self._ask("zone", "pc_enter_zone_code", ZONE_CODE_DIGITS, give_up="pc_no_keys_bye")
            zone = await desk.zone_by_code(cadre, code)
            if zone is not None:
                return zone
            await self._play("pc_zone_not_found")
        return None  # back to the menu of places

    # -- 实时喊话 -----------------------------------------------------------------------------------------

    async def _live(self, desk: PhonecastDesk, cadre: Cadre, target: PhonecastTarget, rooms: RoomEnder) -> bool:
        """A live call, from asking the desk to off the air. True: the zone was busy and the caller chose to
        record instead (the recorded flow follows)."""
        room = room_name(self._linkedid)
        await self._stage("connecting")
        await self._play("pc_live_connecting")
        try:
            start = await desk.go_live(cadre, self._caller, target, call_id=self._linkedid, room=room)
        except Exception:
            log.exception("phone broadcast %s: the desk failed to go live", self._linkedid)
            await self._event("CxPhonecast", Mode="live", Status="unknown")
            # Whatever it held, it lets go: nobody is in the room, nothing was said.
            await self._live_ended(desk, LiveEnd.FAILED, None)
            await self._stage("done")
            await self._end("pc_refused_failed")
        if start.status is LiveStatus.ON_AIR:
            # From here the zones are held for her: whatever happens next (a hang-up now included), the desk
            # hears live_ended once.
            await self._on_air(desk, start, room, rooms)
            return False
        await self._live_answer(start)
        if start.status is LiveStatus.BUSY:
            key = await self._ask("busy", "pc_live_busy", 1, give_up="pc_no_keys_bye", wrong_keys="12")
            if key == "1":
                return True
            await self._stage("done")
            await self._end("pc_goodbye")
        if start.status is LiveStatus.EMERGENCY:
            await self._stage("done")
            await self._end("pc_live_emergency_refused")
        reason = start.reason or ""
        if reason not in REFUSAL_REASONS:
            log.warning("phone broadcast %s: live refused for an unknown reason: %r", self._linkedid, reason)
            reason = "failed"
        await self._stage("done")
        await self._play(f"pc_refused_{reason}")
        await self._end("pc_goodbye")

    async def _live_answer(self, start: LiveStart) -> None:
        await self._event(
            "CxPhonecast",
            Mode="live",
            Status=start.status.value,
            Speakers=str(start.speakers),
            After=str(start.after),
            Unanswered=str(start.unanswered),
            Record=str(start.record_id or ""),
            Reason=start.reason or "",
        )

    async def _on_air(self, desk: PhonecastDesk, start: LiveStart, room: str, rooms: RoomEnder) -> None:
        """The caller in the room (recorded) until #, hang-up, the hard limit or an emergency; the desk is told
        whatever happens (live_ended once, with the recording), then the caller hears why it ended."""
        ended_by = LiveEnd.FAILED
        recording: Path | None = None
        monitoring = False
        name = f"pc_{self._linkedid}_live"
        host = self._config.spool_host / f"{name}.wav"
        done_marker = host.with_suffix(".done")
        self._takes.extend([host, done_marker])
        preempted = desk.live_preempted(self._linkedid)
        watcher = asyncio.create_task(self._end_room_when(preempted, rooms, room))
        try:
            await self._live_answer(start)
            if start.unanswered > 0:
                text = f"已接通{start.speakers}个喇叭，还有{start.unanswered}个喇叭没有接通。"
            else:
                text = f"已接通{start.speakers}个喇叭。"
            await self._say(text, "pc_live_on_air")
            if start.after > 0:
                await self._play("pc_live_after")
            await self._play("pc_live_speak")
            if preempted.is_set():
                ended_by = LiveEnd.EMERGENCY
                return
            asterisk_file = self._config.spool_asterisk / name
            monitor = f"{asterisk_file}.wav,,/bin/touch {asterisk_file}.done"
            await self._session.command(f"EXEC MixMonitor {quote(monitor)}")
            monitoring = True
            await self._session.set_variable("CONFBRIDGE(user,template)", TALKER_PROFILE)
            await self._session.set_variable("CONFBRIDGE(user,timeout)", str(self._config.live_max_s))
            await self._session.set_variable("CONFBRIDGE(menu,#)", "leave_conference")
            await self._play("beep")
            await self._stage("live")
            _code, rest = await self._session.command(
                f"EXEC ConfBridge {quote(f'{room},cx_live')}", timeout_s=self._config.live_max_s + PLAYING_S
            )
            hung_up = self._session.hung_up or _result(rest) == "-1"
            left = "HANGUP" if hung_up else await self._variable("CONFBRIDGE_RESULT")
            ended_by = LiveEnd.EMERGENCY if preempted.is_set() else _LEFT_BY.get(left, LiveEnd.FAILED)
            if not self._session.hung_up:
                await self._session.command("EXEC StopMixMonitor")
        except AgiHangup:
            ended_by = LiveEnd.EMERGENCY if preempted.is_set() else LiveEnd.CALLER
            raise
        finally:
            watcher.cancel()
            if monitoring:
                recording = await self._closed_recording(host, done_marker)
            await self._live_ended(desk, ended_by, recording)
        if self._session.hung_up:
            return
        await self._stage("done")
        await self._play(_OFF_AIR_PROMPT[ended_by], "pc_goodbye")

    async def _end_room_when(self, preempted: asyncio.Event, rooms: RoomEnder, room: str) -> None:
        await preempted.wait()
        log.info("phone broadcast %s: an emergency took the zones: the live room ends", self._linkedid)
        # Again every second until she is out (the on-air part cancels this): taken between the line's last
        # look at the event and her entering the room, the first kick finds the room empty.
        while True:
            try:
                await rooms.end(room)
            except Exception:
                log.exception("phone broadcast %s: could not end the live room", self._linkedid)
            await asyncio.sleep(ROOM_KICK_INTERVAL_S)

    async def _closed_recording(self, host: Path, done_marker: Path) -> Path | None:
        """The live call's recording once MixMonitor has closed it (None: there is none to keep)."""
        return await asyncio.to_thread(_closed_file, host, done_marker, self._config.mixmonitor_wait_s)

    async def _live_ended(self, desk: PhonecastDesk, ended_by: LiveEnd, recording: Path | None) -> None:
        try:
            await desk.live_ended(self._linkedid, ended_by, recording)
        except Exception:
            log.exception("phone broadcast %s: the desk failed to end the live call", self._linkedid)

    async def _variable(self, name: str) -> str:
        _code, rest = await self._session.command(f"GET VARIABLE {quote(name)}")
        match = re.match(r"^result=1 \((.*)\)$", rest.strip())
        return match[1] if match else ""

    async def _record(self) -> Path:
        for attempt in range(self._config.attempts):
            take = len(self._takes) + 1
            name = f"pc_{self._linkedid}_{take}"
            host = self._config.spool_host / f"{name}.wav"
            self._takes.append(host)
            await self._play("pc_speak_after_tone" if attempt == 0 else "pc_not_heard", "beep")
            await self._stage("recording")
            limit_ms = self._config.max_recording_s * 1000
            _code, rest = await self._session.command(
                f"RECORD FILE {quote(str(self._config.spool_asterisk / name))} wav {quote('#')} {limit_ms} 0 "
                f"s={self._config.record_silence_s}",
                timeout_s=self._config.max_recording_s + PLAYING_S,
            )
            if _result(rest) == "-1":
                if self._session.hung_up or "hangup" in rest:
                    raise AgiHangup("hung up while recording")
                # Asterisk could not write the file (…(writefile)): nothing to broadcast, say so.
                log.error("phone broadcast %s: RECORD FILE failed: %s", self._linkedid, rest)
                await self._end("pc_unavailable")
            try:
                audio = await asyncio.to_thread(inspect, host)
            except (OSError, ValueError) as exc:
                log.warning("phone broadcast %s: recording %s unreadable: %s", self._linkedid, host.name, exc)
                continue
            if not audio.has_speech(self._config.min_speech_s):
                continue
            if audio.duration_s >= self._config.max_recording_s - 1:
                await self._play("pc_record_cut")
            return host
        await self._stage("nothing_said")
        await self._end("pc_nothing_heard")

    async def _review(self, recording: Path) -> str | time:
        """``now``, ``again``, or the time of day typed."""
        played = self._config.spool_asterisk / recording.stem
        listen = True
        while True:
            if listen:
                await self._play("pc_you_said", played)
            key = await self._ask(
                "review", "pc_review_menu", 1, give_up="pc_no_keys_bye", wrong_keys="123", star_is_a_choice=True
            )
            # * : 再听一遍录音 — the recording again, then the choices.
            listen = key == "*"
            if listen:
                continue
            if key == "1":
                return "now"
            if key == "2":
                return "again"
            at = await self._time_of_day()
            if at is not None:
                return at

    async def _time_of_day(self) -> time | None:
        for _ in range(self._config.attempts):
            typed = await self._ask("time", "pc_enter_time", 4, give_up="pc_no_keys_bye")
            at = time_of_day(typed)
            if at is not None:
                return at
            await self._play("pc_time_invalid")
        return None

    async def _submit(
        self, desk: PhonecastDesk, cadre: Cadre, target: PhonecastTarget, recording: Path, at_local: time | None
    ) -> None:
        await self._stage("submitting")
        await self._play("pc_please_wait")
        try:
            result = await desk.submit(
                cadre, self._caller, target, recording, call_id=self._linkedid, at_local=at_local
            )
        except Exception:
            log.exception("phone broadcast %s: the desk failed to take it", self._linkedid)
            await self._event("CxPhonecast", Status="unknown")
            await self._stage("done")
            await self._end("pc_outcome_unknown")
        await self._event(
            "CxPhonecast",
            Status=result.status.value,
            Speakers=str(result.speakers),
            Unanswered=str(result.unanswered),
            Record=str(result.record_id or ""),
            Reason=result.reason or "",
            At=result.at.isoformat() if result.at else "",
        )
        await self._stage("done")
        await self._tell(result)
        await self._play("pc_goodbye")

    async def _tell(self, result: SubmitResult) -> None:
        if result.status is SubmitStatus.STARTED:
            if result.unanswered > 0:
                text = f"已开始播出，{result.speakers}个喇叭正在播。部分喇叭未应答，共{result.unanswered}个。"
                fallback = "pc_partly_unanswered"
            else:
                text, fallback = f"已开始播出，共{result.speakers}个喇叭。", "pc_started"
            await self._say(text, fallback)
        elif result.status is SubmitStatus.QUEUED:
            await self._play("pc_queued")
        elif result.status is SubmitStatus.SCHEDULED:
            await self._say(self._scheduled_sentence(result), "pc_scheduled")
        else:
            reason = result.reason or ""
            if reason not in REFUSAL_REASONS:
                log.warning(
                    "phone broadcast %s: refused for a reason the line does not know: %r", self._linkedid, reason
                )
                reason = "failed"
            await self._play(f"pc_refused_{reason}")

    def _scheduled_sentence(self, result: SubmitResult) -> str:
        if result.at is None:
            return "已安排好定时播出。"
        zone = self._config.timezone
        local = result.at.astimezone(zone)
        today = self._line.clock.now().astimezone(zone).date()
        day = "明天" if local.date() > today else ""
        minute = f"{local.minute}分" if local.minute else "整"
        return f"已安排在{day}{local.hour}点{minute}播出。"

    # -- talking to Asterisk ----------------------------------------------------------------------------

    async def _event(self, name: str, **headers: str) -> None:
        body = ",".join([name, *(f"{key}: {value.translate(_UNSAID)}" for key, value in headers.items())])
        await self._session.command(f"EXEC UserEvent {quote(body)}")

    async def _stage(self, stage: str) -> None:
        await self._event("CxStage", Kind="phonecast", Stage=stage)

    def _path(self, prompt: str | PurePosixPath | Spoken) -> tuple[str, str]:
        """(what Asterisk plays, what the dial test is told was heard)."""
        if isinstance(prompt, Spoken):
            return str(prompt.path), f"tts:{prompt.text}"
        if isinstance(prompt, PurePosixPath):
            return str(prompt), f"file:{prompt.name}"
        if prompt == "beep":
            return "beep", "beep"
        return str(self._config.prompts_dir / prompt), prompt

    async def _heard(self, labels: Sequence[str]) -> None:
        await self._event("CxHeard", Prompts="&".join(labels))

    async def _play(self, *prompts: str | PurePosixPath | Spoken) -> None:
        for prompt in prompts:
            path, label = self._path(prompt)
            await self._heard([label])
            _code, rest = await self._session.command(
                f"STREAM FILE {quote(path)} {quote('')}",
                timeout_s=self._config.max_recording_s + PLAYING_S,
            )
            if _result(rest) == "-1" and not self._session.hung_up:
                log.warning("phone broadcast %s: %s could not be played", self._linkedid, label)

    async def _say(self, text: str, fallback: str) -> None:
        spoken = await self._line.sentence(text)
        await self._play(fallback if spoken is None else spoken)

    async def _end(self, prompt: str) -> NoReturn:
        await self._play(prompt)
        raise _Ended

    async def _ask(
        self,
        stage: str,
        prompt: str | PurePosixPath | Spoken,
        max_digits: int,
        *,
        give_up: str,
        wrong_keys: str = "",
        star_is_a_choice: bool = False,
    ) -> str:
        """Keys typed during or after ``prompt`` (``#`` ends them).

        Silence or ``*`` asks again; silence ``attempts`` times says ``give_up`` and ends the call.
        ``wrong_keys``: the only keys a one-key question takes (another says 您按的键不对 and asks again,
        not counted as silence). ``star_is_a_choice``: ``*`` is returned, for a question whose "again"
        means more than itself (the review plays the recording again). One file only: GET DATA with
        several (``a&b``) answered -1 on the sandbox's Asterisk 22 when a key was pressed during them.
        """
        silent = 0
        path, label = self._path(prompt)
        while True:
            await self._stage(stage)
            await self._heard([label])
            timeout_ms = int(self._config.key_timeout_s * 1000)
            _code, rest = await self._session.command(
                f"GET DATA {quote(path)} {timeout_ms} {max_digits}",
                timeout_s=PLAYING_S + self._config.key_timeout_s * (max_digits + 1),
            )
            typed = _result(rest)
            if typed == "-1":
                raise AgiHangup("hung up at a question")
            if "*" in typed:
                if star_is_a_choice:
                    return "*"
                continue
            if not typed:
                silent += 1
                if silent >= self._config.attempts:
                    await self._stage("no_keys")
                    await self._end(give_up)
                await self._play("pc_no_keys")
                continue
            if wrong_keys and typed not in wrong_keys:
                await self._play("wrong_key")
                continue
            return typed

    def remove_recordings(self) -> None:
        """The line's own files (the desk has copied what it keeps)."""
        for take in self._takes:
            take.unlink(missing_ok=True)


def _closed_file(host: Path, done_marker: Path, wait_s: float) -> Path | None:
    """``host`` once MixMonitor has run its command (touch ``done_marker``), at most ``wait_s`` from now."""
    deadline = time_module.monotonic() + wait_s
    while not done_marker.exists() and time_module.monotonic() < deadline:
        time_module.sleep(0.1)
    # A WAV header alone (44 bytes) is no recording.
    return host if host.exists() and host.stat().st_size > 44 else None


def _result(rest: str) -> str:
    match = _RESULT.match(rest.strip())
    return match[1] if match else ""


def time_of_day(typed: str) -> time | None:
    """Four digits HHMM as a time of day (0000–2359); None for anything else."""
    if len(typed) != 4 or not typed.isdigit():
        return None
    hour, minute = int(typed[:2]), int(typed[2:])
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)
