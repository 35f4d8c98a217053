"""``llmasos fs`` in-process (no server), with the real all-MiniLM embeddings and the real
SmolLM2 for summarize and ask, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmasos.cli.fs import parse_size
from llmasos.cli.main import app, main
from llmasos.cli.root import state
from llmasos.errors import InvalidRequestError
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.net import free_port
from tests.cli.test_output import documented_fields

runner = CliRunner()
requires_model = pytest.mark.skipif(
    any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
)
VERSION_FIELDS = documented_fields("fs", "put")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Path]:
    if database_url.startswith("postgresql"):
        pytest.skip(
            "the store runs on PostgreSQL in tests/knowledge; the CLI (a model load "
            "per command) runs once, on SQLite"
        )
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("LLMASOS_DATABASE_URL", database_url)
    monkeypatch.setenv("LLMASOS_PORT", str(free_port()))  # no server answers there
    monkeypatch.setenv("COLUMNS", "80")
    state.reset()
    yield home
    state.reset()


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def test_parse_size() -> None:
    assert parse_size("512", "--x") == 512 and parse_size("10k", "--x") == 10240
    assert parse_size("2MB", "--x") == 2 * 2**20 and parse_size(None, "--x") is None
    with pytest.raises(InvalidRequestError, match="not a size"):
        parse_size("lots", "--x")


@pytest.mark.model
@requires_model
def test_fs_commands(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    budget = tmp_path / "budget.md"
    budget.write_text("# Budget 2026\n\nWe plan to spend less on travel and more on books.\n")
    recipe = tmp_path / "soup.txt"
    recipe.write_text("Tomato soup: simmer tomatoes, onions and garlic for twenty minutes.\n")
    code, out = run("fs", "put", str(budget), "/notes/budget.md")
    assert code == 0 and out.startswith("wrote /notes/budget.md (version 1")
    info = json.loads(run("fs", "put", str(recipe), "notes/cooking/soup.txt", "--json")[1])
    assert list(info) == VERSION_FIELDS and info["version"] == 1 and info["type"] == "txt"

    listing = json.loads(run("fs", "ls", "/notes", "--json")[1])
    assert [e["name"] for e in listing] == ["cooking", "budget.md"]
    assert list(listing[0]) == documented_fields("fs", "ls")
    assert "budget.md" in run("fs", "ls", "/notes")[1]

    hits = json.loads(run("fs", "find", "how much money do we spend", "--json")[1])
    assert hits[0]["path"] == "/notes/budget.md" and hits[0]["score"] > 0
    assert list(hits[0]) == documented_fields("fs", "find")
    only_txt = json.loads(run("fs", "find", "soup", "--json", "--type", "txt")[1])
    assert [h["path"] for h in only_txt] == ["/notes/cooking/soup.txt"]
    assert "/notes/cooking/soup.txt" in run("fs", "find", "tomato soup")[1]

    budget.write_text("# Budget 2026\n\nWe plan to spend more on travel.\n")
    assert run("fs", "put", str(budget), "/notes/budget.md")[0] == 0
    out_file = tmp_path / "out.md"
    assert run("fs", "get", "/notes/budget.md@1", "-o", str(out_file))[0] == 0
    assert "more on books" in out_file.read_text()
    assert run("fs", "get", "/notes/budget.md")[1].endswith("more on travel.\n")
    history = json.loads(run("fs", "history", "/notes/budget.md", "--json")[1])
    assert [v["version"] for v in history] == [2, 1]
    code, diff = run("fs", "diff", "/notes/budget.md@1", "/notes/budget.md@2")
    assert code == 0 and "+We plan to spend more on travel." in diff

    assert run("fs", "rollback", "/notes/budget.md", stdin="n\n")[0] == 1  # asked, refused
    code, out = run("fs", "rollback", "/notes/budget.md", "--yes")
    assert code == 0 and "restored version 1" in out
    assert "more on books" in run("fs", "get", "/notes/budget.md")[1]
    assert run("fs", "mv", "/notes/cooking/soup.txt", "/recipes/")[0] == 0
    assert run("fs", "rm", "/recipes/soup.txt", stdin="n\n")[0] == 1
    assert run("fs", "rm", "/recipes/soup.txt", "--yes")[0] == 0
    assert "soup" not in run("fs", "ls")[1]

    share = json.loads(run("fs", "share", "/notes/budget.md", "--json")[1])
    assert share["token"].startswith("fsh_") and list(share) == documented_fields("fs", "share")

    summaries = json.loads(run("fs", "summarize", "/notes/budget.md", "--json")[1])
    assert summaries[0]["path"] == "/notes/budget.md" and summaries[0]["summary"]
    assert list(summaries[0]) == documented_fields("fs", "summarize")

    # The tiny model may plan anything: what is guaranteed is a checked plan, and that no
    # step changes a file without confirmation.
    code, out = run("fs", "ask", "delete the budget notes", stdin="n\n")
    assert code in (0, 1) and out.strip()
    assert json.loads(run("fs", "ls", "/notes", "--json")[1])[0]["name"] == "budget.md"
    plan = json.loads(run("fs", "ask", "find the notes about money", "--json")[1])
    assert list(plan) == documented_fields("fs", "ask")
    for step in plan["steps"]:
        assert step["status"] in ("done", "refused", "needs_confirmation", "failed")
        assert step["status"] != "done" or not step["destructive"]

    capsys.readouterr()
    for args in (
        ["fs", "get", "/nope.txt"],
        ["fs", "put", str(budget), "../escape.md"],
        ["fs", "put", str(budget), "/a\x01b"],
        ["fs", "put", str(tmp_path / "missing"), "/x"],
        ["fs", "diff", "/notes/budget.md@1", "/other.md@2"],
        ["fs", "find", "x", "--min-size", "lots"],
        ["fs", "rollback", "/notes/budget.md", "--to", "9", "--yes"],
    ):
        with pytest.raises(SystemExit) as caught:
            main(args)
        assert caught.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("Error:") and err.count("\n") == 1, err
