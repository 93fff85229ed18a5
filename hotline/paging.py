"""SIP paging through Asterisk ``Page()``: one audio item to a zone's SIP speakers (for broadcasting).

The ``cx-page`` dialplan context (deploy/asterisk/templates/extensions.conf.j2)
does the work; this module places the call and watches it::

    Originate Local/page@cx-page → Page(PJSIP/spk1&PJSIP/spk2, quiet) on one side,
                                   Playback(<item>) on the other, which ends the page

Each speaker's answer shows as a ``DialEnd`` event (``DialStatus: ANSWER``).
:meth:`Pager.page` returns when every channel of the page has hung up;
:meth:`Pager.hangup` cuts a running page short (preemption by an emergency).
The item must be where Asterisk can read it: it is copied into the shared
media directory first (content-addressed, so the same item is copied once).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotline.ami import AmiLink, AmiNotConnected, Message
from hotline.asterisk import AsteriskPaths
from hotline.recordings import inspect

log = logging.getLogger(__name__)

# Time allowed beyond the ring time and the item's length before a page is given up as stuck.
MARGIN_S = 30.0

# Headers that make SIP speakers answer a page by themselves, by vendor convention.
AUTO_ANSWER_HEADERS: Mapping[str, tuple[tuple[str, str], ...]] = {
    # Yealink, Fanvil, Grandstream, Snom, Algo, Axis and most IP speakers.
    "generic": (("Call-Info", "<sip:127.0.0.1>;answer-after=0"),),
    "polycom": (("Alert-Info", "<http://127.0.0.1>;info=alert-autoanswer;delay=0"),),
    "cisco": (("Call-Info", "<sip:127.0.0.1>;answer-after=0"), ("Alert-Info", "ring-answer")),
    # RFC 5373.
    "rfc5373": (("Answer-Mode", "Auto"),),
    "none": (),
}


@dataclass(frozen=True)
class PageOutcome:
    """Which endpoints answered (and so heard the item), and an error if the page failed."""

    answered: dict[str, bool]
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _endpoint_of(channel: str, targets: Mapping[str, str]) -> str | None:
    """The endpoint a dialled channel (``PJSIP/spk1-00000001``, ``Local/x@ctx;1``) belongs to, if one of ours."""
    for target, endpoint in targets.items():
        if channel.startswith(f"{target}-") or channel.startswith(f"{target};"):
            return endpoint
    return None


def dial_target(endpoint: str) -> str:
    """A speaker's address as a dial string: a bare PJSIP endpoint name, or a full dial string as it is."""
    if not endpoint or any(char in endpoint for char in "&,|\r\n"):
        raise ValueError(f"not a speaker address: {endpoint!r}")
    return endpoint if "/" in endpoint else f"PJSIP/{endpoint}"


class Pager:
    def __init__(self, link: AmiLink, paths: AsteriskPaths, *, headers: Sequence[tuple[str, str]] = ()) -> None:
        if len(headers) > 3:
            raise ValueError("the paging context adds at most three SIP headers")
        self._link = link
        self._paths = paths
        self._headers = tuple(headers)
        # channel id of a running page → its channels (uniqueid → name), for hangup().
        self._running: dict[str, dict[str, str]] = {}

    def _stage(self, audio_path: Path) -> str:
        digest = hashlib.sha256(audio_path.read_bytes()).hexdigest()[:20]
        dest = self._paths.media.host / "page" / f"item-{digest}.wav"
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            if self._paths.owner is not None:
                with contextlib.suppress(OSError):
                    os.chown(dest.parent, *self._paths.owner)
            temporary = dest.with_suffix(".part")
            shutil.copyfile(audio_path, temporary)
            temporary.replace(dest)
            self._paths.give_to_asterisk(dest)
        return str(self._paths.media.to_asterisk(dest.with_suffix("")))

    async def page(
        self,
        endpoints: Sequence[str],
        audio_path: Path,
        channel_id: str,
        timeout_s: float,
        *,
        on_answer: Callable[[str], None] | None = None,
    ) -> PageOutcome:
        if not self._link.connected:
            raise AmiNotConnected("not connected to Asterisk: cannot page")
        targets = {dial_target(endpoint): endpoint for endpoint in endpoints}
        audio = await asyncio.to_thread(self._stage, audio_path)
        duration = (await asyncio.to_thread(inspect, audio_path)).duration_s
        answered = dict.fromkeys(endpoints, False)
        channels: dict[str, str] = {}
        self._running[channel_id] = channels
        ended = asyncio.Event()
        seen = asyncio.Event()

        def listen(event: Message) -> None:
            # Page() dials the speakers with no calling channel: its DialEnd carries only Dest* fields.
            if (event.get("Linkedid") or event.get("DestLinkedid")) != channel_id:
                return
            name = event.get("Event")
            if name == "Newchannel":
                channels[event.get("Uniqueid", "")] = event.get("Channel", "")
                seen.set()
            elif name == "Hangup":
                channels.pop(event.get("Uniqueid", ""), None)
                if seen.is_set() and not channels:
                    ended.set()
            elif name == "DialEnd" and event.get("DialStatus") == "ANSWER":
                endpoint = _endpoint_of(event.get("DestChannel", ""), targets)
                if endpoint is not None and not answered[endpoint]:
                    answered[endpoint] = True
                    if on_answer is not None:
                        on_answer(endpoint)

        variables = {
            "__CX_MARKER": "page",
            "__CX_PAGE_ID": channel_id,
            "_CX_PAGE_TARGETS": "&".join(targets),
            "_CX_PAGE_TIMEOUT": str(max(1, round(timeout_s))),
            "CX_PAGE_AUDIO": audio,
        }
        for index, (name, value) in enumerate(self._headers, start=1):
            variables[f"__CX_PAGE_HNAME_{index}"] = name
            variables[f"__CX_PAGE_HVALUE_{index}"] = value
        self._link.add_listener(listen)
        try:
            originated = await self._link.originate(
                channel="Local/page@cx-page",
                channel_id=channel_id,
                other_channel_id=f"{channel_id}-page",
                context="cx-page-source",
                exten="s",
                ring_timeout_s=timeout_s,
                variables=variables,
            )
            try:
                async with asyncio.timeout(timeout_s + duration + MARGIN_S):
                    response = await originated.result
                    if response.get("Response") != "Success":
                        return PageOutcome(answered, error=f"寻呼未能发起（{response.get('Reason', '')}）")
                    await ended.wait()
            except TimeoutError:
                await self.hangup(channel_id)
                return PageOutcome(answered, error="寻呼超时", detail={"duration_s": duration})
        finally:
            self._link.remove_listener(listen)
            self._running.pop(channel_id, None)
        return PageOutcome(answered, detail={"duration_s": duration})

    async def hangup(self, channel_id: str) -> None:
        """End a running page: hang up the side playing the item, which ends Page() for every speaker."""
        for channel in list(self._running.get(channel_id, {}).values()):
            if channel.startswith("Local/page@cx-page-"):
                with contextlib.suppress(AmiNotConnected):
                    await self._link.hangup(channel)
        log.info("page %s cut short", channel_id)
