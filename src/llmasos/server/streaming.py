"""Streaming helpers shared by every endpoint that streams kernel output.

`start_stream` awaits a request's first delta before any HTTP response starts, so that the
kernel's refusals (unknown model, prompt too long, queue full) become proper HTTP errors.
`StreamingBody` is a streaming response that notices the client leaving and then closes
the body iterator (shielded from cancellation), which closes the kernel's iterator and so
aborts the request. `merge_streams` interleaves several requests' deltas (OpenAI ``n``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from llmasos.kernel.interface import EngineClientInterface, GenerateOutput, GenerateRequest


class OutputStream:
    """A kernel output iterator whose first delta has already arrived."""

    def __init__(self, first: GenerateOutput, rest: AsyncIterator[GenerateOutput]) -> None:
        self.first = first
        self._rest = rest
        self._started = False

    def __aiter__(self) -> AsyncIterator[GenerateOutput]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[GenerateOutput]:
        if self._started:
            raise RuntimeError("an OutputStream can be iterated only once")
        self._started = True
        try:
            yield self.first
            if self.first.finished:
                return
            async for output in self._rest:
                yield output
                if output.finished:
                    return
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the kernel's iterator (aborting the request if it is still running)."""
        closer = getattr(self._rest, "aclose", None)
        if closer is not None:
            with anyio.CancelScope(shield=True):
                await closer()


async def start_stream(engine: EngineClientInterface, request: GenerateRequest) -> OutputStream:
    """Submit ``request`` and wait for its first delta; kernel errors raise here."""
    iterator = aiter(engine.generate(request))
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        first = GenerateOutput(
            request_id=request.request_id,
            model=request.model or "",
            finished=True,
            finish_reason="stop",
        )
    except BaseException:
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            with anyio.CancelScope(shield=True):
                await closer()
        raise
    return OutputStream(first, iterator)


async def start_streams(
    engine: EngineClientInterface, requests: Sequence[GenerateRequest]
) -> list[OutputStream]:
    """Submit several requests concurrently; if any fails to start, close the others."""
    results = await asyncio.gather(
        *(start_stream(engine, r) for r in requests), return_exceptions=True
    )
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    streams = [r for r in results if isinstance(r, OutputStream)]
    if failure is not None:
        for stream in streams:
            await stream.aclose()
        raise failure
    return streams


async def merge_streams(
    streams: Sequence[OutputStream],
) -> AsyncIterator[tuple[int, GenerateOutput]]:
    """Yield ``(index, delta)`` from several streams as the deltas arrive."""
    if len(streams) == 1:
        async for output in streams[0]:
            yield 0, output
        return
    queue: asyncio.Queue[tuple[int, GenerateOutput | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: OutputStream) -> None:
        try:
            async for output in stream:
                await queue.put((index, output))
        except Exception as error:
            await queue.put((index, error))
        finally:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    remaining = len(tasks)
    try:
        while remaining:
            index, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*tasks, return_exceptions=True)
            for stream in streams:
                await stream.aclose()


async def collect(stream: OutputStream) -> list[GenerateOutput]:
    """All of a stream's deltas (non-streaming responses)."""
    return [output async for output in stream]


def sse_event(data: dict[str, Any] | str) -> str:
    """One server-sent event carrying JSON (or a literal such as ``[DONE]``)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


def chunk_event(
    head: dict[str, Any], choices: list[dict[str, Any]], usage: dict[str, Any] | None = None
) -> str:
    """One SSE chunk of a streamed OpenAI completion: ``head`` (id, object, created, model),
    the choices' deltas and, on the last chunk when asked for, the usage."""
    data = {**head, "choices": choices}
    if usage is not None:
        data["usage"] = usage
    return sse_event(data)


def ndjson_line(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False) + "\n"


class StreamingBody(StreamingResponse):
    """A streaming response that stops, and closes its body iterator, when the client leaves."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream_then_stop() -> None:
                    await self.stream_response(send)
                    group.cancel_scope.cancel()

                async def watch_disconnect() -> None:
                    await self.listen_for_disconnect(receive)
                    group.cancel_scope.cancel()

                group.start_soon(stream_then_stop)
                group.start_soon(watch_disconnect)
        except OSError:
            pass  # the client went away while we were writing
        finally:
            closer = getattr(self.body_iterator, "aclose", None)
            if closer is not None:
                with anyio.CancelScope(shield=True):
                    await closer()
        if self.background is not None:
            await self.background()


async def with_first_line_field(
    lines: AsyncIterator[str], key: str, value: object
) -> AsyncIterator[str]:
    """An NDJSON stream with ``key: value`` added to its first object."""
    first = True
    async for line in lines:
        if first and line.strip():
            first = False
            data = json.loads(line)
            data[key] = value
            line = json.dumps(data, ensure_ascii=False) + "\n"
        yield line
