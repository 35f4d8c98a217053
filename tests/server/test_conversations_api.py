"""Conversations and Responses over a real ``llmasos serve`` and the embedded model,
driven by the real ``openai`` client (including streaming)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from llmasos.bench.conversations import sixty_turns
from llmasos.models.builtin import BUILTINS, package_path
from tests.serving import llmasos_serve

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home: Path = tmp_path_factory.mktemp("conversations-home")
    with llmasos_serve(home, "--context-length", "2048") as url:
        yield url


@pytest.fixture
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0) as client:
        yield client


def test_conversation_and_items_life_cycle(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(
        metadata={"topic": "demo"},
        items=[{"type": "message", "role": "user", "content": "Hello"}],
    )
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "demo"}
    assert client.conversations.retrieve(conversation.id).id == conversation.id
    updated = client.conversations.update(conversation.id, metadata={"topic": "other"})
    assert updated.metadata == {"topic": "other"}
    added = client.conversations.items.create(
        conversation.id,
        items=[{"type": "message", "role": "user", "content": f"note {n}"} for n in range(12)],
    )
    assert len(added.data) == 12
    listed = list(client.conversations.items.list(conversation.id, limit=5, order="asc"))
    assert len(listed) == 13  # the client followed the pages
    assert [i.content[0].text for i in listed[1:]] == [f"note {n}" for n in range(12)]  # type: ignore[union-attr]
    one = client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    assert one.id == added.data[0].id
    client.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    deleted = client.conversations.delete(conversation.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError) as caught:
        client.conversations.retrieve(conversation.id)
    assert caught.value.response.json()["error"]["type"] == "not_found_error"


def test_responses_continue_a_conversation_and_stream(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    first = client.responses.create(
        model="smollm2", input="My name is Ada.", conversation=conversation.id,
        max_output_tokens=16, temperature=0,
    )  # fmt: skip
    assert first.status in ("completed", "incomplete") and first.output_text is not None
    assert first.usage is not None and first.usage.output_tokens > 0
    events = list(
        client.responses.create(
            model="smollm2", input="What is my name?", conversation=conversation.id,
            max_output_tokens=16, temperature=0, stream=True,
        )
    )  # fmt: skip
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == deltas
    assert [e.sequence_number for e in events] == list(range(len(events)))
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [i.role for i in items] == ["user", "assistant", "user", "assistant"]  # type: ignore[union-attr]
    assert items[3].content[0].text == deltas  # type: ignore[union-attr]
    stored = client.responses.retrieve(final.id)
    assert stored.output_text == deltas
    inputs = list(client.responses.input_items.list(final.id))
    assert [i.content[0].text for i in inputs] == ["What is my name?"]  # type: ignore[union-attr]
    client.responses.delete(final.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(final.id)


def test_previous_response_id_chains_without_a_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="smollm2", input="Remember the word zebra.", instructions="Be brief.",
        max_output_tokens=8, temperature=0,
    )  # fmt: skip
    second = client.responses.create(
        model="smollm2", input="Which word?", previous_response_id=first.id,
        max_output_tokens=8, temperature=0,
    )  # fmt: skip
    assert second.previous_response_id == first.id
    assert client.responses.retrieve(second.id).id == second.id


def test_json_schema_and_function_tools(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    }
    reply = client.responses.create(
        model="smollm2", input="Name a city as JSON.", max_output_tokens=40, temperature=0,
        text={"format": {"type": "json_schema", "name": "city", "schema": schema}},
    )  # fmt: skip
    jsonschema.validate(json.loads(reply.output_text), schema)
    tool = {
        "type": "function",
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
    called = client.responses.create(
        model="smollm2", input="What is the weather in Paris?", tools=[tool],  # type: ignore[list-item]
        tool_choice="required", max_output_tokens=60, temperature=0,
    )  # fmt: skip
    call = called.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert "city" in json.loads(call.arguments)
    follow = client.responses.create(
        model="smollm2", previous_response_id=called.id, max_output_tokens=16,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )  # fmt: skip
    assert follow.status in ("completed", "incomplete")


def test_bad_input_gets_openai_errors(url: str, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="smollm2", input="hi", conversation="conv_nope")
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_nope")
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list("conv_nope")
    conversation = client.conversations.create()
    big = {"type": "message", "role": "user", "content": "x" * (1 << 20)}
    response = httpx.post(f"{url}/v1/conversations/{conversation.id}/items", json={"items": [big]})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="smollm2", input="word " * 3000, conversation=conversation.id,
            max_output_tokens=16,
        )  # fmt: skip
    message = caught.value.response.json()["error"]["message"]
    assert "2048" in message and "prompt tokens" in message
    assert client.conversations.items.list(conversation.id).data == []  # nothing half-written


def test_a_fact_from_turn_one_survives_sixty_turns_on_a_2k_context(
    client: openai.OpenAI,
) -> None:
    conversation = client.conversations.create()
    turns = sixty_turns()
    originals = []
    for start in range(0, len(turns), 20):
        batch = turns[start : start + 20]
        originals += client.conversations.items.create(conversation.id, items=batch).data  # type: ignore[arg-type]
    reply = client.responses.create(
        model="smollm2", input="What is my locker code?", conversation=conversation.id,
        max_output_tokens=24, temperature=0,
    )  # fmt: skip
    extra = reply.model_extra or {}
    compaction = extra.get("compaction")
    assert compaction is not None and compaction["summarized_items"] > 0
    assert compaction["prompt_tokens_before"] + 24 > 2048 >= compaction["prompt_tokens_after"] + 24
    items = list(client.conversations.items.list(conversation.id, order="asc", limit=100))
    summaries = [i for i in items if getattr(i, "summary_through_position", None) is not None]
    assert len(summaries) == 1
    summary_text = summaries[0].content[0].text  # type: ignore[union-attr]
    # The fact reaches the model at turn 60: in the summary, or recalled from turn 1.
    assert "4812" in summary_text or originals[0].id in extra["recalled_items"]
    for original, turn in zip(originals, turns, strict=True):  # every turn is still stored
        stored = client.conversations.items.retrieve(original.id, conversation_id=conversation.id)
        assert stored.content[0].text == turn["content"][0]["text"]  # type: ignore[union-attr]
    assert len(items) == len(turns) + 3  # + the summary, the question and the answer
