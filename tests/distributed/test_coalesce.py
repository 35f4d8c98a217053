"""Coalescing a request's deltas before they cross Ray: nothing lost, reordered or repeated.

The logic is pure asyncio, so most tests drive it with a plain async iterator whose deltas
the test releases; the last one runs it over the real kernel and the embedded model and
compares what came out with every delta the kernel produced, token for token. No Ray.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmasos.config import load_settings
from llmasos.distributed.coalesce import coalesce, merge
from llmasos.errors import BackendUnavailableError
from llmasos.kernel.client import InProcessEngineClient
from llmasos.kernel.interface import GenerateOutput, GenerateRequest, TokenInfo
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.store import ModelStore
from llmasos.types import SamplingParams

GUARD = 30.0
"""A hang guard only (the tests never wait on the clock): seconds before a test gives up."""


def token(n: int) -> TokenInfo:
    return TokenInfo(token_id=n, text=f"t{n}", logprob=-n / 10, top_logprobs=((f"t{n}", -0.1),))


def deltas(count: int) -> list[GenerateOutput]:
    """A request's deltas as the kernel sends them: the prompt on the first, one token each,
    then a final delta with the finish fields, counts and timings (and a last bit of text)."""
    outputs = [
        GenerateOutput(
            request_id="r1",
            model="m",
            text=f"w{n} ",
            tokens=[token(n)],
            prompt="PROMPT" if n == 0 else None,
        )
        for n in range(count)
    ]
    outputs.append(
        GenerateOutput(
            request_id="r1",
            model="m",
            text="!",
            finished=True,
            finish_reason="length",
            stopped_by="repetition_guard",
            prompt_tokens=7,
            completion_tokens=count,
            cached_tokens=3,
            queue_seconds=0.5,
            prompt_seconds=0.25,
            generation_seconds=2.0,
        )
    )
    return outputs


class Released:
    """An async iterator of deltas the test hands out in batches (`release`), like a kernel
    whose engine steps the test controls; it records whether it was closed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[GenerateOutput | Exception] = asyncio.Queue()
        self.closed = False

    def release(self, *items: GenerateOutput | Exception) -> None:
        for item in items:
            self.queue.put_nowait(item)

    async def stream(self) -> AsyncIterator[GenerateOutput]:
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
                if item.finished:
                    return
        finally:
            self.closed = True


def assert_same_reply(merged: list[GenerateOutput], unmerged: list[GenerateOutput]) -> None:
    """Token for token the same reply: text, tokens with their logprobs, prompt, and the
    final delta's fields."""
    assert "".join(o.text for o in merged) == "".join(o.text for o in unmerged)
    assert [t for o in merged for t in o.tokens] == [t for o in unmerged for t in o.tokens]
    assert [o.prompt for o in merged if o.prompt] == [o.prompt for o in unmerged if o.prompt]
    assert merged[-1].finished and not any(o.finished for o in merged[:-1])
    final, expected = merged[-1], unmerged[-1]
    for field in (
        "finish_reason",
        "stopped_by",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "queue_seconds",
        "prompt_seconds",
        "generation_seconds",
        "request_id",
        "model",
    ):
        assert getattr(final, field) == getattr(expected, field), field


def test_merge_joins_text_and_tokens_and_keeps_the_first_prompt_and_the_last_finish() -> None:
    outputs = deltas(4)
    merged = merge(outputs)
    assert_same_reply([merged], outputs)
    assert merged.text == "w0 w1 w2 w3 !"
    assert [t.token_id for t in merged.tokens] == [0, 1, 2, 3]
    assert merged.tokens[2].top_logprobs == (("t2", -0.1),)
    assert merged.prompt == "PROMPT"
    assert merge(outputs[:1]) is outputs[0]
    assert merge(outputs[1:3]).prompt is None and not merge(outputs[1:3]).finished


def test_what_piles_up_while_the_consumer_is_busy_goes_out_as_one_item() -> None:
    async def run() -> list[GenerateOutput]:
        source = Released()
        outputs = deltas(6)
        coalesced = coalesce(source.stream(), 0.0)
        items = []
        source.release(*outputs[:3])  # three engine steps before the consumer looks
        items.append(await anext(coalesced))
        source.release(outputs[3])
        items.append(await anext(coalesced))
        source.release(*outputs[4:])  # the last two tokens and the final delta
        items.append(await anext(coalesced))
        with pytest.raises(StopAsyncIteration):
            await anext(coalesced)
        assert source.closed
        return items

    items = asyncio.run(asyncio.wait_for(run(), GUARD))
    outputs = deltas(6)
    assert [[t.token_id for t in i.tokens] for i in items] == [[0, 1, 2], [3], [4, 5]]
    assert_same_reply(items, outputs)


def test_a_consumer_that_keeps_up_gets_every_delta_as_it_came() -> None:
    async def run() -> list[GenerateOutput]:
        source = Released()
        coalesced = coalesce(source.stream(), 0.0)
        items = []
        for output in deltas(5):
            source.release(output)
            items.append(await anext(coalesced))
        return items

    items = asyncio.run(asyncio.wait_for(run(), GUARD))
    assert items == deltas(5)


def test_with_an_interval_the_first_delta_goes_at_once_and_the_finish_flushes_the_rest() -> None:
    """An interval far longer than the test: only the first delta and the request's end can
    make an item go out, so the reply arrives as exactly two items."""

    async def run() -> list[GenerateOutput]:
        source = Released()
        coalesced = coalesce(source.stream(), 3600.0)
        source.release(deltas(8)[0])
        first = await anext(coalesced)
        following = asyncio.ensure_future(anext(coalesced))
        for output in deltas(8)[1:]:
            source.release(output)
            await asyncio.sleep(0)  # one engine step at a time
            assert not following.done() or following.result().finished
        return [first, await following]

    items = asyncio.run(asyncio.wait_for(run(), GUARD))
    assert [t.token_id for t in items[0].tokens] == [0]
    assert [t.token_id for t in items[1].tokens] == list(range(1, 8))
    assert_same_reply(items, deltas(8))


def test_an_error_comes_after_the_deltas_that_preceded_it() -> None:
    async def run() -> tuple[list[GenerateOutput], BaseException | None]:
        source = Released()
        coalesced = coalesce(source.stream(), 0.0)
        error = BackendUnavailableError("the backend went away")
        source.release(*deltas(4)[:3], error)
        items: list[GenerateOutput] = []
        try:
            async for item in coalesced:
                items.append(item)
        except BackendUnavailableError as raised:
            return items, raised
        return items, None

    items, raised = asyncio.run(asyncio.wait_for(run(), GUARD))
    assert isinstance(raised, BackendUnavailableError)
    assert [t.token_id for i in items for t in i.tokens] == [0, 1, 2]
    assert "".join(i.text for i in items) == "w0 w1 w2 "


def test_closing_the_coalesced_stream_closes_the_source() -> None:
    """The caller went away (Ray cancelled the generator): the kernel must hear of it."""

    async def run() -> Released:
        source = Released()
        coalesced = coalesce(source.stream(), 0.0)
        source.release(deltas(5)[0])
        await anext(coalesced)
        await coalesced.aclose()
        return source

    assert asyncio.run(asyncio.wait_for(run(), GUARD)).closed


def test_cancelling_the_consumer_closes_the_source() -> None:
    async def run() -> Released:
        source = Released()

        async def consume() -> None:
            async for _ in coalesce(source.stream(), 0.0):
                pass

        task = asyncio.ensure_future(consume())
        source.release(deltas(5)[0])
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return source

    assert asyncio.run(asyncio.wait_for(run(), GUARD)).closed


@pytest.mark.model
@pytest.mark.skipif(
    any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
)
def test_the_kernels_real_deltas_merged_equal_the_unmerged_ones(tmp_path: Path) -> None:
    """The embedded model through the real kernel, with logprobs and the server's default
    output cap (the final delta says ``stopped_by: default_max_tokens``); the consumer takes
    the first item, then waits until the kernel has produced the whole reply, so the rest
    arrives as one item holding every delta the kernel produced after the first."""
    settings = load_settings(
        home=tmp_path / "home", threads=2, context_length=512, default_max_tokens=24
    )
    engine = InProcessEngineClient(settings, ModelStore.open(settings))
    request = GenerateRequest(
        model="smollm2",
        messages=[{"role": "user", "content": "Name five rivers of Europe."}],
        sampling=SamplingParams(temperature=0, logprobs=2),
        explicit=frozenset({"temperature", "logprobs"}),
    )

    async def run() -> tuple[list[GenerateOutput], list[GenerateOutput]]:
        produced: list[GenerateOutput] = []
        done = asyncio.Event()

        async def tap() -> AsyncIterator[GenerateOutput]:
            async for output in engine.generate(request):
                produced.append(output)
                if output.finished:
                    done.set()
                yield output

        coalesced = coalesce(tap(), 0.0)
        items = [await anext(coalesced)]
        await done.wait()
        items.extend([item async for item in coalesced])
        await engine.close()
        return items, produced

    items, produced = asyncio.run(run())
    assert len(produced) == 25 and len(items) <= 2  # 24 token deltas and the final one
    assert_same_reply(items, produced)
    assert items[-1].stopped_by == "default_max_tokens" and items[-1].completion_tokens == 24
    assert all(t.logprob is not None and len(t.top_logprobs) == 2 for i in items for t in i.tokens)
