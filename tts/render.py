"""Rendering for playback: pieces of audio brought to the loudness target, laid out, encoded, cached.

Generic for every caller. A broadcast item (chime, the message three times)
and a hotline prompt (one sentence, a short lead-in) differ only in their
*layout*, the function that places the normalised pieces on a timeline::

    renderer = AudioRenderer(cache, tools, LoudnessPolicy(target_lufs=-16, ceiling_dbtp=-1.5))
    rendered = await renderer.render(
        {"speech": spoken.key, "layout": "prompt-1"},     # everything that shapes the sound
        [Source(spoken.entry.path, "speech")],
        layout,                                           # async (pieces) -> Timeline
        [Profile.ASTERISK],
        meta={"engine": spoken.engine},
    )

Each source is decoded and measured by ffmpeg into a clip on disk, then brought
to the target with a true-peak limit (:meth:`AudioTools.normalize_clip`: a plain
gain is applied at assembly, the limiter writes a new clip); the layout places
clips and silences on a timeline (a list, no audio touched); one ffmpeg run lays
them end to end and encodes every missing profile, measuring the whole on the
way (:meth:`AudioTools.assemble`). No sample passes through Python: a four-hour
item costs the event loop what a four-second one does, and its memory is
ffmpeg's, a frame at a time. Results are cache entries, one per profile, keyed
by ``parts`` + profile: the same request twice costs a lookup, and concurrent
identical requests render once. A caller that needs the result kept (see
:mod:`tts.cache`) passes a :class:`~tts.cache.KeepSet`: the keys are in it
before anything is written, so no eviction can take them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from common.errors import InvalidInput
from tts.audio import PROFILES, AudioTools, NormalizedClip, Profile, Segment
from tts.cache import AudioCache, CacheEntry, KeepSet, cache_key
from tts.engine_errors import AudioToolFailed

# Part of every rendered entry's key: bump it when the same inputs would now sound different.
RENDER_VERSION: Final = "render-2"


@dataclass(frozen=True)
class LoudnessPolicy:
    target_lufs: float = -16.0
    ceiling_dbtp: float = -1.5
    # The limiter aims this far under the ceiling, so MP3 encoding and resampling to 8 kHz stay under it.
    headroom_db: float = 1.0

    @property
    def limit_dbtp(self) -> float:
        return self.ceiling_dbtp - self.headroom_db


@dataclass(frozen=True)
class Source:
    """A piece of audio to normalise: a file (a cache entry, an upload) or bytes, in any format ffmpeg reads."""

    audio: Path | bytes = field(repr=False)
    label: str
    # Refuse a source longer than this (uploads); None: no limit.
    max_duration_s: float | None = None
    # Loudness for this piece relative to the target (a chime may sit a little lower).
    relative_lu: float = 0.0


@dataclass(frozen=True)
class Timeline:
    """What a layout returns: clips and silences in order, and the highest true peak of what it placed."""

    segments: Sequence[Segment]
    true_peak_dbtp: float

    @property
    def duration_s(self) -> float:
        return sum(segment.duration_s for segment in self.segments)


Layout = Callable[[Sequence[NormalizedClip]], Awaitable[Timeline]]

BadSourceReason = Literal["unreadable", "silent", "too_long"]


class BadSource(InvalidInput):
    """A source cannot be used; ``label`` says which, ``reason`` why. Callers reword it for their users."""

    default_code = "audio.bad_source"

    def __init__(self, label: str, reason: BadSourceReason, detail: str) -> None:
        messages = {
            "unreadable": "无法读取这段音频。",
            "silent": "这段音频几乎没有声音。",
            "too_long": "这段音频太长了。",
        }
        super().__init__(messages[reason], detail=f"{label}: {detail}")
        self.label = label
        self.reason = reason


@dataclass(frozen=True)
class Rendered:
    files: Mapping[Profile, Path]
    keys: Mapping[Profile, str]
    meta: Mapping[str, Any]
    cached: bool

    @property
    def duration_s(self) -> float:
        return float(self.meta["duration_s"])

    @property
    def integrated_lufs(self) -> float:
        return float(self.meta["integrated_lufs"])

    @property
    def true_peak_dbtp(self) -> float:
        return float(self.meta["true_peak_dbtp"])


class AudioRenderer:
    def __init__(self, cache: AudioCache, tools: AudioTools, loudness: LoudnessPolicy) -> None:
        self._cache = cache
        self._tools = tools
        self._loudness = loudness

    @property
    def loudness(self) -> LoudnessPolicy:
        return self._loudness

    @property
    def tools(self) -> AudioTools:
        return self._tools

    async def normalized(self, source: Source, workdir: Path, name: str) -> NormalizedClip:
        """``source`` decoded into ``workdir`` (as ``name``), measured, brought to the loudness target."""
        limit = source.max_duration_s + 1 if source.max_duration_s is not None else None
        try:
            clip, measured = await self._tools.decode_to_file(
                source.audio, workdir / f"{name}.raw", max_duration_s=limit
            )
        except AudioToolFailed as exc:
            raise BadSource(source.label, "unreadable", exc.detail or exc.message) from exc
        if source.max_duration_s is not None and clip.duration_s > source.max_duration_s:
            raise BadSource(source.label, "too_long", f"longer than {source.max_duration_s:g} s")
        if measured.silent or clip.frames == 0:
            raise BadSource(source.label, "silent", f"{measured.integrated_lufs} LUFS")
        return await self._tools.normalize_clip(
            clip,
            measured,
            target_lufs=self._loudness.target_lufs + source.relative_lu,
            limit_dbtp=self._loudness.limit_dbtp,
            workdir=workdir,
        )

    def keys(self, parts: Mapping[str, Any], profiles: Sequence[Profile]) -> dict[Profile, str]:
        common = {**parts, "loudness": asdict(self._loudness), "version": RENDER_VERSION}
        return {profile: cache_key("rendered", {**common, "profile": profile.value}) for profile in profiles}

    async def render(
        self,
        parts: Mapping[str, Any],
        sources: Sequence[Source],
        layout: Layout,
        profiles: Sequence[Profile],
        *,
        meta: Mapping[str, Any] | None = None,
        parents: Sequence[str] = (),
        keep: KeepSet | None = None,
    ) -> Rendered:
        """The rendering described by ``parts``, from cache or made now, in every profile asked for.

        ``parts`` must name everything that shapes the sound (the sources' own keys or
        hashes, the layout's parameters); ``parents`` are cache keys the result was made
        from (kept while it is kept). With ``keep``, the result's keys and parents are put
        in it before anything is written: the cache can never evict them under the caller.
        """
        wanted = list(dict.fromkeys(profiles))
        if not wanted:
            raise ValueError("ask for at least one profile")
        keys = self.keys(parts, wanted)
        if keep is not None:
            keep.add([*keys.values(), *parents])
        async with self._cache.lock(cache_key("rendered", {**parts, "version": RENDER_VERSION})):
            found = {profile: self._cache.get(key) for profile, key in keys.items()}
            missing = [profile for profile, entry in found.items() if entry is None]
            if missing:
                async with self._cache.staging() as work:
                    pieces = [
                        await self.normalized(source, work.directory, f"source{index}")
                        for index, source in enumerate(sources)
                    ]
                    timeline = await layout(pieces)
                    record = {
                        **(meta or {}),
                        "duration_s": round(timeline.duration_s, 3),
                        "true_peak_dbtp": round(timeline.true_peak_dbtp, 2),
                        "parents": list(parents),
                    }
                    await self._encode_and_store(timeline.segments, missing, keys, record, found)
        if missing:
            await self._cache.maybe_evict()
        entries = {profile: entry for profile, entry in found.items() if entry is not None}
        first = next(iter(entries.values()))
        return Rendered(
            files={profile: entry.path for profile, entry in entries.items()},
            keys=keys,
            meta=first.meta,
            cached=not missing,
        )

    async def _encode_and_store(
        self,
        segments: Sequence[Segment],
        missing: Sequence[Profile],
        keys: Mapping[Profile, str],
        record: Mapping[str, Any],
        found: dict[Profile, CacheEntry | None],
    ) -> None:
        async with self._cache.staging() as staging:
            outputs = {
                profile: staging.audio_path(f"{profile.value}.{PROFILES[profile].suffix}") for profile in missing
            }
            loudness = await self._tools.assemble(segments, outputs)
            for profile, path in outputs.items():
                # One staging directory per entry: commit consumes what it is given.
                async with self._cache.staging() as own:
                    own_path = own.audio_path(PROFILES[profile].suffix)
                    path.rename(own_path)
                    found[profile] = await self._cache.commit(
                        keys[profile],
                        own,
                        own_path,
                        {**record, "profile": profile.value, "integrated_lufs": round(loudness.integrated_lufs, 2)},
                    )
