"""Recording files: what is in them, what they are called, and moving them out of Asterisk's spool.

Asterisk writes a call's audio into the spool under a name that says which
call it belongs to and what it is::

    cx_<tag>_<kind>_<linkedid>.wav     tag: the case category (petition, discipline) for a
                                        hotline call, or case<ID> for a callback/survey

so a file found on disk after an outage can be put where it belongs without
the database. A file is moved only once the last channel of its call has hung
up (the caller of :meth:`RecordingStore.adopt` guarantees that): copied into
the recordings directory under a temporary name (mode 0600: recordings are
never readable by other local users), fsynced, re-read and its SHA-256
compared with the source's, renamed into place, and only then is the spool
copy removed. A crash at any point leaves either the spool file, or both
copies (the next attempt finds the same checksum), never neither.
"""

from __future__ import annotations

import array
import audioop  # C for the sound windows (audioop-lts provides it from Python 3.13)
import contextlib
import hashlib
import logging
import os
import re
import struct
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

SPOOL_NAME: Final = re.compile(
    r"^cx_(?P<tag>[a-z]+|case\d+)_(?P<kind>message|transfer|callback|survey)_(?P<linkedid>[A-Za-z0-9._-]{1,150})\.wav$"
)
# MixMonitor's post-command touches this beside the file once it has closed it.
DONE_SUFFIX: Final = ".done"
WAV_HEADER_BYTES: Final = 44
# 20 ms analysis frames; a frame louder than this RMS (about -40 dBFS) counts as sound on the line.
FRAME_S: Final = 0.02
SOUND_RMS: Final = 330.0
CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class SpoolName:
    tag: str
    kind: str
    linkedid: str

    @property
    def case_id(self) -> int | None:
        """For callback/survey recordings, the case they belong to."""
        return int(self.tag[4:]) if self.tag.startswith("case") else None

    @property
    def category(self) -> str | None:
        return None if self.tag.startswith("case") else self.tag


def parse_spool_name(name: str) -> SpoolName | None:
    match = SPOOL_NAME.match(name)
    if match is None:
        return None
    return SpoolName(match["tag"], match["kind"], match["linkedid"])


@dataclass(frozen=True)
class AudioFacts:
    bytes: int
    duration_s: float
    # No audio frames at all (a 44-byte WAV).
    empty: bool
    # Seconds of 20 ms frames with sound above the line's noise.
    sound_s: float
    sample_rate: int

    def has_speech(self, min_speech_s: float) -> bool:
        return not self.empty and self.sound_s >= min_speech_s


@dataclass(frozen=True)
class _WavLayout:
    sample_rate: int
    channels: int
    bits: int
    data_offset: int
    data_bytes: int


def _wav_layout(path: Path, size: int) -> _WavLayout:
    """Find the fmt and data chunks; trust the file's size over a header not yet finalised."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError(f"{path.name} is not a WAV file")
    offset = 12
    sample_rate, channels, bits = 8000, 1, 16
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (chunk_size,) = struct.unpack("<I", head[offset + 4 : offset + 8])
        body = offset + 8
        if chunk_id == b"fmt " and body + 16 <= len(head):
            _format, channels, sample_rate, _rate, _align, bits = struct.unpack("<HHIIHH", head[body : body + 16])
        elif chunk_id == b"data":
            # A recording still open (or cut off by a crash) has a zero or stale size here.
            available = max(0, size - body)
            data_bytes = chunk_size if 0 < chunk_size <= available else available
            return _WavLayout(sample_rate or 8000, channels or 1, bits or 16, body, data_bytes)
        offset = body + chunk_size + (chunk_size & 1)
    if size <= WAV_HEADER_BYTES:
        return _WavLayout(sample_rate, channels, bits, size, 0)
    raise ValueError(f"{path.name} has no data chunk")


def inspect(path: Path) -> AudioFacts:
    """Size, duration, emptiness and how much sound a (16-bit PCM) WAV recording holds."""
    size = path.stat().st_size
    layout = _wav_layout(path, size)
    frame_bytes = max(1, layout.channels * layout.bits // 8)
    frames = layout.data_bytes // frame_bytes
    duration = frames / layout.sample_rate if layout.sample_rate else 0.0
    sound_s = 0.0
    if frames and layout.bits == 16 and layout.channels == 1:
        sound_s = _sound_seconds(path, layout)
    elif frames:
        sound_s = duration  # not something we analyse: count it all as sound rather than lose it
    return AudioFacts(size, round(duration, 3), frames == 0, round(sound_s, 3), layout.sample_rate)


def _sound_seconds(path: Path, layout: _WavLayout) -> float:
    """How long the recording is louder than the line's noise floor, window by window.

    Runs in a thread, but a Python loop over every sample would hold the interpreter's lock for ~2 ms
    per six seconds of sound — twice per call, 20 calls ending together: the event loop that answers
    the operators' screens waited for it. ``audioop.rms`` does a window in C; only a window whose
    rounded-down RMS equals the threshold's is summed here exactly.
    """
    window = max(1, int(layout.sample_rate * FRAME_S))
    width = 2 * window
    threshold = SOUND_RMS * SOUND_RMS * window
    borderline = int(SOUND_RMS)  # audioop.rms rounds down: only this value may be either side
    loud = 0
    with path.open("rb") as handle:
        handle.seek(layout.data_offset)
        remaining = layout.data_bytes - (layout.data_bytes % width)
        while remaining > 0:
            block = handle.read(min(remaining, CHUNK - CHUNK % width))
            if not block:
                break
            remaining -= len(block)
            if sys.byteorder == "big":
                block = audioop.byteswap(block, 2)  # a WAV's samples are little-endian; audioop's native
            for start in range(0, len(block) - width + 1, width):
                frame = block[start : start + width]
                rms = audioop.rms(frame, 2)
                if rms > borderline or (rms == borderline and _sum_of_squares(frame) > threshold):
                    loud += 1
    return loud * window / layout.sample_rate


def _sum_of_squares(frame: bytes) -> int:
    samples = array.array("h")
    samples.frombytes(frame)
    return sum(value * value for value in samples)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredFile:
    relative: str
    sha256: str
    bytes: int


class ChecksumMismatch(OSError):
    """The copy read back differs from the source: the source is kept, the copy removed."""


class RecordingStore:
    """The recordings directory (mode 0700, files 0600) and the spool files waiting to move there."""

    def __init__(self, root: Path, spool: Path) -> None:
        self.root = root
        self.spool = spool

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def spool_files(self, linkedid: str | None = None) -> list[tuple[Path, SpoolName]]:
        """Recordings in the spool (of one call, or all), oldest first."""
        found: list[tuple[Path, SpoolName]] = []
        try:
            entries = list(os.scandir(self.spool))
        except FileNotFoundError:
            return []
        for entry in entries:
            parsed = parse_spool_name(entry.name)
            if parsed is None or not entry.is_file():
                continue
            if linkedid is not None and parsed.linkedid != linkedid:
                continue
            found.append((Path(entry.path), parsed))
        found.sort(key=lambda item: (_mtime(item[0]), item[0].name))
        return found

    def path_of(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"{relative!r} is outside the recordings directory")
        return path

    def destination(self, recorded_at: datetime, stem: str) -> str:
        """Where a recording goes, relative to the root: ``YYYY/MM/<stem>.wav`` (UTC month)."""
        instant = recorded_at.astimezone(UTC)
        return f"{instant:%Y}/{instant:%m}/{stem}.wav"

    def adopt(self, source: Path, relative: str) -> StoredFile:
        """Copy ``source`` to ``relative`` with its checksum verified, then remove the spool copy (blocking I/O)."""
        dest = self.path_of(relative)
        dest.parent.mkdir(parents=True, exist_ok=True)
        for directory in (dest.parent, dest.parent.parent):
            if directory != self.root and self.root in directory.parents:
                os.chmod(directory, 0o700)
        temporary = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha256()
        size = 0
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with source.open("rb") as reader, os.fdopen(fd, "wb") as writer:
                while block := reader.read(CHUNK):
                    digest.update(block)
                    writer.write(block)
                    size += len(block)
                writer.flush()
                os.fsync(writer.fileno())
            expected = digest.hexdigest()
            if sha256_file(temporary) != expected:
                raise ChecksumMismatch(f"copy of {source.name} does not match its source")
            os.replace(temporary, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        _fsync_directory(dest.parent)
        return StoredFile(relative, expected, size)

    def release(self, source: Path) -> None:
        """Remove a spool file (and MixMonitor's marker) once its copy is recorded in the database."""
        for path in (source, done_marker(source)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def purge(self, relative: str) -> bool:
        """Delete a stored recording (retention); False when it was already gone."""
        try:
            self.path_of(relative).unlink()
        except FileNotFoundError:
            return False
        return True


def retention_cutoff(now: datetime, retention_days: int) -> datetime | None:
    return None if retention_days <= 0 else now - timedelta(days=retention_days)


def done_marker(source: Path) -> Path:
    """MixMonitor's post-command marker for ``…/name.wav`` is ``…/name.done``."""
    return source.with_suffix(DONE_SUFFIX)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def file_time(path: Path) -> datetime:
    return datetime.fromtimestamp(_mtime(path), UTC)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
