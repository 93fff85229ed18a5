"""A case's history is append-only in the database itself, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from server import Runtime
from storage.models import CaseEvent
from tests.cases.conftest import CaseMaker, County, People
from tests.conftest import BOTH_DATABASES

pytestmark = pytest.mark.parametrize("db_kind", BOTH_DATABASES)


async def test_history_rows_can_be_added_but_never_changed_or_deleted(
    runtime: Runtime, county: County, people: People, hotline_case: CaseMaker
) -> None:
    case = await hotline_case(township_id=county.township_a)
    await people.operator_a.client.post_json(f"/api/v1/cases/{case.id}/notes", {"text": "第一次备注"})
    async with runtime.sessions() as session:
        event_id = await session.scalar(select(CaseEvent.id).where(CaseEvent.case_id == case.id))
    for statement in (
        update(CaseEvent).where(CaseEvent.id == event_id).values(note="改过的备注"),
        delete(CaseEvent).where(CaseEvent.id == event_id),
        text("DELETE FROM case_events"),
    ):
        async with runtime.sessions() as session:
            with pytest.raises((IntegrityError, DBAPIError)) as raised:
                await session.execute(statement)
                await session.commit()
            assert "append-only" in str(raised.value)
    async with runtime.sessions() as session:
        event = await session.get(CaseEvent, event_id)
        assert event is not None and event.note == "第一次备注"
        assert await session.scalar(select(func.count()).select_from(CaseEvent)) == 1
