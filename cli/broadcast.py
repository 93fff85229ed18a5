"""Broadcasting from the command line: ``broadcast test`` (拨测), one item to one destination, now."""

from __future__ import annotations

import argparse
import asyncio
import json

from broadcast.transports import SpeakerTarget
from cli.base import CommandError, Commands
from common.errors import CunxiangError
from server import ensure_ready, opened_runtime
from settings import Settings
from storage.models import RUN_SUCCESS, Speaker


def cmd_broadcast_test(settings: Settings, args: argparse.Namespace) -> int:
    """拨测: render a short item and play it through one transport to one destination now; print the result."""

    async def run() -> int:
        try:
            async with opened_runtime(settings) as runtime:
                if args.rtp:
                    target = SpeakerTarget("rtp", args.rtp, name=args.rtp)
                elif args.page:
                    target = SpeakerTarget("sip", args.page, name=args.page)
                else:
                    await ensure_ready(runtime)
                    async with runtime.sessions() as session:
                        speaker = await session.get(Speaker, args.speaker)
                    if speaker is None:
                        raise CommandError(f"no speaker with id {args.speaker}")
                    target = SpeakerTarget(speaker.transport, speaker.address, speaker.id, speaker.name)
                # A SIP page needs the AMI link; this command starts its own for the one page it sends.
                link = None
                if target.transport == "sip":
                    telephony = runtime.hotline.telephony
                    if telephony is None:
                        raise CommandError("asterisk = none: there is no Asterisk to page through")
                    link = telephony.link
                    await link.start()
                await runtime.broadcasting.rtp_sender.start()
                try:
                    if link is not None:
                        await link.wait_connected(settings.broadcast.speaker_test_timeout_s)
                    result = await runtime.broadcasting.speaker_tester.test(args.text, target)
                finally:
                    await runtime.broadcasting.rtp_sender.stop()
                    if link is not None:
                        await link.stop()
        except CunxiangError as exc:
            raise CommandError(exc.message) from None
        print(json.dumps(result.as_json(), ensure_ascii=False, indent=2))
        return 0 if result.state == RUN_SUCCESS else 1

    return asyncio.run(run())


def add_commands(commands: Commands) -> None:
    broadcast = commands.add_parser("broadcast", help="broadcasting tools: the speaker test (拨测)")
    broadcast_commands = broadcast.add_subparsers(dest="broadcast_command", required=True, metavar="BROADCAST_COMMAND")
    speaker_test = broadcast_commands.add_parser(
        "test", help="render a short item and play it now to one destination; print the per-speaker result as JSON"
    )
    speaker_test.add_argument("--text", default="村响广播测试，听到请回复。", help="what to say")
    destination = speaker_test.add_mutually_exclusive_group(required=True)
    destination.add_argument("--rtp", metavar="HOST:PORT", help="an RTP speaker or multicast group (PCMU, 20 ms)")
    destination.add_argument("--page", metavar="ENDPOINT", help="a SIP speaker (PJSIP endpoint) paged through Asterisk")
    destination.add_argument("--speaker", type=int, metavar="ID", help="a speaker of the area tree, by id")
    speaker_test.set_defaults(func=cmd_broadcast_test)
