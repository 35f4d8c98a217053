"""``/v1/services``: listing, calling, errors — on the fake engine and on the real model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmasos.config import Settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.services.quality import quality_path, record_quality
from tests.server.conftest import LiveServer, ServerThread

USER_SERVICE = """
name: shout
description: Repeat a text in capitals.
text_input: text
input_schema:
  type: object
  properties:
    text: {type: string, minLength: 1}
  required: [text]
prompt: "Repeat in capitals: {{ text }}"
parameters: {max_tokens: 20}
"""


def test_list_includes_builtins_and_user_yaml(live: LiveServer) -> None:
    folder = live.settings.home / "services"
    folder.mkdir(exist_ok=True)
    (folder / "shout.yaml").write_text(USER_SERVICE)
    try:
        data = httpx.get(f"{live.url}/v1/services").json()
    finally:
        (folder / "shout.yaml").unlink()
    names = {s["name"]: s for s in data["data"]}
    assert {"summarize", "classify", "extract", "shout"} <= set(names)
    assert names["translate"]["input_schema"]["required"] == ["text", "target_language"]
    assert names["summarize"]["description"]


def test_call_returns_service_model_output_usage(live: LiveServer) -> None:
    reply = httpx.post(
        f"{live.url}/v1/services/summarize",
        json={
            "text": "A text.",
            "model": "smollm2",
            "parameters": {"max_tokens": 9},
            "method": "generate",
        },
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"service", "model", "output", "usage"}
    assert body["output"] == "Hello world!" and body["usage"]["calls"] == 1
    request = live.engine.requests[-1]
    assert request.model == "smollm2" and request.sampling.max_tokens == 9


def test_an_unknown_method_is_400_naming_the_methods(live: LiveServer) -> None:
    reply = httpx.post(
        f"{live.url}/v1/services/summarize", json={"text": "A text.", "method": "abstractive"}
    )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "method" and "extractive, generate" in error["message"]


def test_bad_input_is_400_naming_the_field(live: LiveServer) -> None:
    reply = httpx.post(f"{live.url}/v1/services/classify", json={"text": "hi"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "labels" and "labels" in error["message"]
    assert error["type"] == "invalid_request_error"
    reply = httpx.post(f"{live.url}/v1/services/summarize", json={"text": "x", "parameters": 3})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "parameters"
    reply = httpx.post(f"{live.url}/v1/services/summarize", content=b"[1, 2]",
                       headers={"Content-Type": "application/json"})  # fmt: skip
    assert reply.status_code == 400


def test_info_reports_the_last_measured_quality(live: LiveServer) -> None:
    assert httpx.get(f"{live.url}/v1/services/translate").json()["quality"] is None
    entry = {
        "dataset": "translate.jsonl",
        "items": 40,
        "metric": "chrF",
        "value": 30.5,
        "baseline": 20.1,
        "plain_chat": 25.0,
        "model": "smollm2:135m",
        "date": "2026-12-02T08:00:00Z",
    }
    record_quality(live.settings.home, "translate", entry)
    try:
        info = httpx.get(f"{live.url}/v1/services/translate").json()
        assert info["quality"] == entry and info["split"] == "sentences"
        listed = {s["name"]: s for s in httpx.get(f"{live.url}/v1/services").json()["data"]}
        assert listed["translate"]["quality"] == entry and listed["summarize"]["quality"] is None
    finally:
        quality_path(live.settings.home).unlink()


def test_unknown_service_is_404(live: LiveServer) -> None:
    reply = httpx.post(f"{live.url}/v1/services/nope", json={"text": "x"})
    assert reply.status_code == 404 and "summarize" in reply.json()["error"]["message"]
    assert httpx.get(f"{live.url}/v1/services/nope").status_code == 404


@pytest.fixture(scope="module")
def real_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("svc-real-home")
    settings = Settings(home=home, threads=2, context_length=512)
    store = ModelStore.open(settings)
    engine = InProcessEngineClient(settings, store)
    app = create_app(settings, engine, store)
    try:
        with ServerThread(app) as url:
            yield url, home
    finally:
        asyncio.run(engine.close())


@pytest.mark.model
def test_real_classify_and_user_service(real_url: tuple[str, Path]) -> None:
    url, home = real_url
    labels = ["weather", "food"]
    reply = httpx.post(
        f"{url}/v1/services/classify",
        json={"text": "It will rain all day tomorrow.", "labels": labels},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["output"] in labels
    assert set(body["details"]["probabilities"]) == set(labels)
    assert sum(body["details"]["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    (home / "services").mkdir(exist_ok=True)
    (home / "services" / "shout.yaml").write_text(USER_SERVICE)
    reply = httpx.post(f"{url}/v1/services/shout", json={"text": "hello"}, timeout=120)
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] <= 20
