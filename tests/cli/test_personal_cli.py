"""``llmasos notes|calendar|reminders|notifications|outbox`` in-process (no server), on
SQLite and PostgreSQL: what a user types, what they see, and one-line errors."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from llmasos.cli.main import main
from llmasos.cli.root import state
from llmasos.config import load_settings
from llmasos.net import free_port
from llmasos.storage import open_database
from llmasos.tools.personal import open_personal
from tests.cli.invoke import run
from tests.cli.test_memory_cli import requires_model
from tests.cli.test_output import documented_fields
from tests.memory.conftest import WordEngine


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("LLMASOS_DATABASE_URL", database_url)
    monkeypatch.setenv("LLMASOS_PORT", str(free_port()))  # no server answers there
    monkeypatch.setenv("COLUMNS", "100")
    state.reset()
    yield home
    state.reset()


def json_of(*args: str) -> object:
    code, out = run(*args, "--json")
    assert code == 0, out
    return json.loads(out)


def test_calendar_commands(home: Path, tmp_path: Path) -> None:
    code, out = run("calendar", "add", "Dentist", "--start", "2031-03-14T09:30",
                    "--tz", "Europe/Paris", "--location", "Rue X")  # fmt: skip
    assert code == 0 and out.startswith("created evt_") and "2031-03-14T09:30:00+01:00" in out
    events = json_of("calendar", "ls", "--from", "2031-03-01T00:00Z")
    assert isinstance(events, list) and [e["title"] for e in events] == ["Dentist"]
    assert set(documented_fields("calendar", "ls")) == set(events[0])
    target = tmp_path / "mine.ics"
    assert run("calendar", "export", str(target))[0] == 0
    assert b"SUMMARY:Dentist" in target.read_bytes()
    code, out = run("calendar", "import", str(target))
    assert code == 0 and "0 new and 1 updated" in out
    code, out = run("calendar", "ls")
    assert "Dentist" in out and events[0]["id"] in out
    assert run("calendar", "rm", events[0]["id"], "--yes") == (0, f"deleted {events[0]['id']}\n")
    assert json_of("calendar", "ls") == []


def test_reminders_notifications_outbox(home: Path) -> None:
    reminder = json_of("reminders", "add", "water the plants", "--in", "1s")
    assert isinstance(reminder, dict) and reminder["status"] == "pending"
    assert set(documented_fields("reminders", "ls")) == set(reminder)
    due = datetime.fromisoformat(reminder["due"]).timestamp()
    while time.time() <= due + 0.05:
        time.sleep(0.05)
    # what a starting server does first: fire what fell due while none ran
    settings = load_settings()
    with open_database(settings) as database:
        assert len(open_personal(settings, database, WordEngine()).reminders.fire_due()) == 1
    found = json_of("notifications", "--unread")
    assert isinstance(found, list) and [n["title"] for n in found] == ["water the plants"]
    assert set(documented_fields("notifications")) == set(found[0])
    code, out = run("notifications", "--mark-read")
    assert code == 0 and "water the plants" in out
    assert json_of("notifications", "--unread") == []
    assert json_of("reminders", "ls", "--status", "fired")[0]["id"] == reminder["id"]  # type: ignore[index]
    assert json_of("outbox") == []


def test_errors_are_one_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["reminders", "add", "x", "--at", "2001-01-01T00:00"], "in the past"),
        (["reminders", "add", "x", "--in", "5m", "--tz", "Mars/Olympus"], "unknown time zone"),
        (["reminders", "add", "x"], "--at TIME or --in DURATION"),
        (["calendar", "rm", "evt_99", "--yes"], "no event 'evt_99'"),
        (["calendar", "import", "/nonexistent.ics"], "cannot read"),
        (["notes", "rm", "note_1", "--yes"], "no note 'note_1'"),
    ]
    for args, words in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code != 0
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.model
@requires_model
def test_notes_commands(home: Path) -> None:
    code, out = run("notes", "add", "Packing list", "--body", "passport, charger", "--tag", "trip")
    assert code == 0 and out.startswith("created note_")
    note_id = out.split()[-1]
    run("notes", "add", "Recipes", "--body", "pancakes: flour, eggs, milk")
    found = json_of("notes", "search", "passport")
    assert isinstance(found, list) and found[0]["id"] == note_id
    assert set(documented_fields("notes", "search")) == set(found[0])
    assert run("notes", "edit", note_id, "--body", "passport, charger, adapter")[0] == 0
    code, out = run("notes", "show", note_id)
    assert code == 0 and "adapter" in out and "trip" in out
    assert [n["title"] for n in json_of("notes", "ls")] == ["Recipes", "Packing list"]  # type: ignore[union-attr]
    assert run("notes", "rm", note_id, "--yes")[0] == 0
    assert [n["title"] for n in json_of("notes", "ls")] == ["Recipes"]  # type: ignore[union-attr]
