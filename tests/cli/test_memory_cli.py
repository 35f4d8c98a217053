"""``llmasos memory`` and ``llmasos recommend`` in-process (no server), with the real
all-MiniLM embeddings, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmasos.cli.main import app, main
from llmasos.cli.memory import parse_metadata
from llmasos.cli.root import state
from llmasos.errors import InvalidRequestError
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.net import free_port
from tests.cli.test_output import documented_fields

runner = CliRunner()
requires_model = pytest.mark.skipif(
    any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Path]:
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


def test_parse_metadata() -> None:
    assert parse_metadata(["a=1", "b=text", "c=true", 'd={"x": 1}']) == {
        "a": 1, "b": "text", "c": True, "d": {"x": 1},
    }  # fmt: skip
    with pytest.raises(InvalidRequestError, match="KEY=VALUE"):
        parse_metadata(["novalue"])


@pytest.mark.model
@requires_model
def test_memory_commands(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long_text = "I am training for the Berlin marathon in September " * 4
    code, out = run("memory", "add", long_text.strip(), "--meta", "topic=sport")
    assert code == 0 and out.startswith("remembered mem_")
    memory_id = out.split()[-1]
    assert run("memory", "add", "I prefer tea to coffee", "--kind", "preference")[0] == 0
    assert run("memory", "add", long_text.upper())[1].startswith("already remembered")

    code, out = run("memory", "list")
    assert code == 0 and memory_id in out.split()  # never cut, even at COLUMNS=80
    listed = json.loads(run("memory", "list", "--json", "--meta", "topic=sport")[1])
    assert [m["id"] for m in listed] == [memory_id]
    assert list(listed[0]) == documented_fields("memory", "list")
    found = json.loads(run("memory", "search", "running a race", "--json", "-k", "1")[1])
    assert found[0]["id"] == memory_id and found[0]["score"] > 0
    assert list(found[0]) == documented_fields("memory", "search")
    assert memory_id in run("memory", "search", "marathon")[1].split()

    assert run("memory", "edit", memory_id, "--text", "I ran the Berlin marathon")[0] == 0
    assert "ran the Berlin" in run("memory", "list", "--json")[1]
    assert run("memory", "forget", memory_id, stdin="n\n")[0] == 1  # asked, refused
    assert memory_id in run("memory", "list")[1]
    assert run("memory", "forget", memory_id, "--yes")[0] == 0
    assert memory_id not in run("memory", "list")[1]
    assert "chat completions now use" in run("memory", "enable")[1]

    recommendations = json.loads(run("recommend", "--json")[1])
    assert recommendations and all(r["reason"] for r in recommendations)
    assert list(recommendations[0]) == documented_fields("recommend")
    code, out = run("memory", "forget", "--all", "--yes")
    assert code == 0 and "forgot 1 memories" in out

    capsys.readouterr()
    for args in (["memory", "forget", memory_id, "--yes"], ["memory", "add", "  "],
                 ["memory", "search", "x", "--kind", "gossip"], ["memory", "forget"]):  # fmt: skip
        with pytest.raises(SystemExit) as caught:
            main(args)
        assert caught.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("Error:") and err.count("\n") == 1, err
