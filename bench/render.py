"""Render benchmark: the speech pipeline against plain command lines, on the offline engine.

    .venv/bin/python -m bench.render            # the six sample notices + 200 generated ones
    .venv/bin/python -m bench.render --quick    # the six samples + 20 generated, for a quick look

Every figure is measured against a baseline run in the same process, on the
same texts, one after the other:

(a) speech alone: our normaliser + engine call, against the raw ``espeak-ng``
    command on the same (already normalised) text;
(b) the whole production: our pipeline on a cold cache, against the same item
    as a plain shell pipeline: espeak-ng, then one ffmpeg command doing
    chime + pauses + repeats (concat), loudness to the same target (loudnorm,
    one pass) and the same MP3 encode;
(c) throughput in seconds of broadcast audio produced per second, cold and warm;
(d) cache-hit latency (a warm render of a notice) and peak memory.

Both sides of (b) and (c) run ``--jobs`` renders at a time (default 2: the
target machine has two cores). Nothing here reads outside the repository:
the sample notices come from its own test fixtures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shlex
import struct
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.figures import isolate_from_environment, offline_speech, summary, write_results
from broadcast.part import BroadcastConfig, build_producer
from broadcast.production import notice_text
from common.clock import SystemClock
from settings import AudioSettings, Settings, TtsSettings
from tts import privacy
from tts.audio import WORKING_RATE, Profile, parse_ebur128_summary
from tts.chime import chime
from tts.engines import EspeakEngine, VoiceRequest
from tts.normalize import normalize
from tts.part import SpeechConfig, build_speech

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "fixtures" / "notices.json"
REPEATS = 2


# -- the texts ---------------------------------------------------------------------------------

_OPENINGS = ["各位村民：", "乡亲们：", "全体党员：", "各村民小组：", "紧急通知！", "温馨提示："]
_SENTENCES = [
    "现将本村{year}年{month}月财务收支情况公开如下。",
    "本月收入合计{wan}万元，其中上级转移支付{wan2}万元。",
    "本月支出合计{money}元，其中道路维修{small}元，办公费用{money2}元。",
    "定于{month}月{day}日上午{hour}:{minute}在村党群服务中心召开全体党员大会。",
    "项目全长{km}公里，预算投资{wan}万元，惠及{households}户{people}人。",
    "据气象部门预报，{month}月{day}日至{day2}日我县将出现{w1}到{w2}级大风天气。",
    "气温将下降{deg}到{deg2}摄氏度，最低气温零下{deg}度，请做好防寒保暖。",
    "今年我村粮食产量同比增长{pct}%，村集体经济收入达到{wan}万元。",
    "个人缴费标准为每人每年{small}元，缴费期为{year}年{month}月{day}日至12月31日。",
    "如有疑问，请拨打监督电话0471-{phone}，或到村委会财务室咨询。",
    "办公时间为工作日{hour}:30-17:30，节假日照常为群众办理。",
    "发现火情请立即拨打森林草原防火报警电话12119。",
    "严禁一切野外用火，严禁焚烧秸秆、上坟烧纸，违者依法追究责任。",
    "为推动移风易俗、树立文明新风，婚宴每桌标准不超过{small}元，礼金不超过{gift}元。",
    "第{ordinal}批高标准农田建设共{mu}亩，涉及{groups}个村民小组。",
    "请全体村民相互转告，准时参加，因故不能参加的请提前请假。",
]


def generated_notices(count: int, *, seed: int = 2026) -> list[str]:
    """``count`` notice texts of 100-600 characters, with the numbers real notices carry."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        target = rng.randint(100, 600)
        text = rng.choice(_OPENINGS)
        while True:
            sentence = rng.choice(_SENTENCES).format(
                year=rng.randint(2024, 2027),
                month=rng.randint(1, 12),
                day=rng.randint(1, 20),
                day2=rng.randint(21, 28),
                hour=rng.randint(8, 10),
                minute=rng.choice(["00", "15", "30"]),
                wan=f"{rng.randint(1, 300)}.{rng.randint(0, 9)}",
                wan2=f"{rng.randint(1, 99)}.{rng.randint(1, 9)}",
                money=f"{rng.randint(1, 99):,}{rng.randint(0, 999):03d}.{rng.randint(0, 9)}0",
                money2=f"{rng.randint(100, 9999):,}",
                small=rng.randint(100, 900),
                gift=rng.choice([100, 200, 300]),
                km=f"{rng.randint(1, 20)}.{rng.randint(1, 9)}",
                households=rng.randint(10, 400),
                people=rng.randint(30, 1500),
                w1=rng.randint(4, 6),
                w2=rng.randint(7, 9),
                deg=rng.randint(3, 8),
                deg2=rng.randint(9, 15),
                pct=rng.randint(2, 30),
                phone=rng.randint(1000000, 9999999),
                ordinal=rng.randint(1, 9),
                mu=rng.randint(100, 5000),
                groups=rng.randint(2, 12),
            )
            if len(text) + len(sentence) > target and len(text) >= 100:
                break
            text += sentence
        texts.append(text[:600])
    return texts


def sample_notices() -> list[str]:
    notices = json.loads(SAMPLES.read_text(encoding="utf-8"))
    # The ID number in the second sample must never be spoken: render it masked, as a clerk would.
    return [privacy.mask(notice_text(notice)) for notice in notices]


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Timed:
    seconds: float
    audio_seconds: float = 0.0


async def run_all(jobs: int, calls: Sequence[Callable[[], Awaitable[float]]]) -> Timed:
    """Run the calls ``jobs`` at a time; return the wall time and the audio seconds they produced."""
    slots = asyncio.Semaphore(jobs)
    produced = 0.0

    async def one(call: Callable[[], Awaitable[float]]) -> None:
        nonlocal produced
        async with slots:
            seconds = await call()  # (not `produced += await …`: that reads `produced` before awaiting)
        produced += seconds

    started = time.perf_counter()
    await asyncio.gather(*(one(call) for call in calls))
    return Timed(time.perf_counter() - started, produced)


async def shell(command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "sh", "-c", command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"baseline failed: {command}\n{err.decode(errors='replace')[-2000:]}")


async def measure(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) by ffmpeg's ebur128 meter."""
    process = await asyncio.create_subprocess_exec(
        *["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true:framelog=verbose"],
        *["-f", "null", "-"],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await process.communicate()
    loudness = parse_ebur128_summary(err.decode(errors="replace"))
    return loudness.integrated_lufs, loudness.true_peak_dbtp


async def probe_duration(path: Path) -> float:
    process = await asyncio.create_subprocess_exec(
        "ffprobe",
        "-v",
        "error",
        "-show_entries",
        "format=duration",
        "-of",
        "csv=p=0",
        str(path),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _err = await process.communicate()
    return float(out)


def write_chime(path: Path) -> None:
    pcm = chime(WORKING_RATE)
    header = b"RIFF" + struct.pack("<I", 36 + len(pcm.data)) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, pcm.sample_rate, pcm.sample_rate * 2, 2, 16)
    path.write_bytes(header + b"data" + struct.pack("<I", len(pcm.data)) + pcm.data)


def baseline_production_command(
    speech_cmd: str, chime_wav: Path, speech_wav: Path, out: Path, audio: AudioSettings
) -> str:
    """espeak-ng, then one ffmpeg: silences + chime + speech×N with gaps, loudnorm, the same MP3 encode."""
    rate = WORKING_RATE

    def silence(name: str, ms: int) -> str:
        return f"aevalsrc=0:s={rate}:d={ms / 1000}[{name}]"

    parts = [
        silence("lead", audio.lead_in_ms),
        silence("pause", audio.chime_gap_ms),
        silence("tail", audio.tail_ms),
        *(silence(f"gap{index}", audio.gap_ms) for index in range(REPEATS - 1)),
        f"[0:a]aresample={rate}[chime]",
        f"[1:a]aresample={rate},asplit={REPEATS}" + "".join(f"[s{index}]" for index in range(REPEATS)),
    ]
    sequence = ["[lead]", "[chime]", "[pause]"]
    for index in range(REPEATS):
        if index:
            sequence.append(f"[gap{index - 1}]")
        sequence.append(f"[s{index}]")
    sequence.append("[tail]")
    parts.append(
        "".join(sequence)
        + f"concat=n={len(sequence)}:v=0:a=1,"
        + f"loudnorm=I={audio.loudness_target_lufs}:TP={audio.true_peak_ceiling_dbtp}:LRA=11,aresample={rate}"
    )
    ffmpeg = (
        f"ffmpeg -v error -y -i {shlex.quote(str(chime_wav))} -i {shlex.quote(str(speech_wav))} "
        f"-filter_complex {shlex.quote(';'.join(parts))} -c:a libmp3lame -q:a 5 -ac 1 {shlex.quote(str(out))}"
    )
    return f"{speech_cmd} && {ffmpeg}"


def espeak_command(text: str, out: Path, tts: TtsSettings) -> str:
    return (
        f"espeak-ng -v {tts.espeak_voice} -s {tts.espeak_speed_wpm} -a 100 -p 50 -b 1 "
        f"-w {shlex.quote(str(out))} {shlex.quote(text)}"
    )


def own_peak_mib() -> float:
    """This process's peak resident memory in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ChildMemory:
    """Samples the peak RSS (VmHWM) of every descendant process from /proc, in a thread.

    Our renders start ffmpeg and espeak-ng directly; the shell pipeline's programs are
    children of ``sh``: that tells the two sides apart.

    ``getrusage(RUSAGE_CHILDREN)`` is no use here: a forked child counts the
    parent's pages until it execs, so it reports the Python process's size.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.phase = "idle"  # nothing is recorded while idle (the bench's own ffprobe/ffmpeg checks)
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="child-memory", daemon=True)

    def __enter__(self) -> ChildMemory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(self.interval_s):
            parents: dict[int, int] = {}
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        # The field after the parenthesised command name is the state, then the ppid.
                        stat = (entry / "stat").read_text()
                        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
                    except (OSError, ValueError, IndexError):
                        continue
            for pid in parents:
                ancestor, hops = parents.get(pid), 0
                while ancestor not in (None, me, 0, 1) and hops < 5:
                    ancestor, hops = parents.get(ancestor), hops + 1
                if ancestor != me:
                    continue
                try:
                    status = (Path("/proc") / str(pid) / "status").read_text()
                except OSError:
                    continue
                name = ""
                for line in status.splitlines():
                    if line.startswith("Name:"):
                        name = line.split(maxsplit=1)[1] if len(line.split()) > 1 else ""
                    elif line.startswith("VmHWM:") and self.phase != "idle" and not name.startswith("python"):
                        # (A child caught between fork and exec is still "python", with our memory.)
                        mib = int(line.split()[1]) / 1024
                        # A descendant of `sh` belongs to the shell pipeline; ours are direct children.
                        side = "shell pipeline" if parents.get(pid) != me or name == "sh" else "ours"
                        self.peaks[side] = max(self.peaks.get(side, 0.0), mib)


# -- the benchmark -------------------------------------------------------------------------------


async def benchmark(
    texts: list[str], *, jobs: int, work: Path, memory: ChildMemory, rounds_a: int = 3, quality_samples: int = 6
) -> dict[str, Any]:
    imports_mib = own_peak_mib()
    settings = Settings(data_dir=work / "data", tts=offline_speech())
    tts, audio = settings.tts, settings.audio
    results: dict[str, Any] = {"notices": len(texts), "jobs": jobs, "repeats": REPEATS}
    spoken = [normalize(text, max_chars=tts.max_chars) for text in texts]
    results["characters"] = sum(len(text) for text in texts)
    results["target_lufs"] = audio.loudness_target_lufs
    results["ceiling_dbtp"] = audio.true_peak_ceiling_dbtp

    # (a) speech alone, one at a time: our normaliser + engine call vs the raw espeak-ng command.
    speech = build_speech(SpeechConfig.from_settings(settings), clock=SystemClock())
    producer = build_producer(BroadcastConfig.from_settings(settings), speech)
    # The bare engine, as build_speech configures it, without the chain's cache in front.
    engine = EspeakEngine(
        binary=tts.espeak_binary, voice=tts.espeak_voice, speed_wpm=tts.espeak_speed_wpm, timeout_s=tts.espeak_timeout_s
    )
    voice = engine.resolve(VoiceRequest())
    raw_dir = work / "raw"
    raw_dir.mkdir()
    # One notice at a time, the two sides interleaved (and their order alternated) so that a
    # neighbour's load hits both alike; the best of a few rounds is each side's figure.
    rounds: list[tuple[float, float]] = []
    memory.phase = "speech"
    for _round in range(rounds_a):
        raw_s = ours_s = 0.0
        for index, (text, said) in enumerate(zip(texts, spoken, strict=True)):
            for side in ("raw", "ours") if index % 2 == 0 else ("ours", "raw"):
                started = time.perf_counter()
                if side == "raw":
                    await shell(espeak_command(said, raw_dir / f"{index}.wav", tts))
                    raw_s += time.perf_counter() - started
                else:
                    await engine.synthesize(normalize(text, max_chars=tts.max_chars), voice)
                    ours_s += time.perf_counter() - started
        rounds.append((ours_s, raw_s))
    memory.phase = "idle"
    ours_s, raw_s = min(ours for ours, _raw in rounds), min(raw for _ours, raw in rounds)
    speech_audio_s = sum([await probe_duration(raw_dir / f"{index}.wav") for index in range(len(spoken))])
    results["a_speech"] = {
        "ours_s": ours_s,
        "raw_espeak_s": raw_s,
        "ratio": ours_s / raw_s,
        "rounds": rounds_a,
        "speech_audio_s": speech_audio_s,
    }

    # (b) whole production, cold cache, vs the same production as a shell pipeline.
    chime_wav = work / "chime.wav"
    write_chime(chime_wav)
    baseline_dir = work / "baseline"
    baseline_dir.mkdir()

    def baseline_call(index: int) -> Callable[[], Awaitable[float]]:
        async def call() -> float:
            speech_wav = baseline_dir / f"{index}.wav"
            out = baseline_dir / f"{index}.mp3"
            await shell(
                baseline_production_command(
                    espeak_command(spoken[index], speech_wav, tts), chime_wav, speech_wav, out, audio
                )
            )
            return await probe_duration(out)

        return call

    ours_files: dict[str, Path] = {}
    answered_from_cache: list[bool] = []

    def ours_call(text: str) -> Callable[[], Awaitable[float]]:
        async def call() -> float:
            result = await producer.render_text(text, repeats=REPEATS, profiles=[Profile.MP3])
            ours_files[text] = result.files[Profile.MP3]
            answered_from_cache.append(result.cached)
            return result.duration_s

        return call

    # Both sides in one queue, interleaved notice by notice (order alternated), ``jobs`` at a time:
    # whatever else loads the machine loads both alike. Each side's figure is the sum of its own
    # renders' times; divided by ``jobs`` it is the wall time that side would take alone.
    queue: list[tuple[str, Callable[[], Awaitable[float]]]] = []
    for index, text in enumerate(texts):
        pair = [("shell", baseline_call(index)), ("ours", ours_call(text))]
        queue.extend(pair if index % 2 == 0 else pair[::-1])
    spent = {"shell": Timed(0.0), "ours": Timed(0.0)}
    slots = asyncio.Semaphore(jobs)

    async def timed(side: str, call: Callable[[], Awaitable[float]]) -> None:
        async with slots:
            started = time.perf_counter()
            audio_s = await call()
            spent[side].seconds += time.perf_counter() - started
        spent[side].audio_seconds += audio_s

    memory.phase = "both"
    await asyncio.gather(*(timed(side, call) for side, call in queue))
    memory.phase = "idle"
    # The cold run's precondition: every one of its renders was produced, none answered from a cache
    # (a cache left by an earlier run once made this "cold" run 0.00× of the pipeline).
    cold_renders = answered_from_cache.count(False)
    if cold_renders != len(texts) or any(answered_from_cache):
        raise RuntimeError(
            f"the cold run was not cold: {answered_from_cache.count(True)} of {len(answered_from_cache)} "
            "renders came from a cache"
        )
    cold = Timed(spent["ours"].seconds / jobs, spent["ours"].audio_seconds)
    baseline = Timed(spent["shell"].seconds / jobs, spent["shell"].audio_seconds)
    results["b_production"] = {
        "ours_cold_s": cold.seconds,
        "shell_pipeline_s": baseline.seconds,
        "ratio": cold.seconds / baseline.seconds,
        "broadcast_audio_s": cold.audio_seconds,
        "cold_renders": cold_renders,
    }

    # Same target, but how close does each side land? ffmpeg's meter on the sample notices' MP3s.
    samples = min(len(texts), quality_samples)
    ours_loudness = [await measure(ours_files[texts[index]]) for index in range(samples)]
    shell_loudness = [await measure(baseline_dir / f"{index}.mp3") for index in range(samples)]
    target = audio.loudness_target_lufs
    results["b_quality"] = {
        "notices": samples,
        "ours_worst_lu_off_target": max(abs(lufs - target) for lufs, _peak in ours_loudness),
        "shell_worst_lu_off_target": max(abs(lufs - target) for lufs, _peak in shell_loudness),
        "ours_highest_true_peak": max(peak for _lufs, peak in ours_loudness),
        "shell_highest_true_peak": max(peak for _lufs, peak in shell_loudness),
    }

    # (c) throughput, cold (above) and warm (everything now in the cache).
    warm = await run_all(jobs, [ours_call(text) for text in texts])
    results["c_throughput"] = {
        "cold_audio_s_per_s": cold.audio_seconds / cold.seconds,
        "warm_audio_s_per_s": warm.audio_seconds / warm.seconds,
        "shell_pipeline_audio_s_per_s": baseline.audio_seconds / baseline.seconds,
    }

    # (d) cache-hit latency: one warm render at a time, the whole call (normalise, look up, answer).
    latencies = []
    for text in texts:
        started = time.perf_counter()
        result = await producer.render_text(text, repeats=REPEATS, profiles=[Profile.MP3])
        latencies.append((time.perf_counter() - started) * 1000)
        assert result.cached
    results["d_cache_hit_ms"] = summary(latencies, digits=2)
    results["d_peak_memory_mib"] = {
        "python_process": own_peak_mib(),
        "python_after_imports": imports_mib,
        "largest_child_ours": memory.peaks.get("ours", 0.0),
        "largest_child_shell_pipeline": memory.peaks.get("shell pipeline", 0.0),
    }
    return results


def report(results: dict[str, Any]) -> str:
    a, b, c = results["a_speech"], results["b_production"], results["c_throughput"]
    q = results["b_quality"]
    d, memory = results["d_cache_hit_ms"], results["d_peak_memory_mib"]
    lines = [
        f"{results['notices']} notices, {results['characters']} characters, {REPEATS} readings each, "
        f"{results['jobs']} at a time (espeak-ng, cmn-latn-pinyin); (a) best of {a['rounds']} interleaved rounds",
        "",
        "| measure | ours | baseline | ratio | goal |",
        "|---|---|---|---|---|",
        f"| (a) speech alone: normaliser + engine vs raw `espeak-ng` | {a['ours_s']:.1f} s | {a['raw_espeak_s']:.1f} s "
        f"| {a['ratio']:.2f}× | ≤ 1.2× |",
        f"| (b) whole production, cold cache, vs shell pipeline (espeak-ng + one ffmpeg with loudnorm) "
        f"| {b['ours_cold_s']:.1f} s | {b['shell_pipeline_s']:.1f} s | {b['ratio']:.2f}× | ≤ 1.0× |",
        f"| (b) loudness, worst distance from the {results['target_lufs']:g} LUFS target "
        f"(the {q['notices']} sample notices) | {q['ours_worst_lu_off_target']:.1f} LU "
        f"| {q['shell_worst_lu_off_target']:.1f} LU | | ±1 LU |",
        f"| (b) highest true peak (same notices) | {q['ours_highest_true_peak']:.1f} dBTP "
        f"| {q['shell_highest_true_peak']:.1f} dBTP | | ≤ {results['ceiling_dbtp']:g} dBTP |",
        f"| (c) throughput, cold (s of broadcast audio per s) | {c['cold_audio_s_per_s']:.0f} "
        f"| {c['shell_pipeline_audio_s_per_s']:.0f} | | |",
        f"| (c) throughput, warm | {c['warm_audio_s_per_s']:.0f} | | | |",
        f"| (d) cache hit, median / p95 / max | {d['median']:.1f} / {d['p95']:.1f} / {d['max']:.1f} ms | | "
        "| median < 20 ms |",
        f"| (d) peak memory, Python process (after imports: {memory['python_after_imports']:.0f} MiB) "
        f"| {memory['python_process']:.0f} MiB | | | |",
        f"| (d) peak memory, largest child process (ffmpeg, espeak-ng, sh) "
        f"| {memory['largest_child_ours']:.0f} MiB | {memory['largest_child_shell_pipeline']:.0f} MiB | | |",
        "",
        f"speech produced: {a['speech_audio_s'] / 60:.1f} min; broadcast audio produced: "
        f"{b['broadcast_audio_s'] / 60:.1f} min",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the six samples and 20 generated notices")
    parser.add_argument("--generated", type=int, help="how many generated notices (default 200; 20 with --quick)")
    parser.add_argument("--jobs", type=int, default=2, help="renders at a time on both sides (default 2)")
    parser.add_argument("--samples", type=int, default=6, help="how many of the six sample notices (default all)")
    parser.add_argument("--max-chars", type=int, help="cut every notice to this many characters (for tests)")
    parser.add_argument("--rounds", type=int, default=3, help="(a): interleaved rounds, the best of which counts")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    isolate_from_environment()
    count = args.generated if args.generated is not None else (20 if args.quick else 200)
    texts = sample_notices()[: args.samples] + generated_notices(count)
    if args.max_chars is not None:
        texts = [text[: args.max_chars] for text in texts]
    with tempfile.TemporaryDirectory(prefix="cunxiang-bench-") as work, ChildMemory() as memory:
        results = asyncio.run(benchmark(texts, jobs=args.jobs, work=Path(work), memory=memory, rounds_a=args.rounds))
    print(report(results))
    write_results(args.json, results)


if __name__ == "__main__":
    main()
