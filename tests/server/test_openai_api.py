"""The /v1 API driven by the real `openai` client against a live server with a fake engine."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.server.conftest import LiveServer

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def client(live: LiveServer) -> openai.OpenAI:
    api = openai.OpenAI(base_url=f"{live.url}/v1", api_key="none", max_retries=0)
    _clients.append(api)
    return api


def test_chat_completion_sync(live: LiveServer) -> None:
    reply = client(live).chat.completions.create(
        model="smollm2:135m",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ],
        temperature=0.2,
        max_tokens=5,
        user="alice",
    )
    assert reply.choices[0].message.content == "Hello world!"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == 7
    assert reply.usage.completion_tokens == 3 and reply.usage.total_tokens == 10
    request = live.engine.requests[0]
    assert request.tenant == "alice"
    assert request.messages is not None and request.messages[1]["content"] == "Hi"
    assert request.explicit == {"temperature", "max_tokens"}
    assert request.apply_model_defaults


def test_chat_completion_async(live: LiveServer) -> None:
    async def run() -> str | None:
        async with openai.AsyncOpenAI(
            base_url=f"{live.url}/v1", api_key="none", max_retries=0
        ) as aclient:
            reply = await aclient.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": "Hi"}]
            )
            return reply.choices[0].message.content

    assert asyncio.run(run()) == "Hello world!"


def test_chat_stream_with_usage(live: LiveServer) -> None:
    stream = client(live).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 10


def test_sse_framing_ends_with_done(live: LiveServer) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "stream": True}
    response = httpx.post(f"{live.url}/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"


def test_n_choices_run_concurrently(live: LiveServer) -> None:
    reply = client(live).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hi"}], n=2, seed=5
    )
    assert [c.index for c in reply.choices] == [0, 1]
    assert reply.usage is not None and reply.usage.completion_tokens == 6
    assert sorted(r.sampling.seed for r in live.engine.requests) == [5, 6]
    stream = client(live).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hi"}], n=2, stream=True
    )
    texts = {0: "", 1: ""}
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "Hello world!", 1: "Hello world!"}


def test_logprobs(live: LiveServer) -> None:
    reply = client(live).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Hi"}],
        logprobs=True,
        top_logprobs=2,
    )
    content = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and [t.token for t in content] == ["Hello", " world", "!"]
    assert content[0].logprob == -0.25 and len(content[0].top_logprobs) == 2
    assert live.engine.requests[0].sampling.logprobs == 2


def test_response_format_json_schema(live: LiveServer) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    reply = client(live).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": schema, "strict": True},
        },
    )
    assert json.loads(reply.choices[0].message.content or "") == {"answer": 42}
    structured = live.engine.requests[0].sampling.structured
    assert structured is not None and structured.kind == "json_schema"
    assert structured.schema == schema


@pytest.mark.parametrize(
    "tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_required_tool_call(live: LiveServer, tool_choice: object) -> None:
    reply = client(live).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice=tool_choice,  # type: ignore[arg-type]
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert live.engine.requests[0].tools is not None


def test_auto_tool_call_streams(live: LiveServer) -> None:
    stream = client(live).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    reasons = []
    for chunk in stream:
        for choice in chunk.choices:
            reasons.append(choice.finish_reason)
            for delta in choice.delta.tool_calls or []:
                entry = calls.setdefault(delta.index, {"name": "", "arguments": ""})
                entry["name"] += delta.function.name or ""  # type: ignore[union-attr]
                entry["arguments"] += delta.function.arguments or ""  # type: ignore[union-attr]
    assert reasons[-1] == "tool_calls"
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    structured = live.engine.requests[0].sampling.structured
    assert structured is not None and structured.kind == "grammar"


def test_auto_tool_plain_answer_is_content(live: LiveServer) -> None:
    reply = client(live).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Hi"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="auto",
    )
    assert reply.choices[0].message.content == "Hello world!"
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason == "stop"


def test_completions_echo_and_prompt_list(live: LiveServer) -> None:
    reply = client(live).completions.create(
        model="smollm2", prompt=["A", "B"], echo=True, max_tokens=3, logprobs=1
    )
    assert [c.text for c in reply.choices] == ["AHello world!", "BHello world!"]
    assert all(r.raw and r.prompt in ("A", "B") for r in live.engine.requests)
    assert reply.choices[0].logprobs is not None
    assert reply.choices[0].logprobs.text_offset == [1, 6, 12]
    stream = client(live).completions.create(
        model="smollm2", prompt="A", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello world!"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_embeddings_float_and_base64(live: LiveServer) -> None:
    api = client(live)
    reply = api.embeddings.create(model="all-minilm", input=["ab", "c"], encoding_format="float")
    assert [d.embedding[0] for d in reply.data] == [2.0, 1.0]
    assert reply.usage.prompt_tokens == 6
    raw = httpx.post(
        f"{live.url}/v1/embeddings", json={"input": "abc", "encoding_format": "base64"}
    ).json()
    decoded = struct.unpack("<4f", base64.b64decode(raw["data"][0]["embedding"]))
    assert decoded == (3.0, 1.0, 0.5, -0.25)
    shortened = api.embeddings.create(model="all-minilm", input="abc", dimensions=2)
    assert len(shortened.data[0].embedding) == 2


def test_models_list_and_retrieve(live: LiveServer) -> None:
    api = client(live)
    ids = {m.id for m in api.models.list()}
    assert {"smollm2:135m", "smollm2:latest", "smollm2", "all-minilm:l6-v2"} <= ids
    assert api.models.retrieve("smollm2:135m").id == "smollm2:135m"
    with pytest.raises(openai.NotFoundError):
        api.models.retrieve("no-such-model")


def test_errors_have_openai_shape_and_status(live: LiveServer) -> None:
    api = client(live)
    messages = [{"role": "user", "content": "Hi"}]
    with pytest.raises(openai.NotFoundError) as not_found:
        api.chat.completions.create(model="missing", messages=messages)  # type: ignore[arg-type]
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_long:
        api.chat.completions.create(model="too-long", messages=messages)  # type: ignore[arg-type]
    assert too_long.value.code == "context_length_exceeded"
    assert "4096" in str(too_long.value.message)
    with pytest.raises(openai.BadRequestError) as bad_param:
        api.chat.completions.create(model="x", messages=messages, temperature=5)  # type: ignore[arg-type]
    assert bad_param.value.param == "temperature"
    with pytest.raises(openai.InternalServerError) as busy:
        api.chat.completions.create(model="busy", messages=messages, stream=True)  # type: ignore[arg-type]
    assert busy.value.status_code == 503
    assert busy.value.response.headers["retry-after"] == "2"


def test_malformed_and_oversized_bodies(live: LiveServer) -> None:
    url = f"{live.url}/v1/chat/completions"
    response = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    response = httpx.post(url, json={"messages": []})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
    response = httpx.post(url, content=b"x" * (65 * 1024))
    assert response.status_code == 413
    response = httpx.post(
        url, json={"messages": [{"role": "user", "content": "x"}], "logit_bias": {"a": 1}}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "logit_bias"
    assert httpx.get(f"{live.url}/v1/nothing").status_code == 404


def test_error_mid_stream_ends_with_error_event(live: LiveServer) -> None:
    stream = client(live).chat.completions.create(
        model="midfail", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    with pytest.raises(openai.APIError, match="deadline"):
        for _ in stream:
            pass


def test_client_disconnect_closes_engine_iterator(live: LiveServer) -> None:
    body = {"model": "slow", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with httpx.stream("POST", f"{live.url}/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and "Hello" in line:
                break
    deadline = time.monotonic() + 5
    while not live.engine.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.engine.closed == [live.engine.requests[0].request_id]
