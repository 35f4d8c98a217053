"""`Client` and `AsyncClient` against a real ``llmasos serve`` with the embedded models."""

from __future__ import annotations

import asyncio

import pytest

import llmasos
from llmasos.errors import InvalidRequestError, LLMasOSError, ModelNotFoundError, NotFoundError
from llmasos.sdk.errors import APIConnectionError
from tests.sdk.conftest import Served, free_port

pytestmark = pytest.mark.model
TEXT = (
    "The Eiffel Tower is a wrought-iron tower in Paris. It was built for the 1889 World Fair "
    "and is 330 metres tall. Millions of people visit it every year."
)


def test_chat_and_generate(served: Served) -> None:
    with llmasos.Client(served.url) as client:
        reply = client.chat(
            [{"role": "user", "content": "What is the capital of France?"}],
            model="smollm2",
            max_tokens=16,
            temperature=0,
        )
        assert "Paris" in reply.text
        assert reply.usage.completion_tokens > 0 and reply.model.startswith("smollm2")
        completion = client.generate("Say hi", max_tokens=4, raw=True)
        assert completion.usage.completion_tokens <= 4


def test_stream(served: Served) -> None:
    with llmasos.Client(served.url) as client:
        chunks = list(client.chat_stream("Name a color", max_tokens=8))
        assert chunks[-1].finish_reason in ("stop", "length")
        assert "".join(c.text for c in chunks).strip()
        streamed = client.chat("Say hi", stream=True, max_tokens=4)
        assert sum(1 for _ in streamed) >= 1


def test_embed_models_and_call(served: Served) -> None:
    with llmasos.Client(served.url) as client:
        embeddings = client.embed(["hello", "world"], model="all-minilm")
        assert [len(v) for v in embeddings.vectors] == [384, 384]
        ids = {m.id for m in client.models()}
        assert "smollm2" in ids or "smollm2:latest" in ids
        summary = client.call("summarize", TEXT, method="generate", parameters={"max_tokens": 40})
        assert summary.service == "summarize" and isinstance(summary.output, str)
        assert summary.output and summary.usage.calls == 1 and summary.usage.completion_tokens
        extract = client.call("summarize", TEXT, max_sentences=1)  # extractive by default
        assert extract.output in TEXT and extract.output.count(".") == 1
        assert extract.model.startswith("all-minilm") and extract.usage.completion_tokens == 0
        label = client.call("classify", TEXT, labels=["travel", "cooking"])
        assert label.output in ("travel", "cooking")


def test_errors_are_typed_with_the_server_message(served: Served) -> None:
    with llmasos.Client(served.url) as client:
        with pytest.raises(ModelNotFoundError, match="nope"):
            client.chat("hi", model="nope", max_tokens=2)
        with pytest.raises(InvalidRequestError) as caught:
            client.call("classify", {"text": "hi"})
        assert caught.value.param == "labels"
        with pytest.raises(NotFoundError):
            client.call("no-such-service", {"text": "x"})
        with pytest.raises(InvalidRequestError, match="unknown keyword"):
            client.chat("hi", temprature=0)
    with (
        llmasos.Client(f"http://127.0.0.1:{free_port()}") as dead,
        pytest.raises(APIConnectionError),
    ):
        dead.models()
    assert issubclass(APIConnectionError, LLMasOSError)


def test_async_client(served: Served) -> None:
    async def go() -> tuple[str, list[str], object]:
        async with llmasos.AsyncClient(served.url) as client:
            reply = await client.chat(
                "What is the capital of France?", max_tokens=12, temperature=0
            )
            pieces = [c.text async for c in client.chat_stream("Say hi", max_tokens=4)]
            result = await client.call("sentiment", "I love this, it is wonderful!")
            return reply.text, pieces, result.output

    text, pieces, sentiment = asyncio.run(go())
    assert "Paris" in text and pieces
    assert sentiment in ("positive", "negative", "neutral")
