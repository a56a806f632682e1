"""merge_streams: the one loop that reads several event streams at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

import pytest

from moa_core.streams import IDLE, merge_streams


async def counted(name: str, n: int, closed: list[str], *, gate: asyncio.Event | None = None) -> AsyncGenerator[str]:
    """Yields name-0 … name-(n-1), giving the loop a turn between items; notes when it is closed."""
    try:
        for i in range(n):
            if gate is not None and i == 1:
                await gate.wait()
            await asyncio.sleep(0)
            yield f"{name}-{i}"
    finally:
        closed.append(name)


def test_every_item_arrives_once_in_its_streams_order() -> None:
    async def main() -> list[tuple[str, str]]:
        closed: list[str] = []
        streams = {k: counted(k, n, closed) for k, n in [("a", 5), ("b", 3), ("c", 0)]}
        return [x async for x in merge_streams(streams)]

    got = asyncio.run(main())
    assert sorted(got) == sorted([("a", f"a-{i}") for i in range(5)] + [("b", f"b-{i}") for i in range(3)])
    for key in "ab":
        assert [v for k, v in got if k == key] == [f"{key}-{i}" for i in range(5 if key == "a" else 3)]
    assert {k for k, _ in got[:3]} == {"a", "b"}  # interleaved as they come, not one stream after the other


def test_an_exception_in_one_stream_reaches_the_consumer_and_closes_the_others() -> None:
    closed: list[str] = []

    async def failing() -> AsyncGenerator[str]:
        yield "first"
        raise ValueError("boom")

    async def main() -> list[str]:
        seen = []
        never = asyncio.Event()  # "slow" waits forever after its first item
        streams = {"bad": failing(), "slow": counted("slow", 3, closed, gate=never)}
        async for _, item in merge_streams(streams):
            seen.append(item)
        return seen

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main())
    assert closed == ["slow"]  # its finally ran: cancelled, not left pending


def test_closing_the_merge_early_cancels_every_stream() -> None:
    closed: list[str] = []
    started: list[str] = []

    async def waits_forever(name: str) -> AsyncGenerator[str]:
        try:
            started.append(name)
            yield f"{name}-0"
            await asyncio.Event().wait()
            yield "never"
        finally:
            closed.append(name)

    async def main() -> None:
        streams = {k: waits_forever(k) for k in ("x", "y", "z")}
        async with aclosing(merge_streams(streams)) as merged:
            seen = 0
            async for _ in merged:
                seen += 1
                if seen == 3:
                    break
        assert sorted(closed) == ["x", "y", "z"]  # before aclosing returns, not at loop shutdown

    asyncio.run(main())
    assert sorted(started) == ["x", "y", "z"]


def test_cancelling_the_consumer_task_cancels_every_stream() -> None:
    closed: list[str] = []

    async def main() -> None:
        gate = asyncio.Event()
        streams = {k: counted(k, 5, closed, gate=gate) for k in ("p", "q")}
        first = asyncio.Event()

        async def consume() -> None:
            async with aclosing(merge_streams(streams)) as merged:
                async for _ in merged:
                    first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sorted(closed) == ["p", "q"]


def test_idle_is_yielded_while_every_stream_is_silent_and_nothing_is_lost() -> None:
    async def main() -> list[object]:
        gate = asyncio.Event()
        closed: list[str] = []
        out: list[object] = []
        async for x in merge_streams({"s": counted("s", 3, closed, gate=gate)}, idle=0.01):
            out.append(x)
            if x is IDLE:
                gate.set()  # the consumer acts on the silence; the stream then goes on
        return out

    got = asyncio.run(main())
    assert IDLE in got
    assert [x for x in got if x is not IDLE] == [("s", "s-0"), ("s", "s-1"), ("s", "s-2")]


def test_without_idle_a_silent_stream_is_simply_awaited() -> None:
    async def late() -> AsyncGenerator[str]:
        await asyncio.sleep(0.05)
        yield "late"

    async def main() -> list[object]:
        return [x async for x in merge_streams({"k": late()})]

    assert asyncio.run(main()) == [("k", "late")]
