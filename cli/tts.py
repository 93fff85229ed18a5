"""Speech text tools from the command line: ``tts normalize`` and ``tts check`` (no database, no service needed)."""

from __future__ import annotations

import argparse

from cli.base import CommandError, Commands
from common.errors import CunxiangError
from settings import Settings
from tts import privacy
from tts.normalize import normalize


def cmd_tts_normalize(settings: Settings, args: argparse.Namespace) -> int:
    try:
        print(normalize(args.text, max_chars=settings.tts.max_chars))
    except CunxiangError as exc:
        raise CommandError(exc.message) from None
    return 0


def cmd_tts_check(settings: Settings, args: argparse.Namespace) -> int:
    result = privacy.check(args.text)
    blocking = [finding for finding in result.findings if finding.blocking]
    if blocking:
        print(f"发现 {len(blocking)} 处不能播报或公开的个人号码，不能播出：")
    for finding in result.findings:
        label = "不能播报" if finding.blocking else "提醒"
        masked = result.masked_text[finding.start : finding.end]
        print(f"  [{label}] {finding.message}（{masked}）")
    if result.findings:
        print("隐去后的文字：")
        print(result.masked_text)
    else:
        print("未发现身份证号、银行卡号或手机号。")
    return 1 if blocking else 0


def add_commands(commands: Commands) -> None:
    tts = commands.add_parser("tts", help="speech text tools: spoken form, personal-number check")
    tts_commands = tts.add_subparsers(dest="tts_command", required=True, metavar="TTS_COMMAND")
    tts_normalize = tts_commands.add_parser("normalize", help="print TEXT as it will be spoken")
    tts_normalize.add_argument("text", metavar="TEXT")
    tts_normalize.set_defaults(func=cmd_tts_normalize)
    tts_check = tts_commands.add_parser(
        "check", help="look for ID, bank card and mobile numbers; exit 1 when one must not be broadcast"
    )
    tts_check.add_argument("text", metavar="TEXT")
    tts_check.set_defaults(func=cmd_tts_check)
