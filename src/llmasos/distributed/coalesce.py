"""Fewer, larger stream items: a request's deltas merged before they cross Ray.

Every item a replica yields from its Ray streaming generator costs the same whatever it
holds: a serialization, a hop to Ray's reporting thread and an RPC in the replica, then a
deserialization and two awaits in the API server. `coalesce` cuts the number of items
without losing, reordering or repeating anything:

- the first delta of a request goes out at once (time to first token is unchanged);
- after that, what arrives is held until ``interval`` seconds have passed since the previous
  item went out, or until the request finishes, and everything held goes out as one
  `GenerateOutput` (`merge`);
- with ``interval`` 0 nothing is held: deltas are merged only when they piled up while the
  previous item was being sent (the consumer is behind), so a request never has more items
  in flight than the consumer can take.

An error of the source is raised after the deltas that came before it went out. Closing the
coalesced stream (the caller cancelled) closes the source, so the engine aborts the request.
Pure asyncio, no Ray: the replicas use it, and it is unit-tested with a plain async iterator.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

from llmasos.kernel.interface import GenerateOutput


def merge(outputs: Sequence[GenerateOutput]) -> GenerateOutput:
    """One delta for consecutive deltas of one request: their text concatenated and their
    tokens (with logprobs) joined, in order; the rendered prompt from the one that carries it
    (the first of a request); the finish fields, token counts and timings from the last (the
    kernel sets them only on the final delta, after which nothing follows)."""
    if len(outputs) == 1:
        return outputs[0]
    return dataclasses.replace(
        outputs[-1],
        text="".join(output.text for output in outputs),
        tokens=[token for output in outputs for token in output.tokens],
        prompt=next((output.prompt for output in outputs if output.prompt is not None), None),
    )


async def coalesce(
    source: AsyncIterator[GenerateOutput],
    interval: float,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncGenerator[GenerateOutput, None]:
    """``source``'s deltas, merged into at most one item per ``interval`` seconds (see the
    module's docstring); the request's last item is the merged final delta."""
    held: list[GenerateOutput] = []
    arrived = asyncio.Event()
    """Set while something is held or the source has ended."""
    ended = asyncio.Event()
    """Set once the source is exhausted, failed or delivered its final delta."""
    failure: list[Exception] = []

    async def pump() -> None:
        try:
            async for output in source:
                held.append(output)
                arrived.set()
                if output.finished:
                    ended.set()
        except Exception as error:  # raised to the consumer after what came before it
            failure.append(error)
        finally:
            ended.set()
            arrived.set()
            closer = getattr(source, "aclose", None)
            if closer is not None:
                await closer()

    task = asyncio.get_running_loop().create_task(pump())
    sent_at: float | None = None
    try:
        while True:
            # the window first, then the wait for a delta: while tokens come faster than the
            # interval, the loop wakes once per item, not once per delta as well
            if sent_at is not None and interval > 0 and not ended.is_set():
                delay = sent_at + interval - clock()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await ended.wait()
            await arrived.wait()
            if not held:  # the source ended with nothing more to send
                if failure:
                    raise failure[0]
                return
            batch = held[:]
            held.clear()
            if not ended.is_set():
                arrived.clear()
            sent_at = clock()
            yield merge(batch)
            if batch[-1].finished:
                return
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
