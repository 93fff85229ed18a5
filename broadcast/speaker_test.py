"""The speaker test (拨测): a short item, rendered now, played through one transport to one destination now.

Used by ``cunxiang broadcast test`` and by the button on the speaker page. It
goes straight to the transport, outside the dispatcher and the as-run log (it
plays to one loudspeaker, not to a zone); its result is the per-speaker result
the transports give everywhere else. An HTTP-pull terminal cannot be pushed to
(it fetches what it is told on its next poll, and reports through the as-run
log), so it is refused here with a pointer to 立即播出 to its zone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from areas.addresses import AddressPolicy, check_rtp_destination
from broadcast.production import BroadcastProducer
from broadcast.transports import PlayItem, SpeakerResult, SpeakerTarget, Transport
from common.errors import Conflict, InvalidInput
from storage.models import RUN_FAILED
from tts.audio import Profile
from tts.engines import VoiceRequest

DEFAULT_TEST_TEXT = "村响广播测试，听到请回复。"
TEST_PROFILES = (Profile.MP3, Profile.ASTERISK, Profile.RTP, Profile.WAV16K)


class SpeakerTester:
    def __init__(
        self,
        producer: BroadcastProducer,
        transports: Mapping[str, Transport],
        *,
        engine: str | None = None,
        timeout_s: float = 60.0,
        address_policy: AddressPolicy | None = None,
    ) -> None:
        self._producer = producer
        self._transports = dict(transports)
        self._engine = engine
        self._timeout_s = timeout_s
        # The same rules as a speaker saved in the area tree: a test may not reach where a speaker could not.
        self._address_policy = address_policy or AddressPolicy()

    async def render(self, text: str) -> PlayItem:
        result = await self._producer.render_text(
            text or DEFAULT_TEST_TEXT, voice=VoiceRequest(engine=self._engine), repeats=1, profiles=TEST_PROFILES
        )
        return PlayItem(title="拨测", files=result.files, duration_s=result.duration_s, priority=4)

    async def test(self, text: str, target: SpeakerTarget) -> SpeakerResult:
        if target.transport == "rtp":  # a clear error before anything is rendered
            check_rtp_destination(target.address, self._address_policy, field="rtp")
        transport = self._transports.get(target.transport)
        if transport is None:
            # Switched off in this installation's settings (broadcast.transports): a fact, not an outage.
            raise Conflict(f"传输方式 {target.transport} 未启用", code="speaker_test.transport")
        if target.transport == "http":
            raise InvalidInput(
                "4G拉取终端不能直接推送：请把一条通知“立即播出”到它所在的分区来测试", code="speaker_test.http"
            )
        item = await self.render(text)
        try:
            async with asyncio.timeout(self._timeout_s + item.duration_s):
                results = await transport.play(item, [target], asyncio.Event())
        except TimeoutError:
            return SpeakerResult(target, RUN_FAILED, error=f"拨测超时（{self._timeout_s:g}秒）")
        return results[0]
