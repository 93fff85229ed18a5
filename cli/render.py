"""Rendering from the command line: ``render`` (no database, no service needed).

``render`` makes the same broadcast item the service makes at approval — the
speech part and broadcasting's producer, built from the same settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from broadcast.part import BroadcastConfig, build_producer
from broadcast.production import ProductionResult, notice_text
from cli.base import CommandError, Commands
from common.clock import SystemClock
from common.errors import CunxiangError
from settings import Settings
from tts import privacy
from tts.audio import PROFILES, Profile, atomic_copy
from tts.engines import VoiceRequest
from tts.part import SpeechConfig, build_speech


def _speakable(text: str, *, mask: bool, label: str, progress: _Progress | None = None) -> str:
    """Refuse text carrying personal numbers unless asked to mask them (then mask them all)."""
    result = privacy.check(text)
    if result.blocking and not mask:
        reasons = "；".join(finding.message for finding in result.findings if finding.blocking)
        raise CommandError(f"{label}含有不能播报的个人号码：{reasons} 请先修改，或加 --mask 按隐去后的文字合成。")
    for finding in result.warnings:
        if not mask:
            if progress is not None:
                progress.clear()
            print(f"cunxiang: 提醒（{label}）：{finding.message}", file=sys.stderr)
    return result.masked_text if mask else text


def _render_report(out: Path, result: ProductionResult) -> str:
    voice = f" ({result.voice['name']})" if result.voice else ""
    return (
        f"{out}: {result.duration_s:.1f} s, {result.integrated_lufs:.1f} LUFS, "
        f"true peak {result.true_peak_dbtp:.1f} dBTP, engine {result.engine}{voice}"
        f"{', from cache' if result.cached else ''}"
    )


def _load_notices(path: Path, *, many: bool) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc}") from None
    notices = data if many else [data]
    if many and not isinstance(data, list):
        raise CommandError(f"{path} must hold a JSON list of notices")
    for index, notice in enumerate(notices, start=1):
        if not isinstance(notice, dict) or not notice_text(notice):
            raise CommandError(f"{path}: notice {index} has neither a title nor a body")
    return notices


class _Progress:
    """A progress bar on stderr when it is a terminal; one plain line per step when it is not (CI logs)."""

    WIDTH = 24

    def __init__(self, total: int) -> None:
        self.total = total
        self.interactive = sys.stderr.isatty()

    def step(self, done: int, label: str) -> None:
        if not self.interactive:
            print(f"[{done + 1}/{self.total}] {label}", file=sys.stderr, flush=True)
            return
        filled = round(self.WIDTH * done / self.total) if self.total else self.WIDTH
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        print(f"\r\033[K[{bar}] {done}/{self.total} {label[:30]}", end="", file=sys.stderr, flush=True)

    def clear(self) -> None:
        """Wipe the bar so a result line printed next is not mixed into it."""
        if self.interactive:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


def _check_render_arguments(args: argparse.Namespace) -> None:
    if args.batch is not None:
        if args.out_dir is None:
            raise CommandError("render --batch needs --out-dir")
    elif args.out is None:
        raise CommandError("render needs --out PATH")
    if args.repeat is not None and args.repeat < 1:
        raise CommandError("--repeat must be at least 1")
    if args.recording is not None and not args.recording.exists():
        raise CommandError(f"no such recording: {args.recording}")


def cmd_render(settings: Settings, args: argparse.Namespace) -> int:
    _check_render_arguments(args)
    profile = Profile(args.profile) if args.profile else _profile_for(args.out)
    if settings.log_level != "DEBUG":
        # A fallback shows in the report ("engine espeak"); the chain's warnings would only add noise here.
        for name in ("tts", "common.health"):
            logging.getLogger(name).setLevel(logging.ERROR)
    request = VoiceRequest(engine=args.engine, voice=args.voice, rate=args.rate, volume=args.volume, pitch=args.pitch)
    speech = build_speech(SpeechConfig.from_settings(settings), clock=SystemClock())
    producer = build_producer(BroadcastConfig.from_settings(settings), speech)
    options: dict[str, Any] = {
        "repeats": args.repeat,
        "chime": False if args.no_chime else None,
        "profiles": (profile,),
    }

    async def one(text: str) -> ProductionResult:
        return await producer.render_text(text, voice=request, closing_text=args.closing, **options)

    async def run() -> int:
        if args.recording is not None:
            result = await producer.render_recording(args.recording, **options)
            return _deliver(result, profile, args.out)
        if args.batch is None:
            text = args.text if args.text is not None else notice_text(_load_notices(args.notice, many=False)[0])
            return _deliver(await one(_speakable(text, mask=args.mask, label="文字")), profile, args.out)
        return await _render_batch(_load_notices(args.batch, many=True), one, profile, args.out_dir, mask=args.mask)

    try:
        return asyncio.run(run())
    except CunxiangError as exc:
        raise CommandError(str(exc)) from None


async def _render_batch(
    notices: list[dict[str, Any]],
    render: Callable[[str], Awaitable[ProductionResult]],
    profile: Profile,
    out_dir: Path,
    *,
    mask: bool,
) -> int:
    """Every notice into its own numbered file; one that fails is reported and the rest go on (exit 1 then)."""
    progress = _Progress(len(notices))
    failed = 0
    for index, notice in enumerate(notices, start=1):
        label = str(notice.get("title") or f"notice {index}")
        progress.step(index - 1, label)
        out = out_dir / f"{index:03d}-{notice.get('kind') or 'notice'}.{PROFILES[profile].suffix}"
        try:
            text = _speakable(notice_text(notice), mask=mask, label=f"第{index}条通知", progress=progress)
            line = _deliver_line(await render(text), profile, out)
        except (CunxiangError, CommandError) as exc:
            failed += 1
            message = exc.message if isinstance(exc, CunxiangError) else str(exc)
            progress.clear()
            print(f"cunxiang: notice {index} ({label}): {message}", file=sys.stderr)
            continue
        progress.clear()
        print(line, flush=True)
    progress.clear()
    print(f"{len(notices) - failed} of {len(notices)} notices rendered into {out_dir}", file=sys.stderr)
    return 1 if failed else 0


def _profile_for(out: Path | None) -> Profile:
    """The profile an output name suggests (.wav is the Asterisk profile, .ulaw RTP); MP3 otherwise."""
    suffix = out.suffix.lower() if out is not None else ""
    return {".wav": Profile.ASTERISK, ".ulaw": Profile.RTP}.get(suffix, Profile.MP3)


def _deliver_line(result: ProductionResult, profile: Profile, out: Path) -> str:
    try:
        atomic_copy(result.files[profile], out)
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
    return _render_report(out, result)


def _deliver(result: ProductionResult, profile: Profile, out: Path) -> int:
    print(_deliver_line(result, profile, out))
    return 0


def add_commands(commands: Commands) -> None:
    render = commands.add_parser("render", help="render a notice (or a batch, or a recording) to broadcast audio")
    source = render.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="notice text to speak")
    source.add_argument("--notice", type=Path, metavar="FILE.json", help='one notice: {"title": …, "body": …}')
    source.add_argument("--batch", type=Path, metavar="FILE.json", help="a JSON list of notices (needs --out-dir)")
    source.add_argument("--recording", type=Path, metavar="AUDIO", help="a person's recording (WAV/MP3/OGG/WebM)")
    render.add_argument("--engine", choices=["edge", "espeak"], help="use only this engine (default: the chain)")
    render.add_argument("--voice", help="voice name, e.g. zh-CN-liaoning-XiaobeiNeural")
    render.add_argument("--rate", help="signed percentage, e.g. -15%%")
    render.add_argument("--volume", help="signed percentage, e.g. +0%%")
    render.add_argument("--pitch", help="signed hertz, e.g. +0Hz")
    render.add_argument(
        "--repeat", type=int, metavar="N", help="times the message is read (default: audio.default_repeats)"
    )
    render.add_argument("--closing", metavar="TEXT", help="a closing line read once after the repeats")
    render.add_argument("--no-chime", action="store_true", help="leave out the attention chime")
    render.add_argument(
        "--profile",
        choices=[profile.value for profile in Profile],
        help="output format (default: from the --out suffix: .wav asterisk, .ulaw rtp, else mp3)",
    )
    render.add_argument("--mask", action="store_true", help="mask ID/card/mobile numbers instead of refusing the text")
    render.add_argument("--out", type=Path, metavar="PATH", help="where to write the audio")
    render.add_argument("--out-dir", type=Path, metavar="DIR", help="where --batch writes its files")
    render.set_defaults(func=cmd_render)
