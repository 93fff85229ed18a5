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
import logging
from collections.abc import Mapping

from areas.addresses import AddressPolicy, check_rtp_destination
from broadcast.production import BroadcastProducer
from broadcast.transports import PlayItem, SpeakerResult, SpeakerTarget, Transport
from common.errors import Conflict, InvalidInput, ServiceUnavailable
from storage.models import LOWEST_PRIORITY, RUN_FAILED
from tts.audio import Profile
from tts.cache import AudioCache, KeepSet
from tts.engines import VoiceRequest

log = logging.getLogger(__name__)

DEFAULT_TEST_TEXT = "村响广播测试，听到请回复。"
TEST_PROFILES = (Profile.MP3, Profile.ASTERISK, Profile.RTP, Profile.WAV16K)
RENDER_ATTEMPTS = 2


class SpeakerTester:
    """Its audio is kept in the cache while a test runs (a keep set), and rendered again if it went missing."""

    def __init__(
        self,
        producer: BroadcastProducer,
        transports: Mapping[str, Transport],
        cache: AudioCache,
        *,
        engine: str | None = None,
        timeout_s: float = 60.0,
        address_policy: AddressPolicy | None = None,
    ) -> None:
        self._producer = producer
        self._transports = dict(transports)
        self._cache = cache
        self._engine = engine
        self._timeout_s = timeout_s
        # The same rules as a speaker saved in the area tree: a test may not reach where a speaker could not.
        self._address_policy = address_policy or AddressPolicy()

    async def render(self, text: str, keep: KeepSet | None = None) -> PlayItem:
        """The test item, its files present: a file lost between rendering and now is rendered again."""
        for _attempt in range(RENDER_ATTEMPTS):
            result = await self._producer.render_text(
                text or DEFAULT_TEST_TEXT,
                voice=VoiceRequest(engine=self._engine),
                repeats=1,
                profiles=TEST_PROFILES,
                keep=keep,
            )
            if all(path.exists() for path in result.files.values()):
                break
            log.warning("speaker test audio went missing right after it was rendered; rendering it again")
        else:
            raise ServiceUnavailable("拨测音频生成后丢失，请稍后再试", code="speaker_test.audio_missing")
        return PlayItem(title="拨测", files=result.files, duration_s=result.duration_s, priority=LOWEST_PRIORITY)

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
        with self._cache.keep_set(f"speaker test of {target.address}") as keep:
            item = await self.render(text, keep)
            try:
                async with asyncio.timeout(self._timeout_s + item.duration_s):
                    results = await transport.play(item, [target], asyncio.Event())
            except TimeoutError:
                return SpeakerResult(target, RUN_FAILED, error=f"拨测超时（{self._timeout_s:g}秒）")
            except OSError as exc:  # a file gone under the transport (another process evicted it)
                log.warning("speaker test of %s could not read its audio: %s", target.address, exc)
                return SpeakerResult(target, RUN_FAILED, error="拨测音频读取失败，请再试一次")
        return results[0]
