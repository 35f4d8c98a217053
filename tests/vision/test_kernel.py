"""The kernel with images: the real engine loop, scheduler and transformers backend serving
the tiny Idefics3 of `tiny_vlm` from the store, and the embedded text model beside it.

A KV pool smaller than two requests forces a preemption; the preempted image request is
re-added with what it had generated and must finish with the tokens it gives alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, UnsupportedError
from llmasos.kernel.client import InProcessEngineClient
from llmasos.kernel.interface import GenerateOutput, GenerateRequest
from llmasos.kernel.media import image_part, text_part
from llmasos.models.store import ModelStore
from llmasos.types import SamplingParams
from tests.vision.tiny_vlm import TOKENS_PER_IMAGE, png

pytest.importorskip("transformers")

RED, BLUE = png((230, 20, 20)), png((20, 20, 230))
TOKENS = 200


@pytest.fixture(scope="module")
def engine(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessEngineClient]:
    # room for one request's 20 prompt and 200 generated tokens, not for two
    settings = Settings(
        home=tmp_path_factory.mktemp("vision-kernel"),
        threads=1,
        context_length=256,
        kv_cache_tokens=256,
    )
    store = ModelStore.open(settings)
    store.import_path(model_dir, "tiny-vlm")
    client = InProcessEngineClient(settings, store)
    yield client
    asyncio.run(client.close())


def asking(model: str, *images: bytes) -> GenerateRequest:
    return GenerateRequest(
        model=model,
        messages=[
            {"role": "user", "content": [text_part("What is this?"), *map(image_part, images)]}
        ],
        sampling=SamplingParams(temperature=0, max_tokens=TOKENS, ignore_eos=True),
        explicit=frozenset({"temperature", "max_tokens"}),
    )


async def tokens_of(stream: AsyncIterator[GenerateOutput]) -> list[int]:
    tokens: list[int] = []
    async for output in stream:
        tokens.extend(t.token_id for t in output.tokens)
    return tokens


def test_images_are_prompt_tokens_and_text_models_refuse_them(
    engine: InProcessEngineClient,
) -> None:
    async def run() -> None:
        one = await engine.count_prompt(asking("tiny-vlm", RED))
        two = await engine.count_prompt(asking("tiny-vlm", RED, BLUE))
        assert two.prompt_tokens == one.prompt_tokens + TOKENS_PER_IMAGE
        with pytest.raises(UnsupportedError, match="cannot see images"):
            await tokens_of(engine.generate(asking("smollm2", RED)))
        broken = GenerateRequest(
            model="tiny-vlm", messages=[{"role": "user", "content": [{"type": "image"}]}]
        )
        with pytest.raises(InvalidRequestError, match="must carry the image file's bytes"):
            await tokens_of(engine.generate(broken))

    asyncio.run(run())


def test_a_preempted_image_request_resumes_with_its_image(engine: InProcessEngineClient) -> None:
    async def run() -> tuple[list[int], list[int], list[list[int]]]:
        red = await tokens_of(engine.generate(asking("tiny-vlm", RED)))
        blue = await tokens_of(engine.generate(asking("tiny-vlm", BLUE)))
        together = await asyncio.gather(
            tokens_of(engine.generate(asking("tiny-vlm", RED))),
            tokens_of(engine.generate(asking("tiny-vlm", BLUE))),
        )
        return red, blue, list(together)

    registry = engine.metrics_registry
    assert registry is not None
    before = (
        registry.get_sample_value("vllm:num_preemptions_total", {"model_name": "tiny-vlm:latest"})
        or 0.0
    )
    red, blue, together = asyncio.run(run())
    after = registry.get_sample_value(
        "vllm:num_preemptions_total", {"model_name": "tiny-vlm:latest"}
    )
    assert len(red) == TOKENS and red != blue
    assert together == [red, blue]
    assert after is not None and after > before
