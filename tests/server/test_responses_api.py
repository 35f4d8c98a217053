"""The Responses and Conversations endpoints over the scripted engine, with the real
``openai`` client: event order and shapes, tool calls, storage, errors."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llmasos.config import Settings
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.storage import open_database
from tests.conftest import PostgresServer
from tests.server.conftest import LiveServer, ServerThread
from tests.server.fake_engine import FakeEngineClient


@pytest.fixture
def client(live: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{live.url}/v1", api_key="none", max_retries=0) as client:
        yield client


def test_a_turn_is_appended_to_its_conversation(live: LiveServer, client: openai.OpenAI) -> None:
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "I like tea."}]
    )
    reply = client.responses.create(
        input="What do I like?", conversation=conversation.id, instructions="Be brief."
    )
    assert reply.output_text == "Hello world!" and reply.status == "completed"
    assert reply.conversation is not None and reply.conversation.id == conversation.id
    sent = live.engine.requests[-1].messages or []
    assert [m["role"] for m in sent] == ["system", "user", "user"]
    assert sent[0]["content"] == "Be brief." and sent[1]["content"] == "I like tea."
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [i.type for i in items] == ["message"] * 3
    assert items[-1].id == reply.output[0].id  # the stored output is the returned one


def test_streamed_events_follow_the_responses_protocol(client: openai.OpenAI) -> None:
    events = list(client.responses.create(input="Hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == "Hello world!"
    assert client.responses.retrieve(final.id).output_text == "Hello world!"


def test_function_calls_stream_as_items(client: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    events = list(
        client.responses.create(
            input="weather?",
            tools=[tool],
            tool_choice="required",
            stream=True,  # type: ignore[list-item]
        )
    )
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and json.loads(done[0].arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    call = events[-1].response.output[0]  # type: ignore[union-attr]
    assert call.type == "function_call" and call.name == "get_weather"


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    reply = client.responses.create(input="Hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)


def test_errors_have_openai_shape(live: LiveServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.conversations.retrieve("conv_missing")
    error = caught.value.response.json()["error"]
    assert error["type"] == "not_found_error" and "conv_missing" in error["message"]
    with pytest.raises(openai.BadRequestError):
        client.responses.create(input="Hi", conversation="conv_x", previous_response_id="resp_y")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(input=[{"type": "message", "role": "robot", "content": "x"}])
    assert caught.value.response.json()["error"]["param"] == "input[0].role"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="missing", input="Hi")
    conversation = client.conversations.create()
    response = httpx.post(
        f"{live.url}/v1/conversations/{conversation.id}/items",
        json={"items": [{"type": "message", "role": "user", "content": "y" * (1 << 20)}]},
    )
    assert response.status_code == 413
    with pytest.raises(openai.BadRequestError):
        client.conversations.create(metadata={f"k{n}": "v" for n in range(17)})


def test_a_database_down_mid_response_is_503_and_writes_nothing(
    tmp_path: Path, model_store: ModelStore, postgres_server: PostgresServer
) -> None:
    name = f"test_{uuid.uuid4().hex[:12]}"
    postgres_server.execute(f"CREATE DATABASE {name}")
    settings = Settings(home=tmp_path / "home", database_url=postgres_server.url(name))
    database = open_database(settings)
    app = create_app(settings, FakeEngineClient(), model_store, database=database)
    try:
        with ServerThread(app) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
            conversation = client.conversations.create(
                items=[{"type": "message", "role": "user", "content": "kept"}]
            )
            outcome: list[BaseException] = []

            def respond() -> None:
                try:  # the "slow" model takes 1.5 s; the database goes away meanwhile
                    client.responses.create(model="slow", input="hi", conversation=conversation.id)
                except BaseException as error:
                    outcome.append(error)

            worker = threading.Thread(target=respond)
            worker.start()
            time.sleep(0.5)
            postgres_server.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            postgres_server.execute(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            worker.join(timeout=30)
            postgres_server.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            assert len(outcome) == 1 and isinstance(outcome[0], openai.APIStatusError)
            assert outcome[0].status_code == 503
            assert outcome[0].response.json()["error"]["code"] == "database_unavailable"
            items = list(client.conversations.items.list(conversation.id))
            assert [i.content[0].text for i in items] == ["kept"]  # type: ignore[union-attr]
            client.close()
    finally:
        database.close()
        postgres_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
