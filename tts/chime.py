"""The attention chime, synthesised here (no borrowed sound file).

Three descending bell-like tones, G5 E5 C5, the "ding-dong-ding" of public
address systems: each a sine with a quieter octave partial for a bell's
brightness, a 10 ms attack (no click) and an exponential decay, starting
0.42 s apart so they overlap a little. It is pure arithmetic, so the same
sample rate always gives the same bytes (and the same cache keys).
"""

from __future__ import annotations

import math
import struct
from functools import lru_cache
from typing import Final

from tts.audio import WORKING_RATE, Pcm

CHIME_FREQUENCIES_HZ: Final = (783.99, 659.26, 523.25)  # G5, E5, C5
TONE_SPACING_S: Final = 0.42
TONE_LENGTH_S: Final = 1.1
ATTACK_S: Final = 0.010
DECAY_PER_S: Final = 4.0  # amplitude falls to 1/e every 0.25 s
OCTAVE_PARTIAL: Final = 0.25  # relative amplitude of the octave above
PEAK: Final = 0.5  # of full scale, before loudness normalisation
CHIME_VERSION: Final = "chime-1"  # part of cache keys: bump when the sound changes


def chime_duration_s() -> float:
    return TONE_SPACING_S * (len(CHIME_FREQUENCIES_HZ) - 1) + TONE_LENGTH_S


@lru_cache(maxsize=4)
def chime(sample_rate: int = WORKING_RATE) -> Pcm:
    """The chime as mono 16-bit PCM at ``sample_rate``."""
    total = round(chime_duration_s() * sample_rate)
    mix = [0.0] * total
    tone_frames = round(TONE_LENGTH_S * sample_rate)
    attack_frames = max(1, round(ATTACK_S * sample_rate))
    for index, frequency in enumerate(CHIME_FREQUENCIES_HZ):
        start = round(index * TONE_SPACING_S * sample_rate)
        step = 2 * math.pi * frequency / sample_rate
        for n in range(min(tone_frames, total - start)):
            t = n / sample_rate
            envelope = min(1.0, n / attack_frames) * math.exp(-DECAY_PER_S * t)
            # Fade the last 50 ms to zero so the tone never ends on a step.
            envelope *= min(1.0, (tone_frames - n) / (0.05 * sample_rate))
            mix[start + n] += envelope * (math.sin(step * n) + OCTAVE_PARTIAL * math.sin(2 * step * n))
    peak = max(abs(value) for value in mix) or 1.0
    scale = PEAK * 32767 / peak
    return Pcm(struct.pack(f"<{total}h", *(round(value * scale) for value in mix)), sample_rate)
