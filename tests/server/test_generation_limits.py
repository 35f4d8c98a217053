"""What a request may cost, over the real kernel and the embedded model: malformed chats are
refused before any token, a reply stops at the server's default cap, and a looping reply is
stopped by the repetition guard (unless the request turns it off). Real server, real clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from llmasos.config import Settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.kernel.repetition import MIN_SPAN
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from tests.server.conftest import ServerThread

pytestmark = pytest.mark.model
DEFAULT_CAP = 24
LOOP = {"1000": 100}
"""A logit bias that makes one token certain: the reply repeats it, a loop of period 1."""


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(
        home=tmp_path_factory.mktemp("limits-home"), threads=2, default_max_tokens=DEFAULT_CAP
    )
    store = ModelStore.open(settings)
    engine = InProcessEngineClient(settings, store)
    app = create_app(settings, engine, store)
    try:
        with ServerThread(app) as served:
            yield served
    finally:
        asyncio.run(engine.close())


@pytest.fixture
def api(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0) as client:
        yield client


def test_a_lone_tool_message_is_refused_before_generating(api: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(model="smollm2", messages=[{"role": "tool"}])  # type: ignore[misc,list-item]
    assert caught.value.status_code == 400
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "messages[0].tool_call_id"
    assert error["code"] == "missing_required_parameter"
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(
            model="smollm2",
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
        )
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "messages[1].role"


def test_a_tool_result_answering_the_call_before_it_is_served(api: openai.OpenAI) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    reply = api.chat.completions.create(model="smollm2", messages=messages, max_tokens=8)  # type: ignore[arg-type]
    assert reply.choices[0].finish_reason in {"stop", "length"}
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(
            model="smollm2",
            messages=[*messages[:2], {**messages[2], "tool_call_id": "call_2"}],  # type: ignore[list-item]
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "messages[2].tool_call_id"


def test_ollama_refuses_a_tool_message_that_answers_no_call(url: str) -> None:
    with ollama.Client(host=url) as client, pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="smollm2", messages=[{"role": "tool", "content": "sunny"}])
    assert caught.value.status_code == 400


def test_a_request_without_a_limit_stops_at_the_default_cap(api: openai.OpenAI) -> None:
    reply = api.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count."}],
        logit_bias=LOOP,
        extra_body={"repetition_guard": False},
    )
    choice = reply.choices[0]
    assert reply.usage is not None and reply.usage.completion_tokens == DEFAULT_CAP
    assert choice.finish_reason == "length"
    assert (
        choice.model_extra is not None and choice.model_extra["stopped_by"] == "default_max_tokens"
    )
    # a limit the caller sets is the caller's: above the default, and not "stopped_by"
    reply = api.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Count."}],
        logit_bias=LOOP,
        max_tokens=DEFAULT_CAP + 8,
        extra_body={"repetition_guard": False},
    )
    assert reply.usage is not None and reply.usage.completion_tokens == DEFAULT_CAP + 8
    assert reply.choices[0].model_extra is not None
    assert reply.choices[0].model_extra.get("stopped_by") is None


def test_the_repetition_guard_stops_a_loop_and_says_so(api: openai.OpenAI) -> None:
    reply = api.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say something."}],
        logit_bias=LOOP,
        max_tokens=MIN_SPAN * 3,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "length"
    assert choice.model_extra is not None and choice.model_extra["stopped_by"] == "repetition_guard"
    assert reply.usage is not None and reply.usage.completion_tokens == MIN_SPAN
    # streamed: the last chunk says it too
    stream = api.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say something."}],
        logit_bias=LOOP,
        max_tokens=MIN_SPAN * 3,
        stream=True,
    )
    finals = [c.choices[0] for c in stream if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].model_extra is not None
    assert finals[0].model_extra["stopped_by"] == "repetition_guard"
    # turned off for this request: the loop runs to max_tokens
    reply = api.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say something."}],
        logit_bias=LOOP,
        max_tokens=MIN_SPAN * 2,
        extra_body={"repetition_guard": False},
    )
    assert reply.usage is not None and reply.usage.completion_tokens == MIN_SPAN * 2


def test_ollama_reports_the_default_cap_and_takes_the_guard_option(url: str) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Tell me a very long story about a dragon."}],
        "stream": False,
        "options": {"repetition_guard": False, "temperature": 0},
    }
    reply = httpx.post(f"{url}/api/chat", json=body, timeout=120).json()
    assert reply["eval_count"] <= DEFAULT_CAP
    if reply["done_reason"] == "length":
        assert reply["stopped_by"] == "default_max_tokens"
    # num_predict -1 is Ollama's explicit "no limit": the server's cap does not apply
    body["options"] = {"num_predict": -1, "repetition_guard": "maybe"}
    refused = httpx.post(f"{url}/api/chat", json=body, timeout=120)
    assert refused.status_code == 400 and "repetition_guard" in json.dumps(refused.json())
