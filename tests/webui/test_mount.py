"""The console's place in the server, without a model: mounted through the plugin registry
on every non-API path, the local owner signed in when authentication is off, the API's own
paths and errors untouched, and one readable line when the console cannot load. The API
here is a small FastAPI app with the real session routes and a few read-only stand-ins."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

import llmasos.server.console as server_console
from llmasos.config import Settings
from llmasos.plugins import PluginRegistry
from llmasos.server.console import mount_console
from llmasos.server.errors import install_exception_handlers
from llmasos.server.session.router import session_router


def api_without_auth() -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)
    app.include_router(session_router(None))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "smollm2", "object": "model"}]}

    @app.get("/api/ps")
    async def ps() -> dict[str, Any]:
        return {"models": [{"name": "smollm2:latest", "size": 1}]}

    @app.get("/v1/conversations")
    async def conversations() -> dict[str, Any]:
        return {"object": "list", "data": [], "has_more": False}

    return app


def test_without_auth_the_local_owner_is_signed_in(tmp_path: Any) -> None:
    app = api_without_auth()
    assert mount_console(app, Settings(home=tmp_path))
    with TestClient(app) as client:
        chat = client.get("/chat")
        assert chat.status_code == 200
        assert 'data-user="local"' in chat.text and "data-sign-out" not in chat.text
        assert "smollm2 ● loaded" in chat.text
        assert client.get("/sign-in", follow_redirects=False).headers["location"] == "/chat"
        assert client.get("/setup", follow_redirects=False).headers["location"] == "/sign-in"
        missing = client.get("/v1/no-such-route")  # still the API's 404, in its shape
        assert missing.status_code == 404 and "error" in missing.json()
        page = client.get("/no-such-page")
        assert page.status_code == 404 and "There is no page at this address." in page.text
        zh = client.get("/chat", headers={"Accept-Language": "zh-CN"})
        assert '<html lang="zh-Hans">' in zh.text and "新对话" in zh.text


def test_a_console_that_cannot_load_leaves_the_api_serving(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = PluginRegistry()
    registry.register_console("llmasos_no_such_console:create_console")
    monkeypatch.setattr(server_console, "get_registry", lambda: registry)
    app = api_without_auth()
    assert not mount_console(app, Settings(home=tmp_path))
    with TestClient(app) as client:
        page = client.get("/chat")
        assert page.status_code == 503
        assert page.text.startswith("The web console is not available:")
        assert "llmasos_no_such_console" in page.text
        assert client.get("/v1/models").status_code == 200
