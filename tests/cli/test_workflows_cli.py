"""``llmasos workflow`` against a real server on loopback (authentication off), whose kernel
is the fake engine: create, list, show, run with inputs (following the events), runs,
answer, trace (tree and Gantt PNG), cancel, rm, and errors as one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmasos.access.usage import PriceTable
from llmasos.cli.main import main
from llmasos.cli.root import state
from llmasos.config import load_settings
from llmasos.models import open_model_store
from llmasos.server.app import create_app
from llmasos.storage import open_database
from llmasos.workflows.nodes import NodeRuntime
from llmasos.workflows.system import Workflows
from tests.cli.invoke import run as invoke
from tests.server.conftest import ServerThread
from tests.server.fake_engine import FakeEngineClient

FLOW = """
name: shout
inputs: {text: string, times: {type: integer, default: 1}}
nodes:
  hello: {type: llm, prompt: "Say {{ inputs.text }}", max_tokens: 4}
  loud: {type: transform, expression: "(nodes.hello.output | upper) * inputs.times"}
  check: {type: human, prompt: "OK to send {{ nodes.loud.output }}?"}
outputs: {text: "{{ nodes.loud.output }}", answer: "{{ nodes.check.output.answer }}"}
"""


@pytest.fixture(scope="module")
def server_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    home = tmp_path_factory.mktemp("workflow-cli-home")
    settings = load_settings(home=home)
    database = open_database(settings)
    PriceTable(database).set("smollm2", prompt_per_1k=1.0, completion_per_1k=2.0)
    engine = FakeEngineClient()
    workflows = Workflows(database, NodeRuntime(engine=engine))
    app_ = create_app(settings, engine, open_model_store(settings), workflows=workflows)
    with ServerThread(app_) as url:
        yield int(url.rsplit(":", 1)[1])
    database.close()


@pytest.fixture
def cli(server_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("LLMASOS_PORT", str(server_port))
    monkeypatch.setenv("COLUMNS", "100")
    state.reset()
    yield tmp_path
    state.reset()


def run(*args: str) -> tuple[int, str]:
    return invoke(*args, stream="both")


def test_workflow_commands(cli: Path) -> None:
    (cli / "shout.yaml").write_text(FLOW)
    code, out = run("workflow", "create", str(cli / "shout.yaml"))
    assert code == 0 and "workflow shout: 3 nodes" in out and "/hooks/wh_" in out
    code, out = run("workflow", "ls")
    assert code == 0 and "shout" in out and "pipeline (built-in)" in out
    code, out = run("workflow", "show", "shout")
    assert code == 0 and "type: human" in out

    code, out = run("workflow", "run", "shout", "--input", "text=hi", "--input", "times=2")
    assert code == 0, out
    assert "▶ hello" in out and "hello succeeded" in out and "loud succeeded" in out
    assert "waits for check: llmasos workflow answer run_" in out
    run_id = out.split("waits for check")[0].split()[-1]

    code, out = run("workflow", "answer", run_id, "check", "yes")
    assert code == 0, out
    output = json.JSONDecoder().raw_decode(out[out.index("{") :])[0]
    assert output == {"text": "HELLO WORLD!HELLO WORLD!", "answer": "yes"}

    code, out = run("workflow", "runs", "shout")
    assert code == 0 and run_id in out and "succeeded" in out
    code, out = run("workflow", "trace", run_id, "--png", str(cli / "gantt.png"))
    assert code == 0 and "hello  llm  succeeded" in out and "loud  transform" in out
    assert (cli / "gantt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trace = json.loads(run("workflow", "trace", run_id, "--json")[1])
    assert [s["node"] for s in trace["steps"]] == ["hello", "loud", "check"]
    hello = trace["steps"][0]["usage"]
    cost = (hello["prompt_tokens"] * 1.0 + hello["completion_tokens"] * 2.0) / 1000
    assert cost > 0 and trace["steps"][0]["cost"] == pytest.approx(cost)
    assert trace["usage"] == {
        "prompt_tokens": hello["prompt_tokens"],
        "completion_tokens": hello["completion_tokens"],
        "total_tokens": hello["prompt_tokens"] + hello["completion_tokens"],
        "cost": pytest.approx(cost),
        "priced": True,
    }
    root, first = out.splitlines()[:2]  # the tree: the run's total, then each node's own
    assert run_id in root and f"cost {cost:,.6f}" in root
    assert first.startswith(("├── hello", "└── hello")) and f"cost {cost:,.6f}" in first

    code, out = run("workflow", "rm", "shout")
    assert code == 0 and "deleted workflow shout" in out


def test_workflow_errors_are_one_line(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cli / "bad.yaml").write_text("name: bad\nnodes:\n  a: {type: lmm}\n")
    for args, message in (
        (["workflow", "create", str(cli / "bad.yaml")], "node 'a' (line 3, column 3)"),
        (["workflow", "show", "ghost"], "no workflow named 'ghost'"),
        (["workflow", "run", "pipeline", "--input", "text=5", "--input", "x=1"], "input 'x'"),
        (["workflow", "run", "pipeline", "--input", "novalue"], "expected NAME=VALUE"),
        (["workflow", "cancel", "run_nope"], "no run 'run_nope'"),
    ):
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
