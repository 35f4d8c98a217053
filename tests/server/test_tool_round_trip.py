"""Small models finish a tool round trip: the real openai-agents SDK and the plain openai
client over /v1/chat/completions with the embedded SmolLM2-135M.

What is asserted is what the server guarantees, not what the tiny model says: the run ends
with a text answer within the turn limit, and the tool ran exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from llmasos.config import Settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from tests.server.conftest import ServerThread

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(home=tmp_path_factory.mktemp("round-trip-home"), threads=2)
    store = ModelStore.open(settings)
    engine = InProcessEngineClient(settings, store)
    app = create_app(settings, engine, store)
    try:
        with ServerThread(app) as url:
            yield f"{url}/v1"
    finally:
        asyncio.run(engine.close())


def test_openai_agents_sdk_finishes_with_a_text_answer(base_url: str) -> None:
    agents = pytest.importorskip("agents")
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        calls.append(city)
        return f"Sunny, 22 degrees Celsius in {city}."

    async def run() -> object:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0) as client:
            agent = agents.Agent(
                name="weather",
                instructions="You answer questions about the weather.",
                tools=[get_weather],
                model=agents.OpenAIChatCompletionsModel(model="smollm2", openai_client=client),
                # forced for the first turn; the SDK resets it to auto after the tool ran
                model_settings=agents.ModelSettings(tool_choice="get_weather"),
            )
            return await agents.Runner.run(agent, "What is the weather in Paris?", max_turns=4)

    agents.set_tracing_disabled(True)
    result: Any = asyncio.run(run())
    assert len(calls) == 1
    assert isinstance(result.final_output, str) and result.final_output.strip()


def test_openai_client_round_trip_and_the_repeated_call(base_url: str) -> None:
    with openai.OpenAI(base_url=base_url, api_key="none", max_retries=0) as api:
        messages: list[dict[str, object]] = [
            {"role": "system", "content": "You answer questions about the weather."},
            {"role": "user", "content": "What is the weather in Paris?"},
        ]
        first = api.chat.completions.create(
            model="smollm2",
            messages=messages,  # type: ignore[arg-type]
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=64,
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
        call = choice.message.tool_calls[0]
        assert call.function.name == "get_weather"
        city = json.loads(call.function.arguments)["city"]
        messages.append(choice.message.model_dump(exclude_none=True))
        messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": f"Sunny, 22 C in {city}."}
        )
        second = api.chat.completions.create(
            model="smollm2",
            messages=messages,  # type: ignore[arg-type]
            tools=[WEATHER_TOOL],  # type: ignore[list-item]
            tool_choice="auto",
            max_tokens=64,
        )
        answer = second.choices[0]
        repeated = [
            c
            for c in answer.message.tool_calls or []
            if c.function.name == "get_weather"
            and json.loads(c.function.arguments) == json.loads(call.function.arguments)
        ]
        assert not repeated, "a call whose result is in the conversation came back again"
        if not answer.message.tool_calls:
            assert answer.finish_reason in ("stop", "length")
            assert answer.message.content and answer.message.content.strip()
