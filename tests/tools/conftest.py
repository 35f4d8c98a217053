"""The personal tools' fixtures: an upgraded database on each backend, the stores over a
word-count embedder (`tests.memory.conftest.WordEngine`), a real SMTP server (aiosmtpd) on
loopback and a webhook receiver that can be told to fail."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llmasos.config import Settings
from llmasos.storage import Database
from llmasos.tools.personal import Personal, open_personal
from llmasos.tools.records import Owner
from tests.memory.conftest import WordEngine
from tests.storage.conftest import database, settings

__all__ = ["ALICE", "BOB", "SmtpSink", "WebhookSink", "database", "settings"]

ALICE = Owner("user:1", None)
BOB = Owner("user:2", None)


@pytest.fixture
def personal(settings: Settings, database: Database) -> Personal:
    return open_personal(settings, database, WordEngine())


@dataclass
class SmtpSink:
    """What the local SMTP server received: (envelope sender, recipients, message bytes)."""

    host: str
    port: int
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    from aiosmtpd.controller import Controller

    from llmasos.net import free_port

    sink = SmtpSink("127.0.0.1", free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@dataclass
class WebhookSink:
    url: str
    fail_first: int = 0
    """Answer this many requests with 500 before accepting."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    holder: dict[str, WebhookSink] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            sink = holder["sink"]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            sink.requests.append(json.loads(body))
            failing = len(sink.requests) <= sink.fail_first
            self.send_response(500 if failing else 204)
            self.end_headers()
            if not failing:
                sink.received.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["sink"] = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["sink"]
    finally:
        server.shutdown()
        server.server_close()
