"""``llmasos do`` and ``llmasos task ...`` against a real server on loopback whose kernel is
the scripted model of the agent tests (plugged in through the engine-client interface)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmasos.agents import AgentRuntime, TaskStore
from llmasos.cli.main import app, main
from llmasos.cli.root import state
from llmasos.config import load_settings
from llmasos.models import open_model_store
from llmasos.plugins import PluginRegistry
from llmasos.server.app import create_app
from llmasos.storage import ContentCipher, open_database
from llmasos.tools import ToolSystem
from tests.agents.conftest import Lookup, ScriptedModel, Send
from tests.cli.test_output import documented_fields
from tests.server.conftest import ServerThread

runner = CliRunner()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ScriptedModel, Send]]:
    home = tmp_path_factory.mktemp("tasks-cli-home")
    settings = load_settings(home=home)
    database = open_database(settings)
    model, send = ScriptedModel(), Send()
    registry = PluginRegistry()
    registry.register_tool(Lookup())
    registry.register_tool(send)
    runtime = AgentRuntime(
        TaskStore(database, ContentCipher(b"c" * 32)),
        ToolSystem(settings, database, model),
        registry=registry,
    )
    api = create_app(settings, model, open_model_store(settings), agents=runtime)
    with ServerThread(api) as url:
        yield int(url.rsplit(":", 1)[1]), model, send
    database.close()


@pytest.fixture
def cli(
    served: tuple[int, ScriptedModel, Send], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ScriptedModel, Send]]:
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("LLMASOS_PORT", str(served[0]))
    monkeypatch.setenv("COLUMNS", "100")
    state.reset()
    yield served[1], served[2]
    state.reset()


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


def test_do_shows_steps_and_asks_for_approval(cli: tuple[ScriptedModel, Send]) -> None:
    model, send = cli
    model.replies = [
        ("call", "lookup", {"title": "shopping"}),
        ("call", "send", {"to": "bob", "text": "milk"}),
        "Sent bob the list.",
    ]
    code, out = run("do", "Send bob my shopping list", "--yes")
    assert code == 0, out
    assert "[1] lookup" in out and "[2] send" in out and "needs approval: send 'milk' to bob" in out
    assert "Sent bob the list." in out and "completed" in out
    assert send.calls == 1

    # without a terminal and without --yes the task is left waiting, with how to go on
    model.replies = [("call", "send", {"to": "carol", "text": "hi"}), "Done."]
    code, out = run("do", "Say hi to carol")
    assert code == 0 and "waits for approval of step 1" in out
    task_id = out.split("task ", 1)[1].split()[0]
    code, out = run("task", "ps")
    assert code == 0 and task_id in out and "waiting_approval" in out
    code, out = run("task", "deny", task_id, "1")
    assert code == 0 and "step 1 denied" in out
    code, out = run("task", "logs", task_id, "--follow")
    assert code == 0 and "[1] send" in out and "denied" in out and "completed" in out
    steps = json.loads(run("task", "logs", task_id, "--json")[1])
    assert set(documented_fields("task", "logs")) <= set(steps[0])
    tasks = json.loads(run("task", "ps", "--json")[1])
    assert set(documented_fields("task", "ps")) <= set(tasks[0])
    assert send.calls == 1  # the denied send never ran


def test_kill_and_bad_input_are_one_line(
    cli: tuple[ScriptedModel, Send], capsys: pytest.CaptureFixture[str]
) -> None:
    model, _ = cli
    model.replies = [("call", "send", {"to": "dave", "text": "x"})]
    code, out = run("do", "Message dave", "--detach")
    assert code == 0 and out.startswith("task_")
    task_id = out.strip()
    code, out = run("task", "kill", task_id)
    assert code == 0 and f"task {task_id} cancelled" in out
    capsys.readouterr()
    for args in (
        ["task", "approve", "task_nope", "1"],
        ["task", "approve", task_id, "1"],  # cancelled: nothing waits any more
        ["do", "x", "--tool", "no_such_tool"],
        ["do", "x", "--max-steps", "0"],
    ):
        with pytest.raises(SystemExit) as caught:
            main(args)
        assert caught.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("Error:") and err.count("\n") == 1, err


def test_sdk_tasks(served: tuple[int, ScriptedModel, Send]) -> None:
    """``Client.tasks`` and ``AsyncClient.tasks`` over the same server."""
    import asyncio

    from llmasos import AsyncClient, Client
    from llmasos.errors import NotFoundError

    port, model, send = served
    model.replies = [("call", "send", {"to": "erin", "text": "hello"}), "Sent."]
    with Client(f"http://127.0.0.1:{port}") as client:
        task = client.tasks.create("Say hello to erin", tools=["demo"], budget={"max_steps": 3})
        waiting = client.tasks.wait(task.id, timeout=30)
        assert waiting.status == "waiting_approval"
        assert client.tasks.steps(task.id)[0]["description"] == "send 'hello' to erin"
        client.tasks.approve(task.id, 1)
        done = client.tasks.wait(task.id, timeout=30)
        assert done.status == "completed" and done.result == "Sent." and done.steps == 2
        assert send.sent[f"{task.id}:1"] == {"to": "erin", "text": "hello"}
        assert task.id in [t.id for t in client.tasks.list(status="completed")]
        with pytest.raises(NotFoundError):
            client.tasks.get("task_missing")

    async def async_side() -> None:
        model.replies = ["Nothing to do."]
        async with AsyncClient(f"http://127.0.0.1:{port}") as client:
            task = await client.tasks.create("Nothing", tools=["lookup"])
            done = await client.tasks.wait(task.id, timeout=30)
            assert done.status == "completed" and (await client.tasks.steps(task.id))

    asyncio.run(async_side())
