"""The built-in apps (`llmasos.userland.apps`): manifests, loading, install by name, and
their routes against the real embedded model.

The fast tests need no model. The ``model`` tests use the shared ``llmasos serve`` fixture:
one installs ``builtin:summarizer`` and runs it as its own process through the supervisor;
the others plug a `Client` of that server into an app module (its ``client`` global, the
one thing the apps share with the OS) and call the routes in-process.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

import llmasos.cli.main  # noqa: F401  (registers every command)
from llmasos.apps.catalog import builtin_names, builtin_path
from llmasos.apps.manifest import load_manifest
from llmasos.apps.store import AppStore
from llmasos.apps.supervisor import AppSupervisor
from llmasos.cli.root import app as cli
from llmasos.cli.root import state
from llmasos.config import load_settings
from llmasos.errors import NotFoundError
from llmasos.sdk import Client
from llmasos.sdk.application import Application
from llmasos.storage import open_database
from tests.apps.conftest import Served

EXPECTED = {
    "assistant": (
        ["chat", "memory"],
        {"/chat", "/history", "/reset", "/remember", "/memories", "/forget"},
    ),
    "summarizer": (["services.summarize"], {"/summarize"}),
    "translator": (["services.translate"], {"/translate"}),
    "writer": (["services.rewrite", "chat"], {"/draft", "/rewrite"}),
    "tutor": (["chat", "memory"], {"/question", "/grade"}),
}


def app_module(name: str) -> ModuleType:
    return importlib.import_module(f"llmasos.userland.apps.{name}.app")


def test_the_five_builtin_apps_ship() -> None:
    assert builtin_names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_manifest_validates_with_minimal_permissions_and_its_app_loads(name: str) -> None:
    manifest = load_manifest(builtin_path(name))
    calls, routes = EXPECTED[name]
    assert manifest.name == name and manifest.entry == "app:app"
    assert list(manifest.permissions.calls) == calls
    assert manifest.permissions.network is False
    application = app_module(name).app
    assert isinstance(application, Application) and application.name == name
    with TestClient(application.asgi) as http:
        listed = {route["path"] for route in http.get("/").json()["routes"]}
        assert listed == routes
    assert len((builtin_path(name) / "app.py").read_text().splitlines()) <= 120


def test_install_by_name_and_unknown_names(tmp_path: Path) -> None:
    store = AppStore(tmp_path)
    installed = store.install("builtin:summarizer")
    assert (installed.name, installed.version) == ("summarizer", "1.0.0")
    assert (installed.directory / "app.py").is_file()
    assert not list(installed.directory.rglob("__pycache__"))
    with pytest.raises(NotFoundError, match=r"no built-in app 'nope'.*summarizer"):
        store.install("builtin:nope")
    assert [app.name for app in store.list()] == ["summarizer"]


def test_cli_lists_and_installs_builtins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    state.reset()
    runner = CliRunner()
    try:
        listed = runner.invoke(cli, ["app", "builtins"])
        assert listed.exit_code == 0, listed.output
        for name, (calls, _) in EXPECTED.items():
            assert f"builtin:{name}" in listed.stdout and ", ".join(calls) in listed.stdout
        installed = runner.invoke(cli, ["app", "install", "builtin:writer", "--yes"])
        assert installed.exit_code == 0 and "installed writer 1.0.0" in installed.stdout
        assert "call services.rewrite" in installed.stderr
    finally:
        state.reset()


def test_routes_reject_bad_input_before_calling_the_model() -> None:
    with TestClient(app_module("tutor").app.asgi) as http:
        missing = http.post("/grade", json={"id": "nope", "answer": "42"})
        assert missing.status_code == 404 and "no question with id" in missing.text
        assert http.post("/question", json={"topic": " "}).status_code == 400
    with TestClient(app_module("assistant").app.asgi) as http:
        assert http.post("/chat", json={"session": "s"}).status_code == 422  # no message
        assert http.post("/chat", json={"session": "", "message": "hi"}).status_code == 400
        assert http.get("/history", params={"session": "unknown"}).json() == []


@pytest.fixture
def wired(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A client of the real server, to plug into app modules."""
    with Client(served.url, timeout=300) as client:
        for name in EXPECTED:
            monkeypatch.setattr(app_module(name), "client", client)
        yield client


@pytest.mark.model
def test_builtin_summarizer_runs_as_its_own_process(served: Served) -> None:
    store = AppStore(served.home)
    store.install("builtin:summarizer")
    with open_database(load_settings(home=served.home)) as database:
        supervisor = AppSupervisor(store, database, served.url)
        running = supervisor.start("summarizer")
        try:
            response = httpx.post(
                f"{running.url}/summarize",
                json={
                    "text": "The cat sat on the mat all day. It was warm and happy there.",
                    "max_sentences": 1,
                },
                timeout=300,
            )
        finally:
            supervisor.stop("summarizer")
            store.remove("summarizer")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.strip()


@pytest.mark.model
def test_tutor_asks_and_grades_with_a_structured_verdict(wired: Client) -> None:
    tutor = app_module("tutor")
    with TestClient(tutor.app.asgi) as http:
        asked = http.post("/question", json={"topic": "the capital of France"})
        assert asked.status_code == 200, asked.text
        question = asked.json()
        assert set(question) == {"id", "topic", "question", "level", "level_reason"}
        assert "expected" not in question  # the answer is kept back
        assert question["question"] and len(question["id"]) == 12
        expected = tutor._questions[question["id"]]["expected"]
        graded = http.post("/grade", json={"id": question["id"], "answer": expected.upper()})
        assert graded.status_code == 200, graded.text
        verdict = graded.json()
        other = http.post("/grade", json={"id": question["id"], "answer": "no idea"}).json()
    assert verdict["correct"] is True  # the reference answer, whatever the model says
    assert isinstance(verdict["feedback"], str) and verdict["expected"] == expected
    assert verdict["question"] == question["question"]
    assert isinstance(other["correct"], bool) and isinstance(other["feedback"], str)


@pytest.mark.model
def test_tutor_level_follows_the_recorded_results(wired: Client) -> None:
    tutor = app_module("tutor")
    topic = "Roman numerals (level test)"
    try:
        with TestClient(tutor.app.asgi) as http:
            levels = []
            for _ in range(2):
                asked = http.post("/question", json={"topic": topic}).json()
                levels.append(asked["level"])
                expected = tutor._questions[asked["id"]]["expected"]
                assert http.post("/grade", json={"id": asked["id"], "answer": expected}).json()[
                    "correct"
                ]
            after = http.post("/question", json={"topic": topic}).json()
        assert levels[0] == tutor.START  # nothing recorded yet
        assert after["level"] > levels[-1] and "2 of your last 2" in after["level_reason"]
        mine = {"app": "tutor", "topic": "roman numerals level test"}
        recorded = wired.memories.list(kind="event", metadata=mine)
        assert len(recorded) == 2 and all(m.metadata["correct"] is True for m in recorded)
    finally:
        for item in wired.memories.list(kind="event", metadata={"app": "tutor"}):
            wired.memories.delete(item.id)


@pytest.mark.model
def test_assistant_remembers_a_session(wired: Client) -> None:
    with TestClient(app_module("assistant").app.asgi) as http:
        for message in ("My name is Ada.", "What is my name?"):
            reply = http.post("/chat", json={"session": "t1", "message": message, "max_tokens": 16})
            assert reply.status_code == 200 and reply.text.strip(), reply.text
        history = http.get("/history", params={"session": "t1"}).json()
        assert [m["role"] for m in history] == ["user", "assistant"] * 2
        assert history[0]["content"] == "My name is Ada."
        assert http.post("/reset", json={"session": "t1"}).json() == {"forgotten": True}
        assert http.get("/history", params={"session": "t1"}).json() == []


@pytest.mark.model
def test_assistant_remembers_facts_across_restarts(wired: Client) -> None:
    module = app_module("assistant")
    wired.memories.clear()
    with TestClient(module.app.asgi) as http:
        stored = http.post("/remember", json={"text": "The user's cat is called Miso."}).json()
        assert stored["status"] == "created" and stored["id"].startswith("mem_")
        again = http.post("/remember", json={"text": "the user's cat is called Miso"}).json()
        assert again == {"id": stored["id"], "status": "existing"}
        reply = http.post("/chat", json={"session": "m", "message": "My cat?", "max_tokens": 8})
        assert reply.status_code == 200, reply.text
    restarted = importlib.reload(module)  # as a new process: nothing kept in memory
    restarted.client.close()
    restarted.client = wired
    with TestClient(restarted.app.asgi) as http:
        assert http.get("/history", params={"session": "m"}).json() == []
        remembered = http.get("/memories").json()
        assert [m["id"] for m in remembered] == [stored["id"]]
        found = http.get("/memories", params={"query": "pet name"}).json()
        assert found[0]["id"] == stored["id"] and found[0]["score"] > 0
        assert http.post("/forget", json={"id": stored["id"]}).json() == {"forgotten": True}
        assert http.get("/memories").json() == []
