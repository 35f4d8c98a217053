"""Tables never cut an identifier at 80 columns, and ``--json`` prints the documented fields."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

import llmasos.cli.output as output
from llmasos.cli.main import app
from llmasos.cli.root import state

runner = CliRunner()
FIELDS = re.compile(r"--json fields:\s*([a-z0-9_,\s]+)\.")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "80")
    state.reset()
    yield home
    state.reset()


def run(*args: str, stdin: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def documented_fields(*path: str) -> list[str]:
    """The ``--json fields:`` a command's help lists."""
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    found = FIELDS.search(" ".join((command.help or "").split()))
    assert found, f"`llmasos {' '.join(path)} --help` does not list its --json fields"
    return [field.strip() for field in found.group(1).split(",")]


def json_of(*args: str) -> Any:
    return json.loads(run(*args, "--json"))


def test_key_columns_are_never_cut_at_any_width(monkeypatch: pytest.MonkeyPatch) -> None:
    key_id = "0123456789abcdef0123456789abcdef"
    for width in (200, 80, 40):
        console = Console(width=width, record=True, file=io.StringIO())
        monkeypatch.setattr(output, "console", console)
        rows = output.table(
            output.Column("key id", key=True), output.Column("user", key=True),
            "name", "scopes", "models", "status", "created", "expires",
        )  # fmt: skip
        rows.add_row(key_id, "a-user-with-a-long-name", "ci key", "chat,generate,embed", "*",
                     "active", "2026-12-01 22:59", "never")  # fmt: skip
        output.print_table(rows)
        text = console.export_text()
        assert any(key_id in line for line in text.splitlines()), (width, text)
        assert any("a-user-with-a-long-name" in line for line in text.splitlines())
        assert "chat,generate,embed" in text  # the other columns are never dropped either
        # Only a line holding a whole id may pass the edge (the terminal wraps it).
        assert all(len(line) <= width or key_id in line for line in text.splitlines())


def test_access_lists_at_80_columns_and_as_json(home: Path) -> None:
    run("users", "create", "owner-of-this-machine", "--password-stdin", stdin="long password\n")
    run("users", "create", "alice", "--role", "developer")
    secret = run("keys", "create", "--user", "alice", "--name", "ci", "--scope", "chat").strip()
    run("price", "set", "smollm2", "--prompt-per-1k", "0.01", "--completion-per-1k", "0.02")
    run("quota", "set", "--user", "alice", "--requests-per-minute", "10")

    keys = json_of("keys", "list")
    assert [key["user"] for key in keys] == ["alice"] and secret not in json.dumps(keys)
    assert list(keys[0]) == documented_fields("keys", "list")
    table = run("keys", "list")
    assert any(keys[0]["key_id"] in line for line in table.splitlines())
    assert run("keys", "revoke", keys[0]["key_id"])  # the id from --json is the one revoke takes

    users = json_of("users", "list")
    assert {user["name"] for user in users} == {"owner-of-this-machine", "alice"}
    assert list(users[0]) == documented_fields("users", "list")
    assert "owner-of-this-machine" in run("users", "list")

    prices = json_of("price", "list")
    assert prices[0]["model"] == "smollm2" and prices[0]["completion_per_1k"] == 0.02
    assert list(prices[0]) == documented_fields("price", "list")

    quotas = json_of("quota", "show", "--user", "alice")
    assert quotas[0]["requests_per_minute"] == 10 and quotas[0]["used"]["minute"] == 0
    assert list(quotas[0]) == documented_fields("quota", "show")

    events = json_of("audit")
    assert {"user.create", "key.create", "key.revoke"} <= {e["action"] for e in events}
    assert list(events[0]) == documented_fields("audit")
    for event in events:
        target = event["target"]
        if target:
            assert any(target in line for line in run("audit").splitlines()), target

    assert json_of("usage") == []


def test_models_and_apps_as_json(home: Path) -> None:
    models = json_of("list")
    names = {model["name"] for model in models}
    assert {"smollm2:135m", "all-minilm:l6-v2"} <= names
    assert list(models[0]) == documented_fields("list")
    table = run("list")
    for model in models:
        assert any(model["name"] in line and model["id"] in line for line in table.splitlines())

    builtins = json_of("app", "builtins")
    assert {"builtin:assistant", "builtin:summarizer"} <= {app["source"] for app in builtins}
    assert list(builtins[0]) == documented_fields("app", "builtins")
    assert json_of("app", "list") == []
    assert documented_fields("app", "list") and documented_fields("app", "info")
    assert documented_fields("ps") and documented_fields("usage")
