"""Cases from the command line: ``cases show`` (a case with its recordings, workflow state and history)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from cli.base import CommandError, Commands, json_default
from hotline.intake import case_json
from server import Runtime, ensure_ready, opened_runtime
from settings import Settings
from storage.audit import Actor
from storage.models import CaseLedger


def cmd_cases_show(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> dict[str, Any] | None:
        async with opened_runtime(settings) as runtime:
            await ensure_ready(runtime)
            # Whoever runs this holds the data directory; a look at a sealed case is on record (the ledger logs it).
            viewer = Actor(user_id=None, username=f"cli:{os.environ.get('USER', 'unknown')}")
            case = await runtime.cases.ledger.by_number(args.number, viewer=viewer, via="cunxiang cases show")
            if case is None:
                return None
            # The same JSON as the hotline's call outcome, with each recording's file and the workflow's side.
            data = case_json(case, await runtime.cases.replay.recordings(case.id))
            for recording in data["recordings"]:
                recording["file"] = str(runtime.cases.replay.files.path_of(recording["path"]))
            data["workflow"] = await _workflow_json(runtime, case.id)
            return data

    data = asyncio.run(run())
    if data is None:
        raise CommandError(f"no case numbered {args.number}")
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=json_default))
    else:
        print(f"case {data['number']}: {data['status']}, {data['category']}{' (sealed)' if data['sealed'] else ''}")
        for recording in data["recordings"]:
            print(f"  {recording['kind']}: {recording['duration_s']:.1f} s  {recording['file']}")
    return 0


async def _workflow_json(runtime: Runtime, case_id: int) -> dict[str, Any]:
    """The case ledger's side of a case for ``cases show``: its workflow state and its history."""
    ledger = await runtime.cases.workflow.ledger_of(case_id)
    state: dict[str, Any] = {}
    if ledger is not None:
        state = {
            column.name: getattr(ledger, column.key)
            for column in CaseLedger.__table__.columns
            if column.name not in ("case_id", "updated_at")
        }
    history = [
        {"at": event.at, "kind": event.kind, "by": event.username, "from": event.from_status, "to": event.to_status,
         "after": event.after, "note": event.note}
        for event in await runtime.cases.workflow.history(case_id)
    ]  # fmt: skip
    return {**state, "history": history}


def add_commands(commands: Commands) -> None:
    cases = commands.add_parser("cases", help="cases (诉求案件)")
    cases_commands = cases.add_subparsers(dest="cases_command", required=True, metavar="CASES_COMMAND")
    cases_show = cases_commands.add_parser("show", help="a case with its recordings")
    cases_show.add_argument("number", metavar="NUMBER")
    cases_show.add_argument("--json", action="store_true", help="print JSON")
    cases_show.set_defaults(func=cmd_cases_show)
