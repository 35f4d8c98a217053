"""``llmasos kg`` against a real server on loopback (authentication off), whose knowledge
base reads triples with the deterministic extractor of ``tests/knowledge/graphs.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmasos.cli.main import main
from llmasos.config import load_settings
from llmasos.models import open_model_store
from llmasos.server.app import create_app
from llmasos.storage import open_database
from tests.cli.test_kb_cli import cli, run
from tests.knowledge.conftest import KnowledgeEngine
from tests.knowledge.graphs import graph_kb
from tests.server.conftest import ServerThread

__all__ = ["cli"]


@pytest.fixture(scope="module")
def server_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    settings = load_settings(home=tmp_path_factory.mktemp("kg-cli-home"))
    database = open_database(settings)
    engine = KnowledgeEngine()
    knowledge, _ = graph_kb(settings, database, engine)
    app_ = create_app(settings, engine, open_model_store(settings), knowledge=knowledge)
    with ServerThread(app_) as url:
        yield int(url.rsplit(":", 1)[1])
    database.close()


def test_kg_commands(cli: Path) -> None:
    assert run("kb", "create", "team")[0] == 0
    code, out = run("kg", "build", "team")
    assert code == 0 and "no indexed chunks" in out
    (cli / "people.md").write_text("Maria manages Acme. Bob knows Maria.")
    (cli / "places.md").write_text("Acme owns Lisbon.")
    assert run("kb", "add", "team", str(cli / "people.md"), str(cli / "places.md"))[0] == 0

    code, out = run("kg", "build", "team")
    assert code == 0 and "3 new triples" in out and "4 entities, 3 relations" in out
    status = json.loads(run("kg", "status", "team", "--json")[1])
    assert status["status"] == "completed" and status["chunks_pending"] == 0

    code, out = run("kg", "query", "How is Bob related to Lisbon?", "--store", "team")
    assert code == 0 and "3 hop(s) apart" in out
    assert "people.md" in out and "places.md" in out and "manages" in out
    answer = json.loads(run("kg", "query", "Maria", "-s", "team", "--json")[1])
    assert answer["mode"] == "neighbourhood" and len(answer["edges"]) == 2

    code, out = run("kg", "query", "Who is Zeppelin?", "--store", "team")
    assert code == 0 and "not found" in out
    code, out = run("kg", "query", "Maria", "--store", "team", "--hops", "9")
    assert code == 2  # typer's own range check


def test_kg_errors_are_one_line(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in (
        (["kg", "query", "Maria", "--store", "nosuch"], "no knowledge base named 'nosuch'"),
        (["kg", "build", "vs_000000000000000000000000"], "no vector store"),
        (["kg", "status", "vs_000000000000000000000000"], "no vector store"),
    ):
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
