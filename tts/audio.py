"""Generic audio production blocks: thin wrappers around ffmpeg, one small function per job.

Everything runs through :func:`tts.process.run_program` (one shared runner:
no shell, a time limit, terminate-then-wait). Audio moves between the steps
as :class:`Pcm`: mono, signed 16-bit little-endian samples at
:data:`WORKING_RATE`, piped through ffmpeg's stdin/stdout instead of temporary
files. Resampling is always ffmpeg's (``aresample``); pydub is used only to
stitch pieces together, never to resample or normalise.

Loudness (EBU R128 / ITU-R BS.1770 integrated loudness, true peak) — the
method, chosen by measurement (docs/decisions/0003-loudness-by-measurement-and-limiter.md):

1. one ffmpeg pass decodes the source and measures it (``ebur128`` filter,
   integrated loudness and true peak) at the same time;
2. if a plain gain to the target keeps the true peak under the limiter's
   ceiling, the gain is applied in-process (a multiplication: exact, no
   second pass);
3. otherwise one more pass applies the gain and a look-ahead limiter at 4×
   oversampling (so inter-sample peaks are caught), measuring the result in
   the same pass; the limiter takes some loudness away, so the gain is
   corrected (secant search on the measured result) in at most
   :data:`MAX_LIMITER_PASSES` passes, stopping within
   :data:`LOUDNESS_TOLERANCE_LU`.

That is one cheap measurement plus, for speech that needs it, one or two
limiter passes over the speech alone — not two dynamic ``loudnorm`` passes
(which resample everything to 192 kHz and cost ~10× more) over the whole,
repeated broadcast item.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from tts.engine_errors import AudioToolFailed
from tts.process import Completed, run_program

# Sample rate of every intermediate step: edge-tts delivers 24 kHz, espeak-ng 22.05 kHz,
# and nothing we send out needs more than 24 kHz.
WORKING_RATE: Final = 24_000
SAMPLE_WIDTH: Final = 2  # bytes: signed 16-bit
# ffmpeg's ebur128 reports -70 LUFS (its absolute gate) for silence.
SILENCE_LUFS: Final = -69.0
LOUDNESS_TOLERANCE_LU: Final = 0.2
MAX_LIMITER_PASSES: Final = 3
# The limiter runs at this multiple of the working rate, so it sees inter-sample peaks.
LIMITER_OVERSAMPLING: Final = 4
LIMITER_ATTACK_MS: Final = 5.0
LIMITER_RELEASE_MS: Final = 50.0
# Never raise a quiet source by more than this: beyond it we would only be amplifying noise.
MAX_GAIN_DB: Final = 40.0


@dataclass(frozen=True)
class Pcm:
    """Mono signed 16-bit little-endian samples."""

    data: bytes = field(repr=False)
    sample_rate: int = WORKING_RATE

    @property
    def frames(self) -> int:
        return len(self.data) // SAMPLE_WIDTH

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    def ffmpeg_input(self) -> list[str]:
        return ["-f", "s16le", "-ar", str(self.sample_rate), "-ac", "1", "-i", "pipe:0"]


@dataclass(frozen=True)
class Loudness:
    integrated_lufs: float
    true_peak_dbtp: float

    @property
    def silent(self) -> bool:
        return not self.integrated_lufs > SILENCE_LUFS


@dataclass(frozen=True)
class Measured:
    pcm: Pcm
    loudness: Loudness


@dataclass(frozen=True)
class Normalized:
    pcm: Pcm
    loudness: Loudness
    gain_db: float
    limiter_passes: int


@dataclass(frozen=True)
class Clip:
    """Working audio on disk: raw mono signed 16-bit little-endian samples, no header.

    Long audio never passes through Python: it is decoded into a clip by ffmpeg, limited by
    ffmpeg into another clip, and placed on a timeline that ffmpeg assembles and encodes
    (:meth:`AudioTools.assemble`), ``gain_db`` applied on the way.
    """

    path: Path
    frames: int
    sample_rate: int = WORKING_RATE
    gain_db: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    def ffmpeg_input(self) -> list[str]:
        return ["-f", "s16le", "-ar", str(self.sample_rate), "-ac", "1", "-i", str(self.path)]


@dataclass(frozen=True)
class Silence:
    duration_ms: int

    @property
    def duration_s(self) -> float:
        return self.duration_ms / 1000


# What a timeline is made of: clips and silences, in order.
Segment = Clip | Silence


@dataclass(frozen=True)
class NormalizedClip:
    """A clip brought to the loudness target: ``clip.gain_db`` still to apply, or already limited into it."""

    clip: Clip
    loudness: Loudness
    gain_db: float
    limiter_passes: int

    @property
    def duration_s(self) -> float:
        return self.clip.duration_s


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    sample_rate: int
    channels: int
    codec: str
    format: str


class Profile(StrEnum):
    MP3 = "mp3"
    ASTERISK = "asterisk"
    RTP = "rtp"
    WAV16K = "wav16k"


@dataclass(frozen=True)
class ProfileSpec:
    profile: Profile
    suffix: str
    sample_rate: int
    codec: str
    description: str
    output_args: tuple[str, ...]
    # How ffmpeg/ffprobe must be told to read it (raw formats carry no header).
    input_args: tuple[str, ...] = ()


_BITEXACT: Final = ("-map_metadata", "-1", "-flags", "+bitexact", "-fflags", "+bitexact")

PROFILES: Final[Mapping[Profile, ProfileSpec]] = {
    Profile.MP3: ProfileSpec(
        Profile.MP3,
        "mp3",
        WORKING_RATE,
        "mp3",
        "MP3, 24 kHz mono, VBR about 64 kbit/s (LAME -V5): preview in the browser and HTTP pull by 4G loudspeakers",
        # VBR, not CBR: LAME's CBR output measured 0.4-0.5 LU quieter than its input here, VBR kept it.
        ("-c:a", "libmp3lame", "-q:a", "5", "-ar", str(WORKING_RATE), "-ac", "1", *_BITEXACT, "-f", "mp3"),
    ),
    Profile.ASTERISK: ProfileSpec(
        Profile.ASTERISK,
        "wav",
        8000,
        "pcm_s16le",
        "WAV, 8 kHz mono 16-bit (plain 44-byte header): Asterisk Playback()/Page() and IVR prompts",
        ("-c:a", "pcm_s16le", "-ar", "8000", "-ac", "1", *_BITEXACT, "-f", "wav"),
    ),
    Profile.RTP: ProfileSpec(
        Profile.RTP,
        "ulaw",
        8000,
        "pcm_mulaw",
        "raw G.711 mu-law, 8 kHz mono, no header: 160 bytes are one 20 ms RTP packet (payload type 0, PCMU)",
        ("-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1", *_BITEXACT, "-f", "mulaw"),
        ("-f", "mulaw", "-ar", "8000", "-ac", "1"),
    ),
    Profile.WAV16K: ProfileSpec(
        Profile.WAV16K,
        "wav",
        16000,
        "pcm_s16le",
        "WAV, 16 kHz mono 16-bit: wideband SIP speakers and local sound-card playback",
        ("-c:a", "pcm_s16le", "-ar", "16000", "-ac", "1", *_BITEXACT, "-f", "wav"),
    ),
}


# -- parsing ffmpeg's ebur128 summary -------------------------------------------------------

_SUMMARY_I: Final = re.compile(r"^\s*I:\s+(-?[\d.]+|-?inf|nan)\s+LUFS", re.MULTILINE)
_SUMMARY_PEAK: Final = re.compile(r"^\s*Peak:\s+(-?[\d.]+|-?inf|nan)\s+dBFS", re.MULTILINE)


def parse_ebur128_summary(stderr: str) -> Loudness:
    """Integrated loudness and true peak from the ``Summary:`` block ffmpeg's ebur128 prints at the end.

    Silence gives ``-70.0 LUFS`` and a ``-inf`` peak; both are returned as numbers.
    """
    start = stderr.rfind("Summary:")
    if start < 0:
        raise ValueError("no ebur128 summary in ffmpeg's output")
    summary = stderr[start:]
    integrated = _SUMMARY_I.search(summary)
    if integrated is None:
        raise ValueError("no integrated loudness in the ebur128 summary")
    peak = _SUMMARY_PEAK.search(summary)
    return Loudness(_number(integrated[1]), _number(peak[1]) if peak else -math.inf)


def _number(text: str) -> float:
    value = float(text)
    return -math.inf if math.isnan(value) else value


def db_to_gain(db: float) -> float:
    return float(10 ** (db / 20))


# -- the ffmpeg blocks -----------------------------------------------------------------------


# ffprobe's confidence in the format it found (0-100). Real files score 50 and up; below 25 (libavformat's own
# "retry" threshold) it is guessing from the file name, as it does for a PDF or a program renamed .mp3.
MIN_PROBE_SCORE = 25


class AudioTools:
    """ffmpeg and ffprobe, as the settings name them, with one time limit per job."""

    def __init__(
        self, *, ffmpeg: str = "ffmpeg", ffprobe: str = "ffprobe", timeout_s: float = 300.0, niceness: int = 0
    ) -> None:
        self.ffmpeg = ffmpeg
        self.ffprobe = ffprobe
        self.timeout_s = timeout_s
        # ffmpeg runs this much nicer than the service: the RTP pacing loop wins the CPU over rendering.
        self.niceness = niceness

    async def run_ffmpeg(self, args: Sequence[str], *, stdin: bytes | None = None, job: str) -> Completed:
        """Run one ffmpeg job; a non-zero exit or a timeout is :class:`AudioToolFailed` naming ``job``."""
        argv = [self.ffmpeg, "-hide_banner", "-nostats", "-y", *([] if stdin is not None else ["-nostdin"]), *args]
        try:
            completed = await run_program(
                argv, program="ffmpeg", timeout_s=self.timeout_s, stdin=stdin, niceness=self.niceness
            )
        except TimeoutError as exc:
            raise AudioToolFailed(
                "音频处理超时。", detail=f"ffmpeg {job} ran past {self.timeout_s:g} s", code="audio.timeout"
            ) from exc
        if completed.returncode != 0:
            raise AudioToolFailed(
                "音频处理失败。", detail=f"ffmpeg {job} exited with {completed.returncode}: {completed.stderr_tail()}"
            )
        return completed

    async def decode(self, source: Path | bytes, *, max_duration_s: float | None = None) -> Measured:
        """Decode any audio ffmpeg reads (WAV, MP3, OGG, WebM…) to working PCM, measuring it on the way."""
        limit = ["-t", f"{max_duration_s:.3f}"] if max_duration_s is not None else []
        source_args = ["-i", "pipe:0"] if isinstance(source, bytes) else ["-i", str(source)]
        completed = await self.run_ffmpeg(
            [
                *source_args,
                *limit,
                "-map",
                "0:a:0",
                "-ac",
                "1",
                "-af",
                f"aresample={WORKING_RATE},ebur128=peak=true:framelog=verbose",
                "-f",
                "s16le",
                "-c:a",
                "pcm_s16le",
                "pipe:1",
            ],
            stdin=source if isinstance(source, bytes) else None,
            job="decode",
        )
        return Measured(Pcm(completed.stdout), self._loudness(completed, "decode"))

    async def measure(self, pcm: Pcm) -> Loudness:
        completed = await self.run_ffmpeg(
            [*pcm.ffmpeg_input(), "-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
            stdin=pcm.data,
            job="measure",
        )
        return self._loudness(completed, "measure")

    async def gain_and_limit(self, pcm: Pcm, *, gain_db: float, limit_dbtp: float) -> Measured:
        """Apply ``gain_db``, then a true-peak limiter at ``limit_dbtp`` (4× oversampled); measure the result."""
        rate = pcm.sample_rate
        chain = _limiter_chain(rate, gain_db, limit_dbtp)
        completed = await self.run_ffmpeg(
            [*pcm.ffmpeg_input(), "-af", chain, "-f", "s16le", "-c:a", "pcm_s16le", "pipe:1"],
            stdin=pcm.data,
            job="limit",
        )
        return Measured(Pcm(completed.stdout, rate), self._loudness(completed, "limit"))

    async def normalize_loudness(self, source: Measured, *, target_lufs: float, limit_dbtp: float) -> Normalized:
        """Bring ``source`` to ``target_lufs`` integrated with its true peak at or under ``limit_dbtp``."""
        measured = source.loudness
        if measured.silent:
            raise ValueError("cannot normalise silence")
        gain = min(MAX_GAIN_DB, target_lufs - measured.integrated_lufs)
        if measured.true_peak_dbtp + gain <= limit_dbtp:
            # A plain gain suffices: exact, and no ffmpeg pass at all.
            pcm = apply_gain(source.pcm, gain)
            loudness = Loudness(measured.integrated_lufs + gain, measured.true_peak_dbtp + gain)
            return Normalized(pcm, loudness, gain, 0)
        # The limiter will shave the peaks and some loudness with them; start a little higher
        # (a quarter of the overshoot, found by measuring espeak-ng and edge speech), then correct.
        overshoot = measured.true_peak_dbtp + gain - limit_dbtp
        tries: list[tuple[float, Measured]] = []
        next_gain = min(MAX_GAIN_DB, gain + 0.25 * overshoot)
        for _ in range(MAX_LIMITER_PASSES):
            result = await self.gain_and_limit(source.pcm, gain_db=next_gain, limit_dbtp=limit_dbtp)
            tries.append((next_gain, result))
            error = target_lufs - result.loudness.integrated_lufs
            if abs(error) <= LOUDNESS_TOLERANCE_LU:
                break
            next_gain = _next_gain(tries, target_lufs)
        best_gain, best = min(tries, key=lambda item: abs(target_lufs - item[1].loudness.integrated_lufs))
        return Normalized(best.pcm, best.loudness, best_gain, len(tries))

    # -- the same work on files: nothing long passes through Python or the event loop --------

    async def decode_to_file(
        self, source: Path | bytes, dest: Path, *, max_duration_s: float | None = None
    ) -> tuple[Clip, Loudness]:
        """Decode any audio ffmpeg reads into a working-rate clip at ``dest``, measuring it on the way."""
        limit = ["-t", f"{max_duration_s:.3f}"] if max_duration_s is not None else []
        source_args = ["-i", "pipe:0"] if isinstance(source, bytes) else ["-i", str(source)]
        completed = await self.run_ffmpeg(
            [
                *source_args,
                *limit,
                "-map",
                "0:a:0",
                "-ac",
                "1",
                "-af",
                f"aresample={WORKING_RATE},ebur128=peak=true:framelog=verbose",
                "-f",
                "s16le",
                "-c:a",
                "pcm_s16le",
                str(dest),
            ],
            stdin=source if isinstance(source, bytes) else None,
            job="decode",
        )
        loudness = self._loudness(completed, "decode")
        return Clip(dest, _frames(dest)), loudness

    async def limit_file(self, clip: Clip, dest: Path, *, gain_db: float, limit_dbtp: float) -> tuple[Clip, Loudness]:
        """:meth:`gain_and_limit` from one clip into another, measuring the result."""
        completed = await self.run_ffmpeg(
            [*clip.ffmpeg_input(), "-af", _limiter_chain(clip.sample_rate, gain_db, limit_dbtp),
             "-f", "s16le", "-c:a", "pcm_s16le", str(dest)],
            job="limit",
        )  # fmt: skip
        return Clip(dest, _frames(dest), clip.sample_rate), self._loudness(completed, "limit")

    async def normalize_clip(
        self, clip: Clip, measured: Loudness, *, target_lufs: float, limit_dbtp: float, workdir: Path
    ) -> NormalizedClip:
        """:meth:`normalize_loudness` for a clip: a plain gain is left for assembly; the limiter writes new clips."""
        if measured.silent:
            raise ValueError("cannot normalise silence")
        gain = min(MAX_GAIN_DB, target_lufs - measured.integrated_lufs)
        if measured.true_peak_dbtp + gain <= limit_dbtp:
            loudness = Loudness(measured.integrated_lufs + gain, measured.true_peak_dbtp + gain)
            return NormalizedClip(Clip(clip.path, clip.frames, clip.sample_rate, gain), loudness, gain, 0)
        overshoot = measured.true_peak_dbtp + gain - limit_dbtp
        tries: list[tuple[float, Clip, Loudness]] = []
        next_gain = min(MAX_GAIN_DB, gain + 0.25 * overshoot)
        for attempt in range(MAX_LIMITER_PASSES):
            dest = workdir / f"{clip.path.stem}.limit{attempt}.raw"
            limited, loudness = await self.limit_file(clip, dest, gain_db=next_gain, limit_dbtp=limit_dbtp)
            tries.append((next_gain, limited, loudness))
            if abs(target_lufs - loudness.integrated_lufs) <= LOUDNESS_TOLERANCE_LU:
                break
            next_gain = _next_gain_of([(g, result) for g, _clip, result in tries], target_lufs)
        best_gain, best, loudness = min(tries, key=lambda item: abs(target_lufs - item[2].integrated_lufs))
        return NormalizedClip(best, loudness, best_gain, len(tries))

    async def assemble(self, segments: Sequence[Segment], outputs: Mapping[Profile, Path]) -> Loudness:
        """Lay ``segments`` end to end and encode the whole into every profile of ``outputs``, in one ffmpeg run.

        Each clip gets its ``gain_db``; silences are generated. The master's loudness is measured
        on the way (integrated only: the pieces' true peaks are known from their own passes).
        """
        if not outputs:
            raise ValueError("nothing to encode")
        rate = WORKING_RATE
        to_working = f"aformat=sample_fmts=s16:sample_rates={rate}:channel_layouts=mono"
        args: list[str] = []
        graph: list[str] = []
        placed: list[str] = []
        inputs = 0
        for index, segment in enumerate(segments):
            label = f"[s{index}]"
            if isinstance(segment, Silence):
                if segment.duration_ms <= 0:
                    continue
                graph.append(f"aevalsrc=0:s={rate}:c=mono:d={segment.duration_ms / 1000:.3f},{to_working}{label}")
            else:
                if segment.frames <= 0:
                    continue
                args += segment.ffmpeg_input()
                steps = [f"volume={segment.gain_db:.4f}dB" if segment.gain_db else "anull"]
                if segment.sample_rate != rate:
                    steps.append(f"aresample={rate}")
                graph.append(f"[{inputs}:a]{','.join([*steps, to_working])}{label}")
                inputs += 1
            placed.append(label)
        if not placed:
            raise ValueError("nothing to assemble")
        out_labels = [f"[out{index}]" for index in range(len(outputs))]
        graph.append(
            f"{''.join(placed)}concat=n={len(placed)}:v=0:a=1,ebur128=framelog=verbose,"
            f"asplit={len(outputs)}{''.join(out_labels)}"
        )
        args += ["-filter_complex", ";".join(graph)]
        for label, (profile, path) in zip(out_labels, outputs.items(), strict=True):
            args += ["-map", label, *PROFILES[profile].output_args, str(path)]
        completed = await self.run_ffmpeg(args, job="assemble")
        return self._loudness(completed, "assemble")

    async def encode(self, pcm: Pcm, outputs: Mapping[Profile, Path]) -> Loudness:
        """Encode ``pcm`` into every profile of ``outputs`` in one ffmpeg run; return the master's loudness.

        The loudness is measured on the master on the way (integrated only: the
        true peak of the pieces is known from their own passes).
        """
        if not outputs:
            raise ValueError("nothing to encode")
        labels = [f"[out{index}]" for index in range(len(outputs))]
        graph = f"[0:a]ebur128=framelog=verbose,asplit={len(outputs)}{''.join(labels)}"
        args = [*pcm.ffmpeg_input(), "-filter_complex", graph]
        for label, (profile, path) in zip(labels, outputs.items(), strict=True):
            args += ["-map", label, *PROFILES[profile].output_args, str(path)]
        completed = await self.run_ffmpeg(args, stdin=pcm.data, job="encode")
        return self._loudness(completed, "encode")

    async def probe(self, path: Path, *, profile: Profile | None = None) -> MediaInfo:
        """Duration, rate, channels and codec of a file, from ffprobe."""
        input_args = list(PROFILES[profile].input_args) if profile is not None else []
        argv = [
            self.ffprobe,
            "-v",
            "error",
            *input_args,
            "-show_entries",
            "format=duration,format_name:stream=codec_name,sample_rate,channels",
            "-of",
            "json",
            str(path),
        ]
        try:
            completed = await run_program(argv, program="ffprobe", timeout_s=self.timeout_s)
        except TimeoutError as exc:
            raise AudioToolFailed("音频检查超时。", detail=f"ffprobe {path} timed out") from exc
        if completed.returncode != 0:
            raise AudioToolFailed("无法识别音频文件。", detail=f"ffprobe {path}: {completed.stderr_tail()}")
        report = json.loads(completed.stdout)
        stream = report["streams"][0]
        return MediaInfo(
            duration_s=float(report["format"]["duration"]),
            sample_rate=int(stream["sample_rate"]),
            channels=int(stream["channels"]),
            codec=str(stream["codec_name"]),
            format=str(report["format"]["format_name"]),
        )

    async def audio_seconds(self, path: Path, *, limit_s: float) -> float | None:
        """Seconds of audio in the file's first audio stream; None when there is none ffmpeg can read.

        ffprobe first (is there an audio stream, does the container say how long); a
        file that does not say (a browser's WebM) is decoded to nowhere, stopping a
        second past ``limit_s``, so a three-hour file costs no more than a long one.
        """
        argv = [
            self.ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries",
            "stream=codec_type:format=duration,probe_score", "-of", "json", str(path),
        ]  # fmt: skip
        try:
            completed = await run_program(argv, program="ffprobe", timeout_s=self.timeout_s)
        except TimeoutError as exc:
            raise AudioToolFailed("音频检查超时。", detail=f"ffprobe {path} timed out") from exc
        if completed.returncode != 0:
            return None
        try:
            report = json.loads(completed.stdout)
        except ValueError:
            return None
        if not report.get("streams") or report.get("format", {}).get("probe_score", 0) < MIN_PROBE_SCORE:
            # No audio, or "audio" only because nothing else fits: a program renamed .mp3 scores 1.
            return None
        try:
            declared = float(report.get("format", {}).get("duration", "nan"))
        except (TypeError, ValueError):
            declared = math.nan
        if math.isfinite(declared) and declared > 0:
            return declared
        try:
            counted = await run_program(
                [self.ffmpeg, "-hide_banner", "-nostats", "-nostdin", "-i", str(path), "-t", f"{limit_s + 1:.3f}",
                 "-map", "0:a:0", "-f", "null", "-", "-progress", "pipe:1"],
                program="ffmpeg", timeout_s=self.timeout_s,
            )  # fmt: skip
        except TimeoutError as exc:
            raise AudioToolFailed("音频检查超时。", detail=f"ffmpeg counting {path} timed out") from exc
        if counted.returncode != 0:
            return None
        times = [
            line.partition("=")[2] for line in counted.stdout.decode().splitlines() if line.startswith("out_time_us=")
        ]
        microseconds = [int(value) for value in times if value.isascii() and value.isdigit()]
        return microseconds[-1] / 1e6 if microseconds and microseconds[-1] > 0 else None

    @staticmethod
    def _loudness(completed: Completed, job: str) -> Loudness:
        try:
            return parse_ebur128_summary(completed.stderr.decode("utf-8", errors="replace"))
        except ValueError as exc:
            raise AudioToolFailed("音频响度测量失败。", detail=f"ffmpeg {job}: {exc}") from exc


def _next_gain(tries: Sequence[tuple[float, Measured]], target_lufs: float) -> float:
    return _next_gain_of([(gain, result.loudness) for gain, result in tries], target_lufs)


def _next_gain_of(tries: Sequence[tuple[float, Loudness]], target_lufs: float) -> float:
    """Secant step on (gain -> measured loudness); the first correction assumes a slope of 2/3."""
    gain, result = tries[-1]
    error = target_lufs - result.integrated_lufs
    slope = 2 / 3
    if len(tries) >= 2:
        previous_gain, previous = tries[-2]
        if gain != previous_gain:
            measured_slope = (result.integrated_lufs - previous.integrated_lufs) / (gain - previous_gain)
            slope = min(1.0, max(0.1, measured_slope))
    return min(MAX_GAIN_DB, gain + error / slope)


def _limiter_chain(rate: int, gain_db: float, limit_dbtp: float) -> str:
    """Gain, then a true-peak limiter at 4× oversampling, then a measurement of the result."""
    limit = min(1.0, max(0.0625, db_to_gain(limit_dbtp)))
    return ",".join(
        [
            f"volume={gain_db:.3f}dB",
            f"aresample={rate * LIMITER_OVERSAMPLING}",
            f"alimiter=limit={limit:.5f}:attack={LIMITER_ATTACK_MS:g}:release={LIMITER_RELEASE_MS:g}"
            ":level=false:latency=true",
            f"aresample={rate}",
            "ebur128=peak=true:framelog=verbose",
        ]
    )


def _frames(path: Path) -> int:
    return path.stat().st_size // SAMPLE_WIDTH


def wav_bytes(pcm: Pcm) -> bytes:
    """``pcm`` in a WAV container (what a generated sound is handed to ffmpeg as)."""
    import struct

    data = pcm.data
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, pcm.sample_rate, pcm.sample_rate * SAMPLE_WIDTH, SAMPLE_WIDTH, 16)
    return header + b"data" + struct.pack("<I", len(data)) + data


def apply_gain(pcm: Pcm, gain_db: float) -> Pcm:
    """A plain linear gain, in-process (pydub's C multiplication)."""
    from pydub import AudioSegment  # imported late: pydub warns at import when ffmpeg is missing

    segment = AudioSegment(data=pcm.data, sample_width=SAMPLE_WIDTH, frame_rate=pcm.sample_rate, channels=1)
    return Pcm(segment.apply_gain(gain_db).raw_data, pcm.sample_rate)


# -- atomic files ----------------------------------------------------------------------------


def atomic_write(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` so readers see the old file or the whole new one, never a part."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    temporary = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, dest)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_copy(source: Path, dest: Path) -> None:
    atomic_write(dest, source.read_bytes())
