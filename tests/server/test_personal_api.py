"""``/v1/notes``, ``/v1/calendar``, ``/v1/reminders``, ``/v1/notifications`` and
``/v1/outbox`` over real HTTP, with authentication, a real database, a real SMTP server
(aiosmtpd), a webhook receiver, and the reminder scheduler running in the server's lifespan.

The kernel is the fake engine with word-count embeddings, so what is checked is the API's
contract: shapes, ownership (another user's id is 404), scopes, errors, and reminders that
reach the inbox, the stream and the webhook."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import load_settings
from llmasos.models import open_model_store
from llmasos.net import free_port
from llmasos.server.app import create_app
from llmasos.storage import open_database
from llmasos.tools.personal import personal_of
from tests.memory.conftest import WordEngine
from tests.server.conftest import ServerThread
from tests.tools.conftest import SmtpSink, WebhookSink, webhook_sink

__all__ = ["webhook_sink"]


@dataclass
class PersonalServer:
    url: str
    smtp: SmtpSink
    alice: str
    bob: str
    alice_chat_only: str

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PersonalServer]:
    from aiosmtpd.controller import Controller

    home: Path = tmp_path_factory.mktemp("personal-home")
    smtp = SmtpSink("127.0.0.1", free_port())
    controller = Controller(smtp, hostname=smtp.host, port=smtp.port)
    controller.start()
    settings = load_settings(
        home=home,
        auth=True,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_security="none",
        mail_from="os@example.org",
        webhook_private_addresses=True,
    )
    database = open_database(settings)
    users = UserManager(database)
    users.create("alice", role="user")
    users.create("bob", role="user")
    keys = KeyManager(database)
    engine = WordEngine()
    personal = personal_of(settings, database, engine)
    personal.notifications.backoff_s = (0.05,)
    app = create_app(settings, engine, open_model_store(settings), keys=keys, personal=personal)
    try:
        with ServerThread(app, lifespan="on") as url:
            yield PersonalServer(
                url,
                smtp,
                keys.create("alice", "laptop").secret,
                keys.create("bob", "laptop").secret,
                keys.create("alice", "chat app", scopes=["chat"]).secret,
            )
    finally:
        controller.stop()
        database.close()


@pytest.fixture
def alice(server: PersonalServer) -> Iterator[httpx.Client]:
    with server.client(server.alice) as client:
        yield client


@pytest.fixture
def bob(server: PersonalServer) -> Iterator[httpx.Client]:
    with server.client(server.bob) as client:
        yield client


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, words: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert words in error["message"]


def test_notes(alice: httpx.Client, bob: httpx.Client, server: PersonalServer) -> None:
    note = ok(alice.post("/v1/notes", json={"title": "Garden", "body": "plant tulips in May"}))
    assert note["id"].startswith("note_") and note["object"] == "note"
    ok(alice.post("/v1/notes", json={"title": "Books", "body": "read Dune", "tags": ["fun"]}))
    listed = ok(alice.get("/v1/notes", params={"limit": 1}))
    assert listed["has_more"] is True and listed["data"][0]["title"] == "Books"
    found = ok(alice.post("/v1/notes/search", json={"query": "tulips", "k": 3}))
    assert found["data"][0]["id"] == note["id"]
    edited = ok(alice.patch(f"/v1/notes/{note['id']}", json={"body": "plant tulips in April"}))
    assert edited["body"] == "plant tulips in April"
    assert ok(alice.get(f"/v1/notes/{note['id']}"))["body"] == "plant tulips in April"
    assert_error(bob.get(f"/v1/notes/{note['id']}"), 404)
    assert_error(bob.delete(f"/v1/notes/{note['id']}"), 404)
    assert ok(bob.post("/v1/notes/search", json={"query": "tulips"}))["data"] == []
    assert_error(alice.post("/v1/notes", json={"title": " "}), 400, "title")
    assert_error(alice.post("/v1/notes", json={"title": "x", "colour": "red"}), 400)
    with server.client(server.alice_chat_only) as chat_only:
        assert_error(chat_only.get("/v1/notes"), 403)
    assert ok(alice.delete(f"/v1/notes/{note['id']}"))["deleted"] is True
    assert_error(alice.get(f"/v1/notes/{note['id']}"), 404)


def test_calendar_and_ics(alice: httpx.Client, bob: httpx.Client) -> None:
    event = ok(alice.post("/v1/calendar/events", json={
        "title": "Concert", "start": "2031-06-01T20:00", "end": "2031-06-01T22:30",
        "time_zone": "Europe/Berlin", "location": "Philharmonie"}))  # fmt: skip
    assert event["start"] == "2031-06-01T20:00:00+02:00" and event["time_zone"] == "Europe/Berlin"
    window = {"start": "2031-06-01T00:00Z", "end": "2031-06-02T00:00Z"}
    assert [e["id"] for e in ok(alice.get("/v1/calendar/events", params=window))["data"]] == [
        event["id"]
    ]
    exported = alice.get("/v1/calendar/export.ics")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/calendar")
    assert b"SUMMARY:Concert" in exported.content
    imported = ok(bob.post("/v1/calendar/import", files={"file": ("cal.ics", exported.content)}))
    assert imported["created"] >= 1
    theirs = ok(bob.get("/v1/calendar/events", params=window))["data"]
    assert [(e["title"], e["start"], e["location"]) for e in theirs] == [
        ("Concert", "2031-06-01T20:00:00+02:00", "Philharmonie")
    ]
    raw = ok(bob.post("/v1/calendar/import", content=exported.content))  # the body itself
    assert raw["created"] == 0 and raw["updated"] >= 1
    assert_error(bob.post("/v1/calendar/import", content=b"not a calendar"), 400, "iCalendar")
    assert_error(bob.get(f"/v1/calendar/events/{event['id']}"), 404)
    assert_error(alice.post("/v1/calendar/events", json={
        "title": "x", "start": "2031-06-01T20:00", "time_zone": "Atlantis/Capital"}),
        400, "unknown time zone 'Atlantis/Capital'")  # fmt: skip
    assert ok(alice.delete(f"/v1/calendar/events/{event['id']}"))["deleted"] is True


def read_stream(server: PersonalServer, key: str, events: queue.Queue[Any]) -> None:
    """Read the notification stream, putting "connected" and then each event's data."""
    with server.client(key) as client, client.stream("GET", "/v1/notifications/stream") as reply:
        for line in reply.iter_lines():
            if line == ": connected":
                events.put("connected")
            elif line.startswith("data: "):
                events.put(json.loads(line.removeprefix("data: ")))
                return


def test_reminder_reaches_inbox_stream_and_webhook(
    server: PersonalServer, alice: httpx.Client, bob: httpx.Client, webhook_sink: WebhookSink
) -> None:
    webhook_sink.fail_first = 1  # the first POST fails; the retry is delivered
    setting = ok(alice.put("/v1/notifications/webhook", json={"webhook_url": webhook_sink.url}))
    assert setting == {"webhook_url": webhook_sink.url}
    events: queue.Queue[Any] = queue.Queue()
    reader = threading.Thread(target=read_stream, args=(server, server.alice, events), daemon=True)
    reader.start()
    assert events.get(timeout=60) == "connected"
    reminder = ok(alice.post("/v1/reminders", json={"text": "take the cake out", "in_seconds": 1}))
    assert reminder["status"] == "pending" and reminder["id"].startswith("rem_")
    streamed = events.get(timeout=60)
    reader.join(timeout=60)
    assert streamed["title"] == "take the cake out" and streamed["source_ref"] == reminder["id"]
    assert webhook_sink.received.wait(60)
    assert webhook_sink.requests[-1]["id"] == streamed["id"]
    inbox = ok(alice.get("/v1/notifications", params={"unread": True}))["data"]
    assert [n["id"] for n in inbox] == [streamed["id"]]
    assert ok(alice.get(f"/v1/reminders/{reminder['id']}"))["status"] == "fired"
    assert_error(bob.get(f"/v1/notifications/{streamed['id']}"), 404)
    assert_error(bob.post("/v1/notifications/read", json={"ids": [streamed["id"]]}), 404)
    assert ok(alice.post("/v1/notifications/read", json={"ids": [streamed["id"]]}))["marked"] == 1
    assert ok(alice.get("/v1/notifications", params={"unread": True}))["data"] == []
    assert bob.get("/v1/notifications").json()["data"] == []
    ok(alice.put("/v1/notifications/webhook", json={"webhook_url": None}))


def test_reminder_errors(alice: httpx.Client, bob: httpx.Client) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    assert_error(alice.post("/v1/reminders", json={"text": "x", "due": past}), 400, "in the past")
    assert_error(
        alice.post("/v1/reminders", json={"text": "x", "in_seconds": 60, "time_zone": "Nope/X"}),
        400,
        "unknown time zone",
    )
    assert_error(alice.post("/v1/reminders", json={"text": "x", "due": "tomorrow"}), 400, "ISO")
    later = ok(alice.post("/v1/reminders", json={"text": "later", "in_seconds": 3600}))
    assert_error(bob.delete(f"/v1/reminders/{later['id']}"), 404)
    assert ok(alice.delete(f"/v1/reminders/{later['id']}"))["deleted"] is True


def test_outbox(server: PersonalServer, alice: httpx.Client, bob: httpx.Client) -> None:
    before = len(server.smtp.received)
    message = {"to": ["carol@example.com"], "subject": "Minutes", "body": "See attached."}
    headers = {"Idempotency-Key": "retry-1"}
    sent = ok(alice.post("/v1/outbox", json=message, headers=headers))
    assert sent["status"] == "sent" and sent["to"] == ["carol@example.com"]
    assert ok(alice.post("/v1/outbox", json=message, headers=headers)) == sent
    assert len(server.smtp.received) == before + 1
    assert server.smtp.received[-1][1] == ["carol@example.com"]
    assert ok(alice.get("/v1/outbox"))["data"][0]["id"] == sent["id"]
    assert ok(alice.get(f"/v1/outbox/{sent['id']}"))["subject"] == "Minutes"
    assert_error(bob.get(f"/v1/outbox/{sent['id']}"), 404)
    assert ok(bob.get("/v1/outbox"))["data"] == []
    assert_error(alice.post("/v1/outbox", json={**message, "to": ["nobody"]}), 400, "address")
