"""The kernel client with the real embedded model: batching, cancellation, residency, admission."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmasos.config import Settings, load_settings
from llmasos.errors import ContextLengthExceededError, QueueFullError, RequestTimeoutError
from llmasos.kernel.client import InProcessEngineClient
from llmasos.kernel.interface import GenerateOutput, GenerateRequest
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.types import SamplingParams

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]

PROMPTS = [
    "What is the capital of France?",
    "Name three colours.",
    "Write one sentence about the sea.",
    "What is 2 + 2?",
]


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"home": tmp_path / "home", "threads": 2, "context_length": 1024}
    values.update(overrides)
    return load_settings(**values)


def greedy(prompt: str, max_tokens: int = 16, **fields: Any) -> GenerateRequest:
    return GenerateRequest(
        model="smollm2",
        messages=[{"role": "user", "content": prompt}],
        sampling=SamplingParams(temperature=0, max_tokens=max_tokens),
        explicit=frozenset({"temperature", "max_tokens"}),
        **fields,
    )


async def collect(stream: AsyncIterator[GenerateOutput]) -> tuple[str, GenerateOutput]:
    text = []
    last = None
    async for output in stream:
        text.append(output.text)
        last = output
    assert last is not None and last.finished
    return "".join(text), last


def test_concurrent_greedy_equals_one_at_a_time(tmp_path: Path) -> None:
    async def main() -> None:
        client = InProcessEngineClient(make_settings(tmp_path))
        try:
            alone = [(await collect(client.generate(greedy(p))))[0] for p in PROMPTS]
            together = await asyncio.gather(*(collect(client.generate(greedy(p))) for p in PROMPTS))
            assert [text for text, _ in together] == alone
            assert all(text for text in alone)
            assert "Paris" in alone[0]
            last = together[0][1]
            assert last.prompt_tokens > 0 and 0 < last.completion_tokens <= 16
        finally:
            await client.close()

    asyncio.run(main())


def test_default_parameters_answer_the_capital_of_france(tmp_path: Path) -> None:
    async def main() -> None:
        client = InProcessEngineClient(make_settings(tmp_path))
        try:
            request = GenerateRequest(
                model="smollm2",
                messages=[{"role": "user", "content": "What is the capital of France?"}],
            )
            for _ in range(3):  # sampled at the model's default temperature
                text, _ = await collect(client.generate(request.__class__(**vars(request))))
                assert "Paris" in text
        finally:
            await client.close()

    asyncio.run(main())


def test_cancelled_stream_frees_its_sequence(tmp_path: Path) -> None:
    async def main() -> None:
        client = InProcessEngineClient(make_settings(tmp_path, max_batch_size=1))
        try:
            stream = client.generate(greedy("Tell me a very long story.", max_tokens=400))
            await stream.__anext__()
            await stream.__anext__()
            await stream.aclose()  # the client went away
            _, last = await collect(client.generate(greedy("What is 2 + 2?", 8)))
            assert last.finish_reason in ("stop", "length")
            engine = client.models.loaded["smollm2:135m"].engine
            assert engine is not None
            for _ in range(100):
                if engine.snapshot() == (0, 0):
                    break
                await asyncio.sleep(0.01)
            assert engine.snapshot() == (0, 0)
            assert engine.kv_cache.used_tokens == 0
        finally:
            await client.close()

    asyncio.run(main())


def test_keep_alive_zero_unloads_after_the_request(tmp_path: Path) -> None:
    async def main() -> None:
        client = InProcessEngineClient(make_settings(tmp_path))
        try:
            await collect(client.generate(greedy("Hi", 4, keep_alive=0)))
            for _ in range(200):
                if not client.resident_models():
                    break
                await asyncio.sleep(0.02)
            assert client.resident_models() == []
            await collect(client.generate(greedy("Hi", 4)))
            (resident,) = client.resident_models()
            assert resident.name == "smollm2:135m" and resident.backend == "llama.cpp"
            assert resident.expires_at is not None and resident.expires_at > time.time() + 200
        finally:
            await client.close()

    asyncio.run(main())


def test_prompt_longer_than_the_context_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        client = InProcessEngineClient(make_settings(tmp_path, context_length=256))
        try:
            with pytest.raises(ContextLengthExceededError) as caught:
                await client.generate(greedy("word " * 400)).__anext__()
            assert "256" in caught.value.message
            with pytest.raises(ContextLengthExceededError) as caught:
                await client.generate(greedy("Hello", max_tokens=300)).__anext__()
            assert "300" in caught.value.message and "256" in caught.value.message
        finally:
            await client.close()

    asyncio.run(main())


def test_full_queue_refuses_with_retry_hint(tmp_path: Path) -> None:
    async def main() -> None:
        client = InProcessEngineClient(make_settings(tmp_path, max_batch_size=1, max_queue=1))
        try:
            running = client.generate(greedy("Tell me a long story.", max_tokens=300))
            await running.__anext__()
            waiting = asyncio.ensure_future(client.generate(greedy("Hi", 4)).__anext__())
            engine = client.models.loaded["smollm2:135m"].engine
            assert engine is not None
            for _ in range(200):
                if engine.snapshot()[1] == 1:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(QueueFullError) as caught:
                await client.generate(greedy("Hi", 4)).__anext__()
            assert caught.value.retry_after is not None and caught.value.status_code == 503
            await running.aclose()
            first = await waiting
            assert first.request_id
        finally:
            await client.close()

    asyncio.run(main())


def test_request_timeout_ends_with_an_error(tmp_path: Path) -> None:
    async def main() -> None:
        client = InProcessEngineClient(make_settings(tmp_path))
        try:
            await client.load("smollm2")
            with pytest.raises(RequestTimeoutError):
                await collect(client.generate(greedy("Tell a story.", 400, timeout=0.3)))
        finally:
            await client.close()

    asyncio.run(main())


def test_ignore_eos_generates_exactly_max_tokens_without_control_text(tmp_path: Path) -> None:
    async def main() -> None:
        client = InProcessEngineClient(make_settings(tmp_path))
        try:
            request = greedy("Say hi.", 40)
            request.sampling = request.sampling.with_changes(ignore_eos=True)
            request.explicit = request.explicit | {"ignore_eos"}
            text, last = await collect(client.generate(request))
            assert last.completion_tokens == 40 and last.finish_reason == "length"
            assert "<|im_end|>" not in text and "<|im_start|>" not in text
        finally:
            await client.close()

    asyncio.run(main())


def test_a_conversations_earlier_turns_come_from_the_prefix_cache(tmp_path: Path) -> None:
    async def main() -> None:
        client = InProcessEngineClient(make_settings(tmp_path))
        try:
            first = greedy("What is the capital of France?", 12)
            answer, _ = await collect(client.generate(first))
            assert first.messages is not None
            follow_up = greedy("And of Italy?", 12)
            follow_up.messages = [
                *first.messages,
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "And of Italy?"},
            ]
            _, last = await collect(client.generate(follow_up))
            assert last.cached_tokens > 10
            assert last.cached_tokens < last.prompt_tokens
        finally:
            await client.close()

    asyncio.run(main())
