"""The chat path's rule for a model that repeats a call already answered in the
conversation (tool_choice auto): the unit logic, then the /v1 API with a scripted engine
that always repeats the call, streaming and not."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from llmasos.kernel.interface import GenerateRequest
from llmasos.kernel.structured import (
    TEXT_ANSWER_GRAMMAR,
    ToolCall,
    answered_calls,
    plan_tools,
    repeats_answered_calls,
)
from tests.server.conftest import LiveServer
from tests.server.fake_engine import WEATHER_CALL
from tests.server.test_openai_api import WEATHER_TOOL

ASKED = {"role": "user", "content": "What is the weather in Paris?"}
CALLED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ],
}
ANSWERED = {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 22 C."}


def test_answered_calls_match_by_id_and_canonical_arguments() -> None:
    called = {**CALLED, "tool_calls": [{**CALLED["tool_calls"][0]}]}  # type: ignore[index]
    assert answered_calls([ASKED, called]) == set()
    found = answered_calls([ASKED, called, ANSWERED])
    assert found == {("get_weather", json.dumps({"city": "Paris"}))}
    plan = plan_tools([WEATHER_TOOL], "auto")
    same = ToolCall("get_weather", {"city": "Paris"})
    other = ToolCall("get_weather", {"city": "Oslo"})
    assert repeats_answered_calls([same], plan, found)
    assert not repeats_answered_calls([same, other], plan, found)  # a new call is progress
    assert not repeats_answered_calls([], plan, found)
    forced = plan_tools([WEATHER_TOOL], "required")
    assert not repeats_answered_calls([same], forced, found)  # forced calls are the caller's


def always_calls(request: GenerateRequest) -> list[str]:
    """A model that calls get_weather(Paris) whenever it may, and answers when it must."""
    structured = request.sampling.structured
    if structured is not None and structured.grammar == TEXT_ANSWER_GRAMMAR:
        return ["It is sunny", " in Paris."]
    if structured is not None and structured.kind == "grammar":
        return ["<tool_call>", json.dumps(WEATHER_CALL), "</tool_call>"]
    return ["Hello"]


@pytest.fixture
def api(live: LiveServer) -> Any:
    live.engine.script = always_calls
    with openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0) as client:
        yield client


def test_a_repeated_call_becomes_a_text_answer(api: openai.OpenAI, live: LiveServer) -> None:
    messages: Any = [ASKED, CALLED, ANSWERED]
    reply = api.chat.completions.create(model="smollm2", messages=messages, tools=[WEATHER_TOOL])  # type: ignore[list-item]
    choice = reply.choices[0]
    assert choice.message.content == "It is sunny in Paris."
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"
    shown = choice.model_extra["repeated_tool_calls"]  # type: ignore[index]
    assert shown[0]["function"]["name"] == "get_weather"
    assert json.loads(shown[0]["function"]["arguments"]) == {"city": "Paris"}
    assert len(live.engine.requests) == 2  # the call, then the answer asked for
    # a first call, with nothing answered yet, is a call as before
    first = api.chat.completions.create(model="smollm2", messages=[ASKED], tools=[WEATHER_TOOL])  # type: ignore[list-item]
    assert first.choices[0].finish_reason == "tool_calls"


def test_a_repeated_call_streams_as_a_text_answer(api: openai.OpenAI) -> None:
    messages: Any = [ASKED, CALLED, ANSWERED]
    stream = api.chat.completions.create(
        model="smollm2",
        messages=messages,
        tools=[WEATHER_TOOL],
        stream=True,  # type: ignore[list-item]
    )
    text, reasons, repeated = "", [], []
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            assert not choice.delta.tool_calls
            reasons.append(choice.finish_reason)
            repeated += (choice.model_extra or {}).get("repeated_tool_calls") or []
    assert text == "It is sunny in Paris." and reasons[-1] == "stop"
    assert repeated and repeated[0]["function"]["name"] == "get_weather"


RESPONSES_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
}
RESPONSES_INPUT: Any = [
    {"type": "message", "role": "user", "content": "What is the weather in Paris?"},
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 22 C."},
]


def test_responses_turn_a_repeated_call_into_a_text_answer(
    api: openai.OpenAI, live: LiveServer
) -> None:
    reply = api.responses.create(model="smollm2", input=RESPONSES_INPUT, tools=[RESPONSES_TOOL])
    assert reply.output_text == "It is sunny in Paris."
    assert [item.type for item in reply.output] == ["message"]
    shown = (reply.model_extra or {})["repeated_tool_calls"]
    assert shown[0]["name"] == "get_weather"
    assert json.loads(shown[0]["arguments"]) == {"city": "Paris"}
    assert len(live.engine.requests) == 2  # the call, then the answer asked for
    assert reply.usage is not None and reply.usage.output_tokens > 0
    first = api.responses.create(model="smollm2", input="Weather in Paris?", tools=[RESPONSES_TOOL])
    assert [item.type for item in first.output] == ["function_call"]  # nothing answered yet
    assert "repeated_tool_calls" not in (first.model_extra or {})


def test_responses_stream_a_repeated_call_as_a_text_answer(api: openai.OpenAI) -> None:
    events = list(
        api.responses.create(
            model="smollm2", input=RESPONSES_INPUT, tools=[RESPONSES_TOOL], stream=True
        )
    )
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.done" not in kinds
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == "It is sunny in Paris."  # type: ignore[union-attr]
    extra = done.response.model_extra or {}  # type: ignore[union-attr]
    assert extra["repeated_tool_calls"][0]["name"] == "get_weather"
