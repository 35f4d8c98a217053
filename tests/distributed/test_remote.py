"""A second LLMasOS as a remote provider of the first: both real servers on loopback.

The upstream serves the embedded SmolLM2 with authentication on; the front registers it as
``peer`` (with its key in an environment variable) and as ``peer-wrong`` (with a key it
refuses), and serves its own callers with its own keys, quotas and usage log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import Settings, load_settings
from llmasos.distributed.remote import RemoteEngineClient, RemoteProvider, RemoteRegistry
from llmasos.kernel.client import InProcessEngineClient
from llmasos.kernel.interface import EngineClientInterface
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.store import ModelStore
from llmasos.net import free_port
from llmasos.server.app import create_app
from llmasos.storage import Database, open_database
from llmasos.storage.schema import UsageRecord
from tests.server.conftest import ServerThread

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]

PEER_KEY_ENV = "LLMASOS_TEST_PEER_KEY"
WRONG_KEY_ENV = "LLMASOS_TEST_WRONG_PEER_KEY"
WRONG_KEY = "llmos-not-a-key-the-peer-knows"


@dataclass
class Pair:
    front: str
    upstream: str
    key: str
    """alice's key on the front."""
    database: Database
    """The front's database."""
    peer_key: str
    home: Path
    """The front's home (its remotes.toml)."""


@dataclass
class Node:
    """One LLMasOS with authentication on: its settings, database, keys and store."""

    settings: Settings
    database: Database
    keys: KeyManager
    store: ModelStore
    key: str
    """The key of its one user."""

    @classmethod
    def create(cls, home: Path, user: str, *, builtins: bool) -> Node:
        settings = load_settings(home=home, auth=True, threads=2, context_length=1024)
        database = open_database(settings)
        UserManager(database).create(user)
        keys = KeyManager(database)
        key = keys.create(user, "test").secret
        store = ModelStore.open(settings, builtins=builtins)
        store.list()  # registers the embedded models now, not during the first request
        return cls(settings, database, keys, store, key)

    def app(self, engine: EngineClientInterface) -> FastAPI:
        return create_app(self.settings, engine, self.store, keys=self.keys)


class EngineServerThread(ServerThread):
    """`ServerThread` that closes the engine on the server's own event loop once it has
    stopped, as ``llmasos serve`` does (its upstream connections belong to that loop)."""

    def __init__(self, app: FastAPI, engine: EngineClientInterface) -> None:
        super().__init__(app)
        self.engine = engine
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()))

    async def _serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            await self.engine.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    upstream = Node.create(tmp_path_factory.mktemp("upstream"), "front-server", builtins=True)
    # the front serves only remotes: its store is empty
    front = Node.create(tmp_path_factory.mktemp("front"), "alice", builtins=False)
    up_engine = InProcessEngineClient(upstream.settings, upstream.store)
    engine = RemoteEngineClient(front.settings, InProcessEngineClient(front.settings, front.store))
    with pytest.MonkeyPatch.context() as env:
        env.setenv(PEER_KEY_ENV, upstream.key)
        env.setenv(WRONG_KEY_ENV, WRONG_KEY)
        try:
            with EngineServerThread(upstream.app(up_engine), up_engine) as up:
                registry = RemoteRegistry.for_settings(front.settings)
                registry.add(
                    RemoteProvider.create(
                        "peer", up, model="smollm2", api_key_env=PEER_KEY_ENV, max_concurrency=2
                    )
                )
                registry.add(
                    RemoteProvider.create(
                        "peer-wrong", f"{up}/v1", model="smollm2", api_key_env=WRONG_KEY_ENV
                    )
                )
                registry.add(
                    RemoteProvider.create(
                        "peer-embed", up, model="all-minilm", api_key_env=PEER_KEY_ENV
                    )
                )
                with EngineServerThread(front.app(engine), engine) as url:
                    yield Pair(
                        url, up, front.key, front.database, upstream.key, front.settings.home
                    )
        finally:
            front.database.close()
            upstream.database.close()


@pytest.fixture
def api(pair: Pair) -> Iterator[openai.OpenAI]:
    """The openai client on the front, as alice."""
    with openai.OpenAI(base_url=f"{pair.front}/v1", api_key=pair.key, max_retries=0) as client:
        yield client


def usage_rows(database: Database) -> list[UsageRecord]:
    with database.session() as session:
        return list(session.scalars(select(UsageRecord).order_by(UsageRecord.id)).all())


def test_the_openai_client_through_the_front_plain_and_streaming_is_metered(
    pair: Pair, api: openai.OpenAI
) -> None:
    client = api
    ids = {m.id: m.owned_by for m in client.models.list().data}
    assert ids["peer"] == "remote" and ids["peer:latest"] == "remote"
    before = len(usage_rows(pair.database))

    reply = client.chat.completions.create(
        model="peer",
        messages=[{"role": "user", "content": "Say hello"}],
        max_tokens=6,
        temperature=0,
    )
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.prompt_tokens > 5
    assert 0 < reply.usage.completion_tokens <= 6  # the upstream's own count

    stream = client.chat.completions.create(
        model="peer",
        messages=[{"role": "user", "content": "Count to three"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= 6 and text

    completion = client.completions.create(model="peer", prompt="The sky is", max_tokens=4)
    assert completion.usage is not None and completion.usage.completion_tokens <= 4

    rows = usage_rows(pair.database)[before:]
    assert [(r.user_name, r.status) for r in rows] == [("alice", 200)] * 3
    assert rows[0].model.startswith("peer")
    assert (rows[0].prompt_tokens, rows[0].completion_tokens) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
    )
    assert (rows[1].prompt_tokens, rows[1].completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_ollama_chat_and_generate_through_the_front(pair: Pair) -> None:
    headers = {"Authorization": f"Bearer {pair.key}"}
    with ollama.Client(host=pair.front, headers=headers) as client:
        tags = {m.model: m for m in client.list().models}
        assert "peer:latest" in tags and tags["peer:latest"].details.format == "remote"
        reply = client.chat(
            model="peer", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 4}
        )
        assert reply.done and reply.eval_count is not None and 0 < reply.eval_count <= 4
        parts = list(
            client.generate(model="peer", prompt="Hi", stream=True, options={"num_predict": 4})
        )
        assert parts[-1].done and parts[-1].prompt_eval_count


def test_a_wrong_remote_key_is_a_502_naming_the_remote_and_never_logged(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = httpx.post(
        f"{pair.front}/v1/chat/completions",
        json={"model": "peer-wrong", "messages": [{"role": "user", "content": "Hi"}]},
        headers={"Authorization": f"Bearer {pair.key}"},
        timeout=60,
    )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["message"].startswith("remote 'peer-wrong:latest' refused the key")
    assert f"${WRONG_KEY_ENV}" in error["message"]
    assert error["code"] == "remote_auth_failed"
    assert WRONG_KEY not in caplog.text and pair.peer_key not in caplog.text
    assert WRONG_KEY not in response.text


@contextmanager
def llama_cpp_server(model: Path, log: Path) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server on a free port; its base URL."""
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server", "--model", str(model),
                "--model_alias", "smol", "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", "1024", "--n_threads", "2", "--verbose", "false",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log.read_text()[-2000:]
                try:
                    if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_llama_cpp_pythons_server_as_a_remote_counted_when_it_sends_no_usage(
    pair: Pair, api: openai.OpenAI, tmp_path: Path
) -> None:
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server extra")
    model = package_path(BUILTINS[0])
    assert model is not None
    registry = RemoteRegistry(pair.home / "remotes.toml")
    with llama_cpp_server(model, tmp_path / "llama.log") as url:
        registry.add(RemoteProvider.create("llamacpp", url, model="smol"))
        try:
            client = api
            messages: list[Any] = [{"role": "user", "content": "Say hi"}]
            reply = client.chat.completions.create(
                model="llamacpp", messages=messages, max_tokens=4
            )
            assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 4
            chunks = list(
                client.chat.completions.create(
                    model="llamacpp", messages=messages, max_tokens=4, stream=True
                )
            )
            assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        finally:
            registry.remove("llamacpp")


def test_tool_calls_pass_through_the_remote(api: openai.OpenAI) -> None:
    client = api
    city = {"type": "string", "maxLength": 20}
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": city},
                    "required": ["city"],
                },
            },
        }
    ]
    reply = client.chat.completions.create(
        model="peer",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=tools,
        tool_choice="required",
        max_tokens=60,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_embeddings_through_the_remote(pair: Pair, api: openai.OpenAI) -> None:
    before = len(usage_rows(pair.database))
    result = api.embeddings.create(model="peer-embed", input=["hello", "a longer text"])
    assert [item.index for item in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 384  # all-MiniLM-L6-v2 on the upstream
    assert result.usage.prompt_tokens > 0
    [row] = usage_rows(pair.database)[before:]
    assert row.model.startswith("peer-embed") and row.prompt_tokens == result.usage.prompt_tokens
