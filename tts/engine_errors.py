"""Errors raised by the speech engines, the engine chain, the audio cache and the ffmpeg blocks.

    CunxiangError (common.errors)
    ├── InvalidInput
    │   ├── TextError (tts.errors)     text that cannot be spoken (empty, too long, …)
    │   ├── BadVoice                   no such voice for the engine, or no such engine
    │   ├── BadParameter               rate/volume/pitch malformed or out of range ("10%" without a sign)
    │   └── BadRecording               an uploaded recording cannot be decoded, is silent or too long
    └── ServiceUnavailable
        ├── EngineFailure              one engine could not speak this text this time; the chain falls back
        │   ├── EngineUnavailable      unreachable, refused (HTTP 403), dropped mid-stream, timed out,
        │   │                          its program not installed
        │   └── NoAudio                the engine answered but sent no audio
        ├── NoEngineAvailable          every engine of the chain failed or is being skipped
        ├── ProgramMissing             ffmpeg/ffprobe is not installed (names the program and the package)
        └── AudioToolFailed            an ffmpeg job failed or ran past its timeout

``message`` is Simplified Chinese for the clerk or operator; ``detail`` is English for logs.
Engines translate library and OS errors into this tree at their boundary (``raise … from exc``),
so nothing above ``tts/`` ever sees an aiohttp or edge-tts exception.
"""

from __future__ import annotations

from collections.abc import Sequence

from common.errors import InvalidInput, ServiceUnavailable

# Where the programs we run come from on Debian, for the "please install" message.
DEBIAN_PACKAGES = {"ffmpeg": "ffmpeg", "ffprobe": "ffmpeg", "espeak-ng": "espeak-ng"}


class BadVoice(InvalidInput):
    default_code = "tts.bad_voice"


class BadParameter(InvalidInput):
    default_code = "tts.bad_parameter"


class BadRecording(InvalidInput):
    default_code = "audio.bad_recording"


class EngineFailure(ServiceUnavailable):
    """One engine failed for this request; ``engine`` names it."""

    default_code = "tts.engine_failed"

    def __init__(self, message: str, *, engine: str, detail: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code, detail=detail)
        self.engine = engine


class EngineUnavailable(EngineFailure):
    default_code = "tts.engine_unavailable"


class NoAudio(EngineFailure):
    default_code = "tts.no_audio"


class NoEngineAvailable(ServiceUnavailable):
    """Every engine failed; ``failures`` keeps each one's error, in chain order."""

    default_code = "tts.no_engine"

    def __init__(self, failures: Sequence[EngineFailure]) -> None:
        self.failures = list(failures)
        reasons = "；".join(failure.message for failure in self.failures) or "没有启用任何语音引擎"
        details = "; ".join(f"{failure.engine}: {failure.detail or failure.message}" for failure in self.failures)
        super().__init__(f"所有语音引擎都无法合成：{reasons}", detail=details or "no engine configured")


class ProgramMissing(ServiceUnavailable):
    """An external program is not installed where the settings say."""

    default_code = "audio.program_missing"

    def __init__(self, program: str, path: str) -> None:
        package = DEBIAN_PACKAGES.get(program, program)
        super().__init__(
            f"找不到程序 {program}，请先安装软件包 {package}（apt-get install {package}），或在设置中指明它的路径。",
            detail=f"{program} not found at {path!r}; install the Debian package {package!r}",
        )
        self.program = program
        self.package = package
        self.path = path


class AudioToolFailed(ServiceUnavailable):
    default_code = "audio.tool_failed"
