"""One way to consume several async streams at once: `merge_streams`.

The engine (a stage's concurrent calls, the baselines beside the pipeline), the arena (two
contenders) and the challenge (independent drafts) all read several event streams as the
events come. They do it here, so cancelling works the same everywhere: closing the merged
generator (break, an exception, a cancelled task, a Streamlit rerun) cancels every pump
task and closes every stream, which stops their model calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Mapping
from contextlib import aclosing
from typing import Any, Final, TypeVar, overload

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

_END = object()


class Idle:
    """What `merge_streams(..., idle=s)` yields when no stream has said anything for `s` seconds."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "IDLE"


IDLE: Final = Idle()


@overload
def merge_streams(streams: Mapping[K, AsyncIterator[T]]) -> AsyncGenerator[tuple[K, T], None]: ...
@overload
def merge_streams(
    streams: Mapping[K, AsyncIterator[T]], *, idle: float
) -> AsyncGenerator[tuple[K, T] | Idle, None]: ...


async def merge_streams(
    streams: Mapping[K, AsyncIterator[T]], *, idle: float | None = None
) -> AsyncGenerator[tuple[K, T] | Idle, None]:
    """Items of every stream as they arrive, each tagged with its stream's key.

    Ends when every stream has ended. An exception in a stream is raised here (after the
    other streams are cancelled); closing this generator early cancels the rest. With
    `idle`, `IDLE` is yielded whenever nothing has arrived for that many seconds, so a
    consumer waiting on silent streams (a model still thinking) can look at the clock, a
    stop request or the screen without a second loop of its own.
    """
    queue: asyncio.Queue[tuple[K, Any]] = asyncio.Queue()

    async def pump(key: K, stream: AsyncIterator[T]) -> None:
        try:
            if hasattr(stream, "aclose"):
                async with aclosing(stream):  # type: ignore[type-var]  # checked above: the stream has aclose
                    async for item in stream:
                        queue.put_nowait((key, item))
            else:
                async for item in stream:
                    queue.put_nowait((key, item))
        except Exception as exc:
            queue.put_nowait((key, _Failed(exc)))
        finally:
            queue.put_nowait((key, _END))

    tasks = [asyncio.create_task(pump(k, s)) for k, s in streams.items()]
    try:
        remaining = len(tasks)
        while remaining:
            if idle is None:
                key, item = await queue.get()
            else:
                try:
                    # Cancelling a Queue.get loses no item: what is not taken stays queued.
                    key, item = await asyncio.wait_for(queue.get(), idle)
                except TimeoutError:
                    yield IDLE
                    continue
            if item is _END:
                remaining -= 1
            elif isinstance(item, _Failed):
                raise item.exc
            else:
                yield key, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
