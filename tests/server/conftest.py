"""Fixtures: a real model store in a temporary home and a real uvicorn server on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from llmasos.config import Settings
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from tests.server.fake_engine import FakeEngineClient


@dataclass
class LiveServer:
    url: str
    engine: FakeEngineClient
    store: ModelStore
    settings: Settings


class ServerThread:
    """Runs ``app`` under uvicorn in a thread on 127.0.0.1 and a free port."""

    def __init__(self, app: FastAPI, *, lifespan: str = "on") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, ws="none")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="session")
def server_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llmasos-home")


@pytest.fixture(scope="session")
def server_settings(server_home: Path) -> Settings:
    return Settings(home=server_home)


@pytest.fixture(scope="session")
def model_store(server_settings: Settings) -> ModelStore:
    return ModelStore.open(server_settings)


@pytest.fixture(scope="session")
def _live_server(server_settings: Settings, model_store: ModelStore) -> Iterator[LiveServer]:
    engine = FakeEngineClient()
    app = create_app(server_settings, engine, model_store, max_body_bytes=64 * 1024)
    with ServerThread(app) as url:
        yield LiveServer(url=url, engine=engine, store=model_store, settings=server_settings)


@pytest.fixture
def live(_live_server: LiveServer) -> LiveServer:
    """The shared fake-engine server, with the engine's record cleared for this test."""
    _live_server.engine.reset()
    return _live_server
