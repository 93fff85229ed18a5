"""Group commit: writes arriving together share a transaction; a failure or a cancelled writer costs nobody else."""

from __future__ import annotations

import asyncio

import pytest

from hotline.group_commit import GroupCommit


class Store:
    """A stand-in database: what was committed, and in which groups (alone: a group of one)."""

    def __init__(self, *, bad: frozenset[int] = frozenset(), slow_s: float = 0.0) -> None:
        self.committed: list[list[int]] = []
        self.bad = bad
        self.slow_s = slow_s
        self.entered = asyncio.Event()

    async def together(self, items: list[int]) -> list[str] | None:
        self.entered.set()
        await asyncio.sleep(self.slow_s)
        if self.bad & set(items):
            return None  # rolled back: nothing of the group written
        self.committed.append(items)
        return [f"ok {item}" for item in items]

    async def alone(self, item: int) -> str:
        await asyncio.sleep(self.slow_s)
        if item in self.bad:
            raise ValueError(f"item {item} cannot be written")
        self.committed.append([item])
        return f"ok {item}"


async def test_a_burst_is_written_in_few_groups_and_each_writer_gets_its_own_result() -> None:
    store = Store(slow_s=0.01)
    writes = GroupCommit("test", store.together, store.alone)
    results = await asyncio.gather(*(writes.write(item) for item in range(20)))
    assert results == [f"ok {item}" for item in range(20)]
    # The first goes alone at once; the 19 that came meanwhile go together.
    assert store.committed == [[0], list(range(1, 20))]
    assert (writes.groups, writes.grouped) == (1, 19)


async def test_a_group_that_fails_is_written_one_by_one_and_only_the_bad_one_fails() -> None:
    store = Store(bad=frozenset({7}))
    writes = GroupCommit("test", store.together, store.alone)
    results = await asyncio.gather(*(writes.write(item) for item in range(10)), return_exceptions=True)
    assert isinstance(results[7], ValueError)
    assert [result for index, result in enumerate(results) if index != 7] == [
        f"ok {item}" for item in range(10) if item != 7
    ]
    assert sorted(item for group in store.committed for item in group) == [item for item in range(10) if item != 7]


async def test_a_writer_cancelled_while_writing_its_group_leaves_the_others_to_the_next() -> None:
    store = Store(slow_s=0.05)
    writes = GroupCommit("test", store.together, store.alone)
    first = asyncio.ensure_future(writes.write(0))
    await asyncio.sleep(0)  # 0 holds the turn (alone: nothing else waited)
    holder = asyncio.ensure_future(writes.write(1))
    others = [asyncio.ensure_future(writes.write(item)) for item in (2, 3)]
    assert await first == "ok 0"
    await store.entered.wait()  # 1 now writes the group 1, 2, 3
    holder.cancel()
    assert await asyncio.gather(*others) == ["ok 2", "ok 3"]
    with pytest.raises(asyncio.CancelledError):
        await holder
    # The cancelled group committed nothing; 2 and 3 went back to the queue and were written by the next
    # holder; 1, whose writer is gone, like any cancelled write (the tracker or reconciliation settles it).
    assert store.committed == [[0], [2, 3]]


async def test_a_writer_cancelled_while_queued_is_never_written() -> None:
    store = Store(slow_s=0.05)
    writes = GroupCommit("test", store.together, store.alone)
    first = asyncio.ensure_future(writes.write(0))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(writes.write(1))
    stays = asyncio.ensure_future(writes.write(2))
    await asyncio.sleep(0)
    gone.cancel()
    assert await first == "ok 0" and await stays == "ok 2"
    assert store.committed == [[0], [2]]


async def test_turned_off_every_write_goes_alone_side_by_side() -> None:
    """PostgreSQL: cases on several connections at once beat one transaction queueing every statement on one."""
    store = Store(slow_s=0.01)
    writes = GroupCommit("test", store.together, store.alone, enabled=False)
    assert await asyncio.gather(*(writes.write(item) for item in range(5))) == [f"ok {item}" for item in range(5)]
    assert sorted(store.committed) == [[item] for item in range(5)] and writes.groups == 0
