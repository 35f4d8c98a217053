"""Health, root, metrics, request ids, CORS and the OpenAPI document."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter

from llmasos.config import Settings
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.server.context import current_request_id
from tests.server.conftest import LiveServer
from tests.server.fake_engine import FakeEngineClient


def test_root_and_health(live: LiveServer) -> None:
    assert httpx.get(f"{live.url}/").text == "LLMasOS is running"
    assert httpx.head(f"{live.url}/").status_code == 200
    assert httpx.get(f"{live.url}/health").json() == {"status": "ok"}
    live.engine.ready = False
    response = httpx.get(f"{live.url}/health")
    assert response.status_code == 503


def test_request_id_echoed_or_generated(live: LiveServer) -> None:
    given = httpx.get(f"{live.url}/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    fresh = httpx.get(f"{live.url}/health")
    assert len(fresh.headers["x-request-id"]) == 32
    body = {"messages": [{"role": "user", "content": "Hi"}]}
    httpx.post(f"{live.url}/v1/chat/completions", json=body, headers={"X-Request-ID": "req-9"})
    assert live.engine.requests[0].request_id == "req-9"
    error = httpx.post(f"{live.url}/v1/chat/completions", json={}, headers={"X-Request-ID": "e1"})
    assert error.status_code == 400 and error.headers["x-request-id"] == "e1"


def test_request_id_in_log_records(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    async def recording_embed(model: str | None, texts: object) -> object:
        logging.getLogger("llmasos.test").warning("embedding")
        seen.append(current_request_id())
        raise RuntimeError("boom")

    monkeypatch.setattr(live.engine, "embed", recording_embed)
    with caplog.at_level(logging.WARNING):
        response = httpx.post(
            f"{live.url}/v1/embeddings", json={"input": "x"}, headers={"X-Request-ID": "log-1"}
        )
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal"
    assert seen == ["log-1"]
    assert any(getattr(r, "request_id", None) == "log-1" for r in caplog.records)


def test_metrics(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert httpx.get(f"{live.url}/metrics").status_code == 200
    registry = CollectorRegistry()
    Counter("llmasos_test_total", "A test counter", registry=registry).inc(3)
    monkeypatch.setattr(FakeEngineClient, "metrics_registry", property(lambda self: registry))
    text = httpx.get(f"{live.url}/metrics").text
    assert "llmasos_test_total 3.0" in text


def test_openapi_lists_every_route(live: LiveServer) -> None:
    spec = httpx.get(f"{live.url}/openapi.json").json()
    for path in (
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/models/{model_id}",
        "/api/generate",
        "/api/chat",
        "/api/embed",
        "/api/embeddings",
        "/api/tags",
        "/api/ps",
        "/api/show",
        "/api/pull",
        "/api/copy",
        "/api/delete",
        "/api/create",
        "/api/version",
        "/health",
        "/metrics",
    ):
        assert path in spec["paths"], path
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    assert "text/event-stream" in chat["responses"]["200"]["content"]


@pytest.mark.parametrize("origins", [[], ["http://ui.example"]])
def test_cors(tmp_path: Path, origins: list[str], model_store: ModelStore) -> None:
    settings = Settings(home=tmp_path, cors_origins=origins)
    app = create_app(settings, FakeEngineClient(), model_store)
    with TestClient(app) as test_client:
        response = test_client.options(
            "/v1/models",
            headers={"Origin": "http://ui.example", "Access-Control-Request-Method": "GET"},
        )
        allowed = response.headers.get("access-control-allow-origin")
    assert allowed == ("http://ui.example" if origins else None)


def test_form_encoded_bodies_are_read_as_json(live: LiveServer) -> None:
    response = httpx.post(
        f"{live.url}/api/generate",
        content=b'{"model": "smollm2", "prompt": "Hi", "stream": false}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and response.json()["response"] == "Hello world!"
