"""The /api routes driven by the real `ollama` client against a live server with a fake engine."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.server.conftest import LiveServer
from tests.server.test_openai_api import WEATHER_TOOL


@pytest.fixture
def api(live: LiveServer) -> Iterator[ollama.Client]:
    with ollama.Client(host=live.url) as ollama_client:
        yield ollama_client


def test_list_show_ps_version(api: ollama.Client, live: LiveServer) -> None:
    names = {m.model for m in api.list().models}
    assert {"smollm2:135m", "all-minilm:l6-v2"} <= names
    entry = next(m for m in api.list().models if m.model == "smollm2:135m")
    assert entry.details is not None and entry.details.parameter_size == "134.5M"
    shown = api.show("smollm2:135m")
    assert shown.capabilities == ["completion", "tools"]
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    assert shown.template and "FROM smollm2:135m" in (shown.modelfile or "")
    running = api.ps().models
    assert running[0].model == "smollm2:135m" and running[0].context_length == 4096
    assert httpx.get(f"{live.url}/api/version").json()["version"]


def test_chat_and_generate(api: ollama.Client, live: LiveServer) -> None:
    reply = api.chat(
        model="smollm2",
        messages=[{"role": "user", "content": "Hi"}],
        options={"temperature": 0, "num_predict": 8, "repeat_penalty": 1.1, "num_ctx": 2048},
        stream=False,
    )
    assert reply.message.content == "Hello world!" and reply.done_reason == "stop"
    assert reply.eval_count == 3 and reply.prompt_eval_count == 7
    assert reply.eval_duration == 20_000_000 and reply.total_duration
    request = live.engine.requests[0]
    assert request.explicit == {"temperature", "max_tokens", "repetition_penalty"}
    assert request.sampling.repetition_penalty == 1.1
    parts = list(
        api.chat(model="smollm2", messages=[{"role": "user", "content": "Hi"}], stream=True)
    )
    assert "".join(p.message.content or "" for p in parts) == "Hello world!"
    assert parts[-1].done and parts[-1].done_reason == "stop"
    generated = api.generate(model="smollm2", prompt="Hi", system="S", raw=False)
    assert generated.response == "Hello world!"
    assert live.engine.requests[-1].system == "S"
    streamed = list(api.generate(model="smollm2", prompt="Hi", raw=True, stream=True))
    assert "".join(p.response or "" for p in streamed) == "Hello world!"
    assert live.engine.requests[-1].raw


def test_format_and_unlimited_predict(api: ollama.Client, live: LiveServer) -> None:
    reply = api.generate(model="smollm2", prompt="Hi", format="json", options={"num_predict": -1})
    assert json.loads(reply.response) == {"ok": True}
    request = live.engine.requests[0]
    assert request.sampling.max_tokens is None and "max_tokens" in request.explicit
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    reply = api.generate(model="smollm2", prompt="Hi", format=schema)
    assert json.loads(reply.response) == {"answer": 42}


def test_chat_tool_calls(api: ollama.Client, live: LiveServer) -> None:
    reply = api.chat(
        model="smollm2",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    calls = reply.message.tool_calls or []
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == {"city": "Paris"}


def test_load_and_unload_with_empty_requests(api: ollama.Client, live: LiveServer) -> None:
    loaded = api.generate(model="smollm2", keep_alive="10m")
    assert loaded.done_reason == "load"
    assert live.engine.loaded == [("smollm2", "10m")]
    unloaded = api.chat(model="smollm2", messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload" and live.engine.unloaded == ["smollm2"]


def test_embed(api: ollama.Client, live: LiveServer) -> None:
    result = api.embed(model="all-minilm", input=["ab", "c"])
    assert [v[0] for v in result.embeddings] == [2.0, 1.0]
    legacy = api.embeddings(model="all-minilm", prompt="abc")
    assert legacy.embedding[0] == 3.0


def test_errors_are_ollama_shaped(api: ollama.Client, live: LiveServer) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        api.chat(model="missing", messages=[{"role": "user", "content": "Hi"}])
    assert missing.value.status_code == 404 and "not found" in missing.value.error
    with pytest.raises(ollama.ResponseError) as unknown:
        api.show("no-such-model")
    assert unknown.value.status_code == 404
    response = httpx.post(f"{live.url}/api/generate", json={"prompt": "x"})
    assert response.status_code == 400 and isinstance(response.json()["error"], str)
    response = httpx.post(
        f"{live.url}/api/generate", json={"model": "m", "prompt": "x", "options": {"top_p": 7}}
    )
    assert response.status_code == 400 and "options.top_p" in response.json()["error"]


def test_ndjson_framing_and_midstream_error(api: ollama.Client, live: LiveServer) -> None:
    body = {"model": "midfail", "prompt": "Hi"}
    response = httpx.post(f"{live.url}/api/generate", json=body)
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0]["response"] == "Hello" and lines[-1] == {"error": lines[-1]["error"]}


def test_copy_create_delete(api: ollama.Client, live: LiveServer) -> None:
    api.copy("smollm2:135m", "mycopy:v1")
    assert "mycopy:v1" in {m.model for m in api.list().models}
    api.delete("mycopy:v1")
    assert "mycopy:v1" not in {m.model for m in api.list().models}
    status = api.create(
        model="pirate:latest",
        from_="smollm2:135m",
        system="Talk like a pirate.",
        parameters={"temperature": 0.3},
    )
    assert status.status == "success"
    shown = api.show("pirate")
    assert "pirate" in (shown.modelfile or "") and "temperature 0.3" in (shown.parameters or "")
    api.delete("pirate")
    with pytest.raises(ollama.ResponseError) as gone:
        api.delete("pirate")
    assert gone.value.status_code == 404


def test_pull_relays_progress(
    api: ollama.Client, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_pull(source: str, *, progress: object = None) -> None:
        assert callable(progress)
        progress("downloading model.gguf", 5, 10)
        progress("downloading model.gguf", 10, 10)

    monkeypatch.setattr(live.store, "pull", fake_pull)
    updates = list(api.pull("some/repo", stream=True))
    assert [(u.status, u.completed) for u in updates] == [
        ("downloading model.gguf", 5),
        ("downloading model.gguf", 10),
        ("success", None),
    ]
