"""The hotline from the command line: the Asterisk sandbox (``asterisk``), ``prompts install``, the dial test."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from cli.base import CommandError, Commands, json_default
from common.errors import CunxiangError
from common.lifecycle import ServiceGroup
from hotline.asterisk import Sandbox, render_configuration
from hotline.dialtest import VillagerScript
from hotline.intake import IntakeService
from hotline.part import SANDBOX_SCRIPT, find_sandbox_root, sandbox_up, telephony_config
from hotline.prompts import DIAL_TEST_SENTENCE
from hotline.recordings import RecordingStore
from server import ensure_ready, opened_runtime
from settings import Settings
from storage.worker_lock import worker_lock


def cmd_asterisk(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "render":
        telephony = telephony_config(settings, sandbox_root=asyncio.run(find_sandbox_root(settings)))
        if telephony is None:
            raise CommandError("asterisk = none: there is no Asterisk configuration to render")
        files = render_configuration(telephony.templates, telephony.render)
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.out / name).write_text(text, encoding="utf-8")
        print(f"rendered {len(files)} files into {args.out} (manager.conf holds the AMI secret: keep it private)")
        return 0
    if settings.asterisk != "sandbox":
        raise CommandError(
            f"asterisk = {settings.asterisk}: this service does not run Asterisk itself "
            "(see the README: connecting a site's own Asterisk)"
        )

    async def run() -> int:
        root = await find_sandbox_root(settings)
        if args.action == "up":
            if root is None:
                print("provisioning the Asterisk sandbox (debootstrap of Debian sid; about a minute)…", flush=True)
            sandbox, telephony = await sandbox_up(settings, provision=True, sandbox_root=root)
            print(f"Asterisk sandbox running: {sandbox.instance_dir}")
            print(f"  AMI      {telephony.ami.host}:{telephony.ami.port} user {telephony.ami.username}")
            print(f"  FastAGI  {telephony.render.fastagi_url} (served by `cunxiang serve`)")
            print(
                f"  SIP      udp {telephony.render.sip_bind}:{telephony.render.sip_port}, softphone user "
                f"{telephony.render.softphone_user}, password in {settings.data_dir / 'softphone.secret'}"
                if not settings.sandbox.softphone_password
                else f"  SIP      udp {telephony.render.sip_bind}:{telephony.render.sip_port}, "
                f"softphone user {telephony.render.softphone_user}"
            )
            return 0
        if root is None:
            print("the Asterisk sandbox is not provisioned")
            return 3 if args.action == "status" else 0
        sandbox = Sandbox(SANDBOX_SCRIPT, root, settings.sandbox.instance)
        if args.action == "down":
            await sandbox.stop()
            print(f"Asterisk sandbox stopped: {sandbox.instance_dir}")
            return 0
        status = await sandbox.status()
        print(f"{'running' if status.running else 'stopped'}: {sandbox.instance_dir} ({status.detail})")
        return 0 if status.running else 3

    try:
        return asyncio.run(run())
    except CunxiangError as exc:
        raise CommandError(exc.detail or exc.message) from None


def cmd_prompts_install(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> int:
        async with opened_runtime(settings) as runtime:
            telephony = runtime.hotline.telephony
            if telephony is None or telephony.prompts is None:
                raise CommandError("asterisk = none: there is nowhere to install prompts")
            if telephony.config.problem:
                raise CommandError(telephony.config.problem)
            telephony.paths.prepare()
            report = await telephony.prompts.install(force=args.force)
        for prompt_id in sorted(report.rendered):
            print(f"rendered {prompt_id}")
        for prompt_id, error in sorted(report.failed.items()):
            print(f"FAILED  {prompt_id}: {error}", file=sys.stderr)
        print(
            f"{len(report.rendered)} rendered, {len(report.kept)} unchanged, {len(report.failed)} failed, "
            f"in {telephony.prompts.target}"
        )
        return 1 if report.failed else 0

    return asyncio.run(run())


def _keys(text: str) -> list[str]:
    if text and not all(char in "0123456789*#," for char in text):
        raise CommandError("--keys: only 0-9, * and #, groups separated by commas (e.g. 2,12345678#)")
    return [group for group in text.split(",") if group] if text else []


async def _dial_test(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    async with opened_runtime(settings) as runtime:
        await ensure_ready(runtime)
        telephony = runtime.hotline.telephony
        if telephony is None or telephony.media is None:
            raise CommandError("asterisk = none: there is no hotline to call")
        if telephony.config.problem:
            raise CommandError(telephony.config.problem)
        # With no `serve` running this process stands in for the worker's hotline part during the call:
        # the same services, started in the same order (hotline.part lists them); else it needs the link alone.
        lock = worker_lock(runtime.database)
        own_worker = await lock.try_acquire()
        services = ServiceGroup(runtime.hotline.worker_services if own_worker else [telephony.link])
        try:
            await services.start()
            await telephony.link.wait_connected(args.timeout)
            if own_worker and telephony.prompts is not None:
                # Waits for the installer the worker services started (one install at a time).
                await telephony.prompts.install()
            if args.audio is not None:
                if not args.audio.exists():
                    raise CommandError(f"no such audio file: {args.audio}")
                audio = await telephony.media.upload(args.audio)
            else:
                audio = await telephony.media.sentence(DIAL_TEST_SENTENCE)
            if args.line == "phonecast":
                if not runtime.settings.hotline.phonecast_did:
                    raise CommandError(
                        "--line phonecast: hotline.phonecast_did is not set (CUNXIANG_HOTLINE_PHONECAST_DID)"
                    )
                live_offered = runtime.settings.hotline.phonecast_live_max_s > 0
                if args.live and not live_offered:
                    raise CommandError("--live: hotline.phonecast_live_max_s is 0 (the line offers no live mode)")
                # The PIN first, then the place, the mode when the line asks it (1 recorded, 2 live) and, recorded,
                # the choice after hearing it back; live, # after speaking (default 1,1 / 1,1,1: 本村, now; live:
                # 1,2,#: 本村, live, # once she has spoken).
                default = "1,2,#" if args.live else "1,1,1" if live_offered else "1,1"
                keys = [*([args.pin] if args.pin else []), *_keys(default if args.keys is None else args.keys)]
            else:
                keys = _keys("1" if args.keys is None else args.keys)
            script = VillagerScript(
                caller=args.caller,
                caller_name=args.caller_name or "",
                keys=keys,
                audio=audio,
                hangup_at=args.hangup_at,
                line=args.line,
            )
            call = await telephony.villager.call(script, timeout_s=args.timeout)
            if args.line == "phonecast":
                # Not a hotline call: what the caller heard, and the desk's answer as the line told it.
                return {"villager": call.as_dict(), "heard": call.heard, "outcome": call.phonecast}
            outcome = await _settled_outcome(runtime.hotline.intake, runtime.hotline.store, call.linkedid, args.timeout)
            return {"villager": call.as_dict(), **(outcome or {"outcome": None, "error": "no record of the call yet"})}
        finally:
            await services.stop()
            if own_worker:
                await lock.release()


async def _settled_outcome(
    intake: IntakeService, store: RecordingStore, linkedid: str, timeout_s: float
) -> dict[str, Any] | None:
    """Poll until the call is settled as it ended: its end recorded and its recordings out of the spool.

    The worker may be another process. The spool is looked at *before* the record is read: the record
    read after an empty spool already holds every recording (a file leaves the spool only once its row
    is committed), whereas one read before could be from just before the worker attached it.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    outcome = None
    while time.monotonic() < deadline:
        waiting = await asyncio.to_thread(store.spool_files, linkedid)
        outcome = await intake.outcome(linkedid)
        if outcome is not None and not waiting and _ended(outcome):
            return outcome
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    return outcome


def _ended(outcome: dict[str, Any]) -> bool:
    """The call's row says it ended (the tracker or the hang-up handler saw it go), not only that a case exists."""
    call = outcome.get("call")
    return call is not None and call.get("ended_at") is not None


def cmd_hotline_dial_test(settings: Settings, args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(_dial_test(settings, args))
    except CunxiangError as exc:
        raise CommandError(exc.detail or exc.message) from None
    print(json.dumps(result, ensure_ascii=False, indent=2, default=json_default))
    if args.line == "phonecast":
        return 0 if result.get("outcome") else 1
    return 0 if result.get("outcome") else 1


def add_commands(commands: Commands) -> None:
    asterisk = commands.add_parser(
        "asterisk", help="the Asterisk sandbox: up (provision, render, start or reload), down, status; render FILES"
    )
    asterisk.add_argument("action", choices=["up", "down", "status", "render"])
    asterisk.add_argument(
        "--out", type=Path, default=Path("asterisk-config"), help="render: directory for the configuration files"
    )
    asterisk.set_defaults(func=cmd_asterisk)

    prompts = commands.add_parser("prompts", help="the hotline's voice prompts")
    prompts_commands = prompts.add_subparsers(dest="prompts_command", required=True, metavar="PROMPTS_COMMAND")
    prompts_install = prompts_commands.add_parser(
        "install", help="render new or changed prompts with our TTS and install them where Asterisk plays them"
    )
    prompts_install.add_argument("--force", action="store_true", help="render every prompt again")
    prompts_install.set_defaults(func=cmd_prompts_install)

    hotline = commands.add_parser("hotline", help="the petition hotline")
    hotline_commands = hotline.add_subparsers(dest="hotline_command", required=True, metavar="HOTLINE_COMMAND")
    dial = hotline_commands.add_parser(
        "dial-test", help="拨测: a simulated villager calls the hotline through Asterisk; prints what became of it"
    )
    dial.add_argument("--caller", default="13800001111", help="the villager's number (default: 13800001111)")
    dial.add_argument("--caller-name", help="the caller name the network shows")
    dial.add_argument(
        "--line",
        choices=["hotline", "phonecast"],
        default="hotline",
        help="which number to dial: the hotline (default) or the phone-broadcast line 手机喊话 (hotline.phonecast_did)",
    )
    dial.add_argument("--pin", help="phonecast: the 喊话密码 typed first (6 digits)")
    dial.add_argument(
        "--live",
        action="store_true",
        help="phonecast: 实时喊话 — go live on the place's loudspeakers, say the audio, press # (default keys 1,2,#)",
    )
    dial.add_argument(
        "--keys",
        default=None,
        help="keys for each prompt that asks, comma-separated: 1, 3, 0, or 2,<case number># (empty: press nothing; "
        "default 1); phonecast, after the PIN: the place (1, 2, 3,<code>#, then a list number) and the choice after "
        "hearing the message back (1 now, 2 again, 3,HHMM) — default 1,1 (1,1,1 when the line asks 1 录音 / 2 实时)",
    )
    dial.add_argument(
        "--audio", type=Path, help="what the caller says (any audio file, e.g. a WAV; default: a TTS sentence)"
    )
    dial.add_argument("--hangup-at", choices=["welcome", "recording", "readback", "end"], default="end")
    dial.add_argument("--timeout", type=float, default=180.0, help="seconds the whole test may take (default: 180)")
    dial.set_defaults(func=cmd_hotline_dial_test)
