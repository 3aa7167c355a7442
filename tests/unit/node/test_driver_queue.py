"""The consensus driver's queue (node/driver_queue.py): the node's own jobs never wait,
peers' jobs are bounded by count and bytes per lane, with back-pressure and priority."""

from __future__ import annotations

import asyncio

from node.driver_queue import CURRENT, OTHER, DriverQueue


def _job(name: str, ran: list[str]):  # type: ignore[no-untyped-def]
    return lambda: ran.append(name)


def test_own_jobs_first_then_the_current_height_then_the_rest() -> None:
    async def main() -> list[str]:
        queue, ran = DriverQueue(), []
        await queue.put(_job("evidence", ran), 10, OTHER)
        await queue.put(_job("vote", ran), 10, CURRENT)
        queue.put_own(_job("timeout", ran))
        for _ in range(3):
            job = await queue.get()
            assert job is not None
            job()
        return ran

    assert asyncio.run(main()) == ["timeout", "vote", "evidence"]


def test_a_lane_is_bounded_in_bytes_and_count_and_a_full_one_makes_peers_wait() -> None:
    async def main() -> None:
        queue, ran = DriverQueue(max_messages=3, max_bytes=100), []
        await queue.put(_job("big", ran), 1000, OTHER)  # alone, larger than the bound: let in
        blocked = asyncio.ensure_future(queue.put(_job("small", ran), 1, OTHER))
        await asyncio.sleep(0.01)
        assert not blocked.done() and queue.waiting(OTHER) == 1
        for name in ("a", "b", "c"):
            await queue.put(_job(name, ran), 10, CURRENT)  # another lane has its own room
        fourth = asyncio.ensure_future(queue.put(_job("d", ran), 10, CURRENT))
        await asyncio.sleep(0.01)
        assert not fourth.done(), "three jobs is the count bound"
        for _ in range(1000):
            queue.put_own(_job("own", ran))  # the node's own jobs never wait
        assert len(queue) == 1000 + 3 + 1
        while ran.count("own") < 1000:
            job = await queue.get()
            assert job is not None
            job()
        job = await queue.get()  # "a": room for "d"
        assert job is not None
        await asyncio.wait_for(fourth, 10)
        assert queue.held_bytes(CURRENT) == 30
        queue.close()
        await asyncio.wait_for(blocked, 10)  # closing releases the waiting peer
        assert await queue.get() is None
        assert blocked.result() is False

    asyncio.run(main())
