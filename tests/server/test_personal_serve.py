"""``llmasos serve`` fires reminders: one that fell due while no server ran fires once when
it starts, and a restart does not fire it again (a real server process, the real model
loading in the background, SQLite in a temporary home)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from llmasos.cli.main import main
from llmasos.cli.root import state
from tests.serving import llmasos_serve

pytestmark = pytest.mark.model


def notifications(url: str, count: int) -> list[dict[str, object]]:
    """The inbox once it holds ``count`` notifications (or after a generous wait)."""
    found: list[dict[str, object]] = []
    for _ in range(600):
        found = httpx.get(f"{url}/v1/notifications", timeout=30).json()["data"]
        if len(found) >= count:
            break
        time.sleep(0.1)
    return found


def test_a_reminder_due_while_down_fires_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("LLMASOS_PORT", "9")  # no server answers: the CLI works in-process
    state.reset()
    try:
        main(["reminders", "add", "renew the passport", "--in", "1s", "--json"])
    except SystemExit as exit_info:
        assert exit_info.code in (0, None)
    state.reset()
    due = datetime.fromisoformat(capsys.readouterr().out.split('"due": "')[1].split('"')[0])
    while time.time() <= due.timestamp() + 0.05:
        time.sleep(0.05)
    with llmasos_serve(home) as url:
        found = notifications(url, 1)
        assert [n["title"] for n in found] == ["renew the passport"]
        reminders = httpx.get(f"{url}/v1/reminders", timeout=30).json()["data"]
        assert [r["status"] for r in reminders] == ["fired"]
    with llmasos_serve(home) as url:  # a restart: a new reminder fires, the old one not again
        body = {"text": "stand up", "in_seconds": 1}
        assert httpx.post(f"{url}/v1/reminders", json=body, timeout=30).status_code == 200
        found = notifications(url, 2)
        assert sorted(str(n["title"]) for n in found) == ["renew the passport", "stand up"]
