"""``llmasos kb`` against a real server on loopback (authentication off: the machine's
owner), whose kernel is the fake engine with word-count embeddings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmasos.cli.main import app, main
from llmasos.cli.root import state
from llmasos.config import load_settings
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.models import open_model_store
from llmasos.server.app import create_app
from llmasos.storage import open_database
from tests.knowledge.conftest import KnowledgeEngine
from tests.server.conftest import ServerThread

runner = CliRunner()


@pytest.fixture(scope="module")
def server_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    home = tmp_path_factory.mktemp("kb-cli-home")
    settings = load_settings(home=home)
    database = open_database(settings)
    engine = KnowledgeEngine()
    knowledge = KnowledgeBase.open(settings, database, engine)
    app_ = create_app(settings, engine, open_model_store(settings), knowledge=knowledge)
    with ServerThread(app_) as url:
        yield int(url.rsplit(":", 1)[1])
    database.close()


@pytest.fixture
def cli(server_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("LLMASOS_PORT", str(server_port))
    monkeypatch.setenv("COLUMNS", "80")
    state.reset()
    yield tmp_path
    state.reset()


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


def test_kb_commands(cli: Path) -> None:
    (cli / "budget.md").write_text(
        "# Budget\n\nThe travel budget for Lisbon is 12000 euros.\n\n## Laptops\n\n"
        "Four laptops for the design team."
    )
    (cli / "broken.pdf").write_bytes(b"%PDF-1.7 this is not a pdf")
    code, out = run("kb", "create", "work", "--chunk-size", "64", "--chunk-overlap", "8")
    assert code == 0 and out.startswith("created vs_")
    store_id = out.split()[1]

    code, out = run("kb", "add", "work", str(cli / "budget.md"), str(cli / "broken.pdf"))
    assert code == 1  # one file failed: said in one line, the other indexed
    assert "budget.md: indexed" in out and "broken.pdf: failed:" in out
    assert "Traceback" not in out

    code, out = run("kb", "ls")
    assert code == 0 and store_id in out and "work" in out
    files = json.loads(run("kb", "ls", "work", "--json")[1])
    assert {f["filename"]: f["status"] for f in files} == {
        "budget.md": "completed", "broken.pdf": "failed",
    }  # fmt: skip

    page = json.loads(run("kb", "search", "work", "Lisbon travel", "--json")[1])
    assert page["data"][0]["filename"] == "budget.md"
    chunk_id = page["data"][0]["chunk_id"]
    assert chunk_id in run("kb", "search", store_id, "Lisbon travel")[1]

    answer = json.loads(run("kb", "ask", "How much is the Lisbon travel budget?", "-s", "work",
                            "--json")[1])  # fmt: skip
    assert answer["citations"] and answer["citations"][0]["filename"] == "budget.md"
    code, out = run("kb", "ask", "Who painted the Sistine chapel?", "-s", "work")
    assert code == 0 and "found nothing" in out

    budget = next(f["id"] for f in files if f["filename"] == "budget.md")
    code, out = run("kb", "chunks", "work", budget)
    assert code == 0 and chunk_id in out
    code, out = run("kb", "chunks", "work", chunk_id, "--text", "Zeppelins cost 300 euros.")
    assert code == 0 and "edited" in out
    found = json.loads(run("kb", "search", "work", "zeppelins", "--json")[1])
    assert found["data"][0]["chunk_id"] == chunk_id
    assert "disabled" in run("kb", "chunks", "work", chunk_id, "--disable")[1]

    assert run("kb", "rm", "work", "broken.pdf", "--yes")[0] == 0
    assert run("kb", "rm", "work", stdin="n\n")[0] == 1  # asked, refused
    assert run("kb", "rm", "work", "--yes")[0] == 0
    assert "work" not in run("kb", "ls")[1]


def test_kb_errors_are_one_line(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in (
        (["kb", "add", "nowhere", str(cli / "missing.txt")], "no such file"),
        (["kb", "chunks", "vs_000000000000000000000000", "file-x"], "no vector store"),
        (["kb", "search", "nowhere", "x"], "no knowledge base named 'nowhere'"),
    ):
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
