"""A villager's call on the demo county as the hotline leaves it: its case opened by the intake, its message kept."""

from __future__ import annotations

import hashlib

from hotline.intake import CallFacts
from server import Runtime
from storage.models import Case, Recording
from tests.cases.conftest import wav_bytes


async def call_with_a_message(
    runtime: Runtime, linkedid: str, *, caller: str, choice: str, seconds: float, test_call: bool = False
) -> tuple[Case, int]:
    """The call's case as the intake opens it, and the message it recorded, stored as the store keeps one.

    Returns the case and the recording's id. ``choice`` is the key the caller pressed (3: a report of
    misconduct, sealed from the start); ``test_call`` marks a dial test, as the operators' own test calls are.
    """
    ticket = await runtime.hotline.intake.open_case(
        CallFacts(linkedid, caller_raw=caller, choice=choice, stage="recorded", test_call=test_call), via="fastagi"
    )
    store = runtime.hotline.store
    store.prepare()
    async with runtime.sessions() as session:
        case = await session.get(Case, ticket.case_id)
        assert case is not None
        data = wav_bytes(seconds)
        relative = store.destination(case.created_at, f"{case.number}-message-{linkedid}")
        path = store.path_of(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        recording = Recording(
            case_id=case.id, kind="message", linkedid=linkedid, source_name=f"cx_message_{linkedid}.wav",
            path=relative, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), duration_s=seconds,
            empty=False, recorded_at=case.created_at, created_at=case.created_at,
        )  # fmt: skip
        session.add(recording)
        await session.commit()
        return case, recording.id
