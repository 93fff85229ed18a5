"""Live changes: the feed hears of every committed change, in this process at once and from another process
through the database (SQLite and PostgreSQL); the event stream tells each user only of cases they may see."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cases.live import CaseChange
from hotline.intake import CallFacts
from server import Runtime, build_runtime
from settings import Settings
from tests.cases.conftest import County, People
from tests.conftest import BOTH_DATABASES
from tests.support.http import ApiClient


async def next_changes(feed_subscription: Any, timeout_s: float = 10.0) -> list[CaseChange]:
    batch = await feed_subscription.next(timeout_s)
    assert isinstance(batch, list), f"no change heard within {timeout_s} s ({batch})"
    return batch


async def test_a_change_committed_here_is_heard_at_once_and_a_stopped_feed_ends_its_listeners(
    runtime: Runtime, county: County, people: People
) -> None:
    feed = runtime.cases.changes
    feed.poll_s = 3600.0  # only the poke can bring it in time
    await feed.start()
    try:
        with feed.subscribe() as listening:
            case = await runtime.cases.workflow.create(
                people.operator_county.principal,
                channel="walk_in",
                summary="村口的桥裂了",
                township_id=county.township_a,
            )
            assert [change.case_id for change in await next_changes(listening)] == [case.id]
            ticket = await runtime.hotline.intake.open_case(
                CallFacts("live-1", caller_raw="13800001111", choice="3"), via="fastagi"
            )
            (change,) = await next_changes(listening)
            assert (change.case_id, change.sealed, change.township_id) == (ticket.case_id, True, None)
            await feed.stop()
            assert await listening.next(1.0) == "ended"
    finally:
        await feed.stop()


@pytest.mark.parametrize("db_kind", BOTH_DATABASES)
async def test_another_processs_change_reaches_this_processs_listeners_through_the_database(
    settings: Settings, runtime: Runtime, county: County, people: People
) -> None:
    """Two services on one database: the one serving the page hears what the other wrote."""
    other = build_runtime(settings)
    feed = runtime.cases.changes
    feed.poll_s = 0.05
    await feed.start()
    try:
        with feed.subscribe() as listening:
            case = await other.cases.workflow.create(
                people.operator_county.principal, channel="grid", summary="饮水井坏了", township_id=county.township_b
            )
            changes = await next_changes(listening)
            assert [(change.case_id, change.township_id) for change in changes] == [(case.id, county.township_b)]
    finally:
        await feed.stop()
        await other.engine.dispose()


async def stream_events(
    client: ApiClient,
    events: list[dict[str, Any]],
    ready: asyncio.Event,
    arrived: asyncio.Event | None = None,
    *,
    since: str | None = None,
) -> None:
    """Reads the event stream as a browser would, collecting each ``cases`` event (``arrived`` is set on each;
    a ``resync`` is collected as ``{"resync": True}``)."""
    params = {"since": since} if since is not None else {}
    headers = {"Accept": "text/event-stream"}
    async with client.client.get("/cases/changes", params=params, headers=headers) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        name = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                if name == "ready":
                    ready.set()
                elif name in ("cases", "resync"):
                    events.append(json.loads(line.removeprefix("data: ")) if name == "cases" else {"resync": True})
                    if arrived is not None:
                        arrived.set()


@pytest.fixture
async def streams(runtime: Runtime) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    runtime.cases.changes.close_subscriptions()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)


async def test_the_stream_tells_each_user_only_of_the_cases_they_may_see(
    runtime: Runtime, server: Any, county: County, people: People, streams: list[asyncio.Task[None]]
) -> None:
    heard: dict[str, list[dict[str, Any]]] = {}
    arrived: dict[str, asyncio.Event] = {}
    for who in ("operator_county", "operator_b", "inspector", "leader", "staff_a"):
        heard[who] = []
        arrived[who] = asyncio.Event()
        ready = asyncio.Event()
        client = getattr(people, who).client
        listening = stream_events(client, heard[who], ready, arrived[who])
        streams.append(asyncio.get_running_loop().create_task(listening))
        await asyncio.wait_for(ready.wait(), 10)

    workflow = runtime.cases.workflow
    operator = people.operator_county.principal
    in_a = await workflow.create(operator, channel="walk_in", summary="甲乡的事", township_id=county.township_a)
    sealed = await workflow.create(
        people.inspector.principal,
        channel="letter",
        category="discipline",
        summary="举报",
        township_id=county.township_a,
    )
    in_b = await workflow.create(operator, channel="walk_in", summary="乙镇的事", township_id=county.township_b)

    async def heard_of(who: str, case_id: int) -> None:
        while not any(case_id in event["case_ids"] for event in heard[who]):
            arrived[who].clear()
            await arrived[who].wait()

    await asyncio.wait_for(heard_of("operator_county", in_b.id), 10)
    await asyncio.wait_for(heard_of("inspector", in_b.id), 10)
    await asyncio.wait_for(heard_of("operator_b", in_b.id), 10)
    await asyncio.wait_for(heard_of("staff_a", in_a.id), 10)

    def ids(who: str) -> set[int]:
        return {case_id for event in heard[who] for case_id in event["case_ids"]}

    assert ids("operator_county") == {in_a.id, in_b.id}  # never the sealed one's id
    assert ids("inspector") == {in_a.id, sealed.id, in_b.id}
    assert ids("operator_b") == {in_b.id}
    assert in_a.id in ids("leader") and sealed.id not in ids("leader")
    assert sealed.id not in ids("staff_a") and in_b.id not in ids("staff_a")
    assert all(event["missed_calls"] is False for events in heard.values() for event in events)


async def test_what_changed_between_a_page_and_its_stream_is_told_as_the_stream_starts(
    runtime: Runtime, server: Any, county: County, people: People, streams: list[asyncio.Task[None]]
) -> None:
    """A page is rendered, then its script subscribes; a change committed in between has been published to
    nobody the page could hear. The page's mark (``data-live-since``) makes its stream tell it at once."""
    operator = people.operator_county
    page = await operator.client.client.get("/cases")
    found = re.search(r'data-live-since="([0-9.]+)"', await page.text())
    assert found is not None
    mark = found.group(1)
    workflow = runtime.cases.workflow
    # Another listener hears both: they were published before the page's stream listened.
    with runtime.cases.changes.subscribe() as elsewhere:
        in_b = await workflow.create(
            operator.principal, channel="walk_in", summary="乙镇的事", township_id=county.township_b
        )
        sealed = await workflow.create(
            people.inspector.principal,
            channel="letter",
            category="discipline",
            summary="举报",
            township_id=county.township_a,
        )
        heard: set[int | None] = set()
        while not {in_b.id, sealed.id} <= heard:
            heard |= {change.case_id for change in await next_changes(elsewhere)}

    events: list[dict[str, Any]] = []
    ready, arrived = asyncio.Event(), asyncio.Event()
    streams.append(
        asyncio.get_running_loop().create_task(stream_events(operator.client, events, ready, arrived, since=mark))
    )
    await asyncio.wait_for(arrived.wait(), 10)  # nothing else changes: only the mark can bring it
    assert events == [{"case_ids": [in_b.id], "missed_calls": False}]  # never the sealed one's id

    # Not a mark of ours (an old page, a hand-made URL): no error, the page simply reloads what it shows.
    events, ready, arrived = [], asyncio.Event(), asyncio.Event()
    streams.append(
        asyncio.get_running_loop().create_task(stream_events(operator.client, events, ready, arrived, since="x.1"))
    )
    await asyncio.wait_for(arrived.wait(), 10)
    assert events == [{"resync": True}]


async def test_the_stream_is_for_signed_in_users_only(new_client: Any) -> None:
    anonymous = await new_client()
    response = await anonymous.client.get("/cases/changes", allow_redirects=False)
    assert response.status in (302, 303, 401)
