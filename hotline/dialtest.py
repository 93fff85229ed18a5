"""The dial test (拨测): a simulated villager calls the hotline through the real Asterisk.

``Originate Local/s@hotline`` with the other half in the ``villager`` context:
the hotline half runs the real IVR; the villager half waits. The driver here
watches the IVR's ``CxStage`` events for this call and, when the IVR says it
is ready for something, redirects the villager's channel to do it —
``villager-act,keys`` (``SendDTMF``) at the menu or a number prompt,
``villager-act,speak`` (``Playback`` of the villager's audio) when recording
starts — or hangs it up where the script says. Nothing waits a fixed time: a
loaded machine only makes every step later, never out of order.

Staff use it (``cunxiang hotline dial-test``) to check a deployment end to
end; the tests use it to be every villager.

The same villager calls the phone-broadcast line (手机喊话, ``line="phonecast"``):
``Local/<phonecast_did>@from-trunk``, so the call comes in by its number as a
cadre's would. That line announces its questions as ``CxStage`` of kind
``phonecast`` (pin, target, choose, zone, review, time: keys; recording:
speech), everything the caller hears as ``CxHeard`` and the desk's answer as
``CxPhonecast``; the call reports them (``heard``, ``phonecast``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from hotline.ami import AmiError, AmiLink, Message

log = logging.getLogger(__name__)

HangupAt = Literal["welcome", "menu", "recording", "readback", "transfer", "talked", "live", "end"]
Line = Literal["hotline", "phonecast"]
# IVR stages at which the villager presses the next group of keys.
KEY_STAGES = frozenset({"menu", "number", "pin"})
# The phone-broadcast line's questions that take keys (hotline/phonecast_line.py).
PHONECAST_KEY_STAGES = frozenset({"pin", "target", "choose", "zone", "mode", "busy", "review", "time"})


@dataclass(frozen=True)
class VillagerScript:
    """What the simulated villager does.

    ``keys``: one group per prompt that asks for keys, in order (``["2", "12345678#"]``
    presses 2 at the menu, then types a number). ``audio``: what she says when asked
    to speak (a WAV as Asterisk sees it, without ``.wav``); ``None`` says nothing.
    ``hangup_at``: ``welcome`` hangs up as soon as the IVR answers, ``recording``
    right after speaking, ``readback`` as the case number starts being read back,
    ``transfer`` while the operator's phone (key 0) rings, ``talked`` as soon as the operator answers,
    ``live`` once she has spoken on the air (实时喊话), ``end`` waits for the IVR to finish.
    On the air (the phone-broadcast line's ``live`` stage) she says ``audio``, then presses the next group of
    keys if any is left (``#`` ends the live broadcast); with none left she stays on, quiet.
    """

    caller: str = "13800001111"
    caller_name: str = ""
    keys: Sequence[str] = ()
    audio: PurePosixPath | None = None
    hangup_at: HangupAt = "end"
    test_call: bool = True
    # Which number she dials: the hotline, or the phone-broadcast line (keys then start with the PIN).
    line: Line = "hotline"


@dataclass
class VillagerCall:
    """What happened, as the villager's side saw it."""

    linkedid: str
    stages: list[str] = field(default_factory=list)
    # When each stage was announced (event-loop clock, seconds), beside ``stages``.
    stage_times: list[float] = field(default_factory=list)
    pressed: list[str] = field(default_factory=list)
    read_back: str | None = None
    read_back_playback: str | None = None
    pin_read_back: bool = False
    status_results: list[dict[str, str]] = field(default_factory=list)
    spoke: bool = False
    originate_response: str | None = None
    ended: bool = False
    # The phone-broadcast line: every prompt she heard (names; ``tts:…`` for sentences spoken at call time,
    # ``file:…`` for her own recording played back), and the desk's answer (CxPhonecast's headers).
    heard: list[str] = field(default_factory=list)
    phonecast: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "linkedid": self.linkedid,
            "stages": self.stages,
            "pressed": self.pressed,
            "read_back": self.read_back,
            "pin_read_back": self.pin_read_back,
            "status_results": self.status_results,
            "spoke": self.spoke,
            **({"heard": self.heard, "phonecast": self.phonecast} if self.heard or self.phonecast else {}),
        }


class SimulatedVillager:
    def __init__(self, link: AmiLink, *, hotline: str = "Local/s@hotline", phonecast: str | None = None) -> None:
        self._link = link
        self._hotline = hotline
        self._phonecast = phonecast

    @staticmethod
    def new_call_id() -> str:
        return f"dt-{secrets.token_hex(6)}"

    async def call(
        self, script: VillagerScript, *, call_id: str | None = None, timeout_s: float = 120.0
    ) -> VillagerCall:
        """Place the call and play the villager until every channel of it has hung up."""
        call_id = call_id or self.new_call_id()
        if script.line == "phonecast" and self._phonecast is None:
            raise ValueError("the phone-broadcast line has no number: set hotline.phonecast_did")
        channel = self._phonecast if script.line == "phonecast" and self._phonecast else self._hotline
        result = VillagerCall(call_id)
        events: asyncio.Queue[Message] = asyncio.Queue()

        def listen(event: Message) -> None:
            if event.get("Linkedid") == call_id:
                events.put_nowait(event)

        self._link.add_listener(listen)
        try:
            variables = {"CX_HANGUP_AFTER_SPEAKING": "1" if script.hangup_at in ("recording", "live") else ""}
            if script.test_call:
                variables["__CX_DIALTEST"] = "1"
            if script.audio is not None:
                variables["CX_AUDIO"] = str(script.audio)
            caller_id = f'"{script.caller_name}" <{script.caller}>' if script.caller_name else f"<{script.caller}>"
            originated = await self._link.originate(
                channel=channel,
                channel_id=call_id,
                other_channel_id=f"{call_id}-ivr",
                context="villager",
                exten="s",
                caller_id=caller_id,
                variables=variables,
            )
            async with asyncio.timeout(timeout_s):
                await self._drive(script, result, events, originated.result)
        finally:
            self._link.remove_listener(listen)
        return result

    async def _drive(
        self,
        script: VillagerScript,
        result: VillagerCall,
        events: asyncio.Queue[Message],
        originate_result: asyncio.Future[Message],
    ) -> None:
        keys = list(script.keys)
        villager: str | None = None
        # The IVR side answers first: a stage announced before the villager's side is up waits for it.
        waiting_stage: str | None = None
        channels: set[str] = set()
        seen_any = False
        while True:
            event = await events.get()
            name = event.get("Event")
            uniqueid = event.get("Uniqueid", "")
            if name == "Newchannel":
                channels.add(uniqueid)
                seen_any = True
            elif name == "Hangup":
                channels.discard(uniqueid)
                if seen_any and not channels:
                    result.ended = True
                    if originate_result.done() and not originate_result.cancelled():
                        with contextlib.suppress(AmiError):  # the link was lost: no response to tell
                            result.originate_response = originate_result.result().get("Response")
                    return
            elif name != "UserEvent":
                continue
            elif event.get("UserEvent") == "CxVillager" and event.get("Stage") == "ready":
                villager = event.get("Channel")
                if waiting_stage is not None and villager is not None:
                    await self._act(script, result, waiting_stage, keys, villager)
                    waiting_stage = None
            elif event.get("UserEvent") == "CxStage" and event.get("Kind") == script.line:
                stage = event.get("Stage", "")
                result.stages.append(stage)
                result.stage_times.append(asyncio.get_running_loop().time())
                if villager is None:
                    waiting_stage = stage
                else:
                    await self._act(script, result, stage, keys, villager)
            else:
                self._note(result, event)

    @staticmethod
    def _note(result: VillagerCall, event: Message) -> None:
        """What else the IVR tells the dial test: the villager has spoken, a number read back, a status answered."""
        user_event = event.get("UserEvent")
        if user_event == "CxVillager" and event.get("Stage") == "spoken":
            result.spoke = True
        elif user_event == "CxReadBack":
            result.read_back = event.get("Digits") or event.get("Number")
            result.read_back_playback = event.get("Playback")
            result.pin_read_back = event.get("Pin") == "yes"
        elif user_event == "CxHeard":
            result.heard.extend(prompt for prompt in event.get("Prompts", "").split("&") if prompt)
        elif user_event == "CxPhonecast":
            result.phonecast = {
                key: event.get(key, "") for key in ("Status", "Speakers", "Unanswered", "Record", "Reason", "At")
            }
            # A live call's answer (实时喊话) also says so, and how many 4G terminals get the recording after.
            result.phonecast.update({key: event.get(key, "") for key in ("Mode", "After") if event.get(key)})
        elif user_event == "CxStatus":
            result.status_results.append(
                {key: event.get(key, "") for key in ("Result", "Number", "Status", "Try", "Playback")}
            )

    async def _act(
        self, script: VillagerScript, result: VillagerCall, stage: str, keys: list[str], villager: str
    ) -> None:
        key_stages = PHONECAST_KEY_STAGES if script.line == "phonecast" else KEY_STAGES
        try:
            if stage == "welcome" and script.hangup_at == "welcome":
                await self._link.hangup(villager)
            elif stage in key_stages and stage == "menu" and script.hangup_at == "menu":
                await self._link.hangup(villager)
            elif stage in key_stages and keys:
                group = keys.pop(0)
                result.pressed.append(group)
                await self._link.action("Setvar", Channel=villager, Variable="CX_KEYS", Value=group)
                await self._link.action("Redirect", Channel=villager, Context="villager-act", Exten="keys", Priority=1)
            elif stage == "live" and script.audio is not None:
                # Speaking on the air, then (if the script has keys left) pressing them: # ends it.
                after = keys.pop(0) if keys else ""
                if after:
                    result.pressed.append(after)
                await self._link.action("Setvar", Channel=villager, Variable="CX_KEYS_AFTER", Value=after)
                await self._link.action("Redirect", Channel=villager, Context="villager-act", Exten="speak", Priority=1)
            elif stage == "recording" and script.audio is not None:
                await self._link.action("Redirect", Channel=villager, Context="villager-act", Exten="speak", Priority=1)
            elif stage == "recording" and script.hangup_at == "recording":
                await self._link.hangup(villager)
            elif stage in ("readback", "transfer", "talked") and script.hangup_at == stage:
                await self._link.hangup(villager)
        except AmiError as exc:
            # The villager may have hung up already (the IVR ended the call): nothing left to do.
            log.info("dial test %s: at %s: %s", result.linkedid, stage, exc)
