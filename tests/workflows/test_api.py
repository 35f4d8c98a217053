"""``/v1/workflows`` on a real uvicorn server (the fake engine answers llm nodes; what is
under test is the API): definitions, runs, traces, SSE events, human answers, webhooks,
``model: "workflow:NAME"`` in chat completions, and errors in OpenAI's shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmasos.config import Settings
from llmasos.models.store import ModelStore
from llmasos.plugins import PluginRegistry
from llmasos.server.app import create_app
from llmasos.storage import open_database
from llmasos.tools import ToolSystem
from llmasos.workflows.nodes import NodeRuntime
from llmasos.workflows.system import Workflows
from tests.server.conftest import ServerThread
from tests.server.fake_engine import FakeEngineClient
from tests.workflows.conftest import Record

GREET = """
name: greet
inputs: {name: {type: string, minLength: 1}}
nodes:
  hello: {type: llm, prompt: "Greet {{ inputs.name }}", max_tokens: 8}
  shout: {type: transform, expression: "nodes.hello.output | upper"}
  log: {type: tool, tool: record, arguments: {text: "{{ nodes.shout.output }}"}}
outputs: {answer: "{{ nodes.shout.output }}"}
"""
APPROVE = """
name: approve
inputs: {item: string}
nodes:
  ask: {type: human, prompt: "Approve {{ inputs.item }}?"}
outputs: {answer: "{{ nodes.ask.output.answer }}"}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Record]]:
    home: Path = tmp_path_factory.mktemp("workflows-api")
    settings = Settings(home=home)
    database = open_database(settings)
    engine = FakeEngineClient()
    record = Record()
    registry = PluginRegistry()
    registry.register_tool(record)
    runtime = NodeRuntime(
        engine=engine, tools=ToolSystem(settings, database, engine), registry=registry
    )
    workflows = Workflows(database, runtime)
    app = create_app(
        settings, engine, ModelStore.open(settings), database=database, workflows=workflows
    )
    with ServerThread(app) as url:
        yield url, record
    database.close()


def wait_for(
    url: str, run_id: str, status: tuple[str, ...] = ("succeeded", "failed", "waiting")
) -> dict[str, Any]:
    for _ in range(200):
        run = httpx.get(f"{url}/v1/workflows/runs/{run_id}").json()
        if run["status"] in status:
            return dict(run)
        asyncio.run(asyncio.sleep(0.05))
    raise AssertionError(f"run {run_id} stayed {run['status']}")


def test_create_list_show_run_trace_delete(server: tuple[str, Record]) -> None:
    url, _ = server
    created = httpx.post(f"{url}/v1/workflows", json={"source": GREET})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "greet" and body["hook_token"].startswith("wh_")
    assert body["order"] == ["hello", "shout", "log"]
    again = httpx.post(f"{url}/v1/workflows", json={"source": GREET})
    assert again.status_code == 400 and again.json()["error"]["code"] == "workflow_exists"
    listed = {w["name"]: w for w in httpx.get(f"{url}/v1/workflows").json()["data"]}
    assert not listed["greet"]["builtin"] and listed["pipeline"]["builtin"]

    run = httpx.post(f"{url}/v1/workflows/greet/runs?wait=true", json={"input": {"name": "Ada"}})
    assert run.status_code == 200, run.text
    data = run.json()
    assert data["status"] == "succeeded", data["error"]
    assert data["output"] == {"answer": "HELLO WORLD!"}
    steps = {s["node"]: s for s in data["steps"]}
    assert steps["hello"]["model"] and steps["hello"]["usage"]["completion_tokens"] > 0
    assert steps["log"]["output"]["result"] == {"recorded": "HELLO WORLD!"}
    assert all(s["duration_s"] is not None for s in data["steps"])
    runs = httpx.get(f"{url}/v1/workflows/greet/runs").json()["data"]
    assert runs[0]["id"] == data["id"]

    events = []
    with httpx.stream("GET", f"{url}/v1/workflows/runs/{data['id']}/events") as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    kinds = [e["type"] for e in events]
    assert kinds.count("node.started") == 3 and kinds.count("node.finished") == 3
    assert kinds[-1] == "run.finished" and events[-1]["status"] == "succeeded"

    assert httpx.delete(f"{url}/v1/workflows/greet").json()["deleted"] is True
    assert httpx.get(f"{url}/v1/workflows/greet").status_code == 404


COSTS = """
name: costs
inputs: {name: string}
nodes:
  priced: {type: llm, prompt: "Greet {{ inputs.name }}", max_tokens: 4}
  unpriced: {type: llm, model: "nopricemodel", prompt: "Greet {{ inputs.name }}", max_tokens: 4}
  free: {type: transform, expression: "nodes.priced.output ~ nodes.unpriced.output"}
outputs: {answer: "{{ nodes.free.output }}"}
"""


def test_trace_prices_each_node_from_the_price_table(server: tuple[str, Record]) -> None:
    url, _ = server
    price = {"prompt_per_1k": 1.5, "completion_per_1k": 3.0}
    assert httpx.put(f"{url}/admin/prices/smollm2", json=price).status_code == 200
    httpx.post(f"{url}/v1/workflows", json={"source": COSTS, "replace": True})
    reply = httpx.post(f"{url}/v1/workflows/costs/runs?wait=true", json={"input": {"name": "Bo"}})
    data = reply.json()
    assert data["status"] == "succeeded", data["error"]
    steps = {s["node"]: s for s in data["steps"]}
    used = steps["priced"]["usage"]
    assert used["prompt_tokens"] > 0 and used["completion_tokens"] > 0
    expected = (used["prompt_tokens"] * 1.5 + used["completion_tokens"] * 3.0) / 1000
    assert steps["priced"]["cost"] == pytest.approx(expected)
    assert steps["unpriced"]["usage"]["completion_tokens"] > 0
    assert steps["unpriced"]["cost"] is None  # a model without a price: unknown, not 0
    assert steps["free"]["cost"] == 0  # no model call
    total = data["usage"]
    assert total["cost"] == pytest.approx(expected) and total["priced"] is False
    assert total["total_tokens"] == sum(
        s["usage"]["prompt_tokens"] + s["usage"]["completion_tokens"] for s in data["steps"]
    )
    # the stored cost is the price when the node ran: a later price leaves it
    price = {"prompt_per_1k": 100.0, "completion_per_1k": 100.0}
    assert httpx.put(f"{url}/admin/prices/smollm2", json=price).status_code == 200
    again = httpx.get(f"{url}/v1/workflows/runs/{data['id']}").json()
    assert again["usage"]["cost"] == pytest.approx(expected)


def test_bad_definitions_and_inputs_are_400(server: tuple[str, Record]) -> None:
    url, _ = server
    reply = httpx.post(
        f"{url}/v1/workflows", json={"source": "name: x\nnodes:\n  a: {type: nope}\n"}
    )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "invalid_workflow" and "line 3, column 3" in error["message"]
    reply = httpx.post(f"{url}/v1/workflows", json={"source": "name: [x"})
    assert reply.status_code == 400 and "invalid YAML at line 1" in reply.json()["error"]["message"]
    reply = httpx.post(f"{url}/v1/workflows/pipeline/runs", json={"input": {"text": 5}})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "text"
    assert httpx.get(f"{url}/v1/workflows/runs/run_missing").status_code == 404
    assert httpx.post(f"{url}/v1/workflows/nope/runs", json={}).status_code == 404


def test_human_node_answer_through_the_api(server: tuple[str, Record]) -> None:
    url, _ = server
    httpx.post(f"{url}/v1/workflows", json={"source": APPROVE, "replace": True})
    run = httpx.post(f"{url}/v1/workflows/approve/runs", json={"input": {"item": "v2"}})
    assert run.status_code == 202
    waiting = wait_for(url, run.json()["id"])
    assert waiting["status"] == "waiting" and waiting["waiting_for"] == ["ask"]
    answer_url = f"{url}/v1/workflows/runs/{waiting['id']}/nodes/ask/answer"
    assert httpx.post(answer_url, json={"answer": "ok"}).status_code == 200
    again = httpx.post(answer_url, json={"answer": "again"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_answered"
    done = wait_for(url, waiting["id"], ("succeeded", "failed"))
    assert done["output"] == {"answer": "ok"}
    assert httpx.post(f"{url}/v1/workflows/runs/{done['id']}/cancel").status_code == 400


def test_webhook_starts_a_run_and_a_wrong_token_starts_nothing(server: tuple[str, Record]) -> None:
    url, _ = server
    created = httpx.post(
        f"{url}/v1/workflows", json={"source": APPROVE.replace("approve", "hooked")}
    ).json()
    before = httpx.get(f"{url}/v1/workflows/hooked/runs").json()["data"]
    wrong = httpx.post(f"{url}/v1/workflows/hooked/hooks/wh_wrong", json={"item": "x"})
    assert wrong.status_code == 404
    assert httpx.get(f"{url}/v1/workflows/hooked/runs").json()["data"] == before == []
    good = httpx.post(
        f"{url}/v1/workflows/hooked/hooks/{created['hook_token']}", json={"item": "x"}
    )
    assert good.status_code == 202 and good.json()["trigger"] == "webhook"
    assert wait_for(url, good.json()["id"])["status"] == "waiting"


def test_workflow_as_a_chat_model(server: tuple[str, Record]) -> None:
    url, _ = server
    httpx.post(f"{url}/v1/workflows", json={"source": GREET, "replace": True})
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    reply = client.chat.completions.create(
        model="workflow:greet", messages=[{"role": "user", "content": "Grace"}]
    )
    assert reply.choices[0].message.content == "HELLO WORLD!"
    stream = client.chat.completions.create(
        model="workflow:greet", messages=[{"role": "user", "content": "Grace"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "HELLO WORLD!"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="workflow:ghost", messages=[{"role": "user", "content": "x"}]
        )
    client.close()


def test_the_sdk_clients_reach_workflows(server: tuple[str, Record]) -> None:
    from llmasos.errors import InvalidRequestError, NotFoundError
    from llmasos.sdk import AsyncClient, Client, Workflow

    url, _ = server
    with Client(url) as client:
        greet = Workflow.from_dict(load_yaml(GREET))
        assert client.workflows.create(greet, replace=True)["order"] == ["hello", "shout", "log"]
        assert "greet" in {w["name"] for w in client.workflows.list()}
        assert client.workflows.get("greet")["input_schema"]["required"] == ["name"]
        done = client.workflows.run("greet", {"name": "Ada"})
        assert done.status == "succeeded" and done.output == {"answer": "HELLO WORLD!"}
        assert [s["node"] for s in done.steps] == ["hello", "shout", "log"]
        assert done.usage["total_tokens"] > 0 and done.settled
        client.workflows.create(APPROVE, replace=True)
        waiting = client.workflows.run("approve", {"item": "v3"})
        assert waiting.status == "waiting" and waiting.waiting_for == ["ask"]
        client.workflows.answer(waiting.id, "ask", "yes")
        for _ in range(100):
            finished = client.workflows.get_run(waiting.id)
            if finished.status == "succeeded":
                break
            asyncio.run(asyncio.sleep(0.05))
        assert finished.output == {"answer": "yes"}
        with pytest.raises(NotFoundError):
            client.workflows.run("no-such-workflow")
        with pytest.raises(InvalidRequestError, match="line 3"):
            client.workflows.create("name: x\nnodes:\n  a: {type: nope}\n")
        with pytest.raises(InvalidRequestError, match="text"):
            client.workflows.run("pipeline", {"text": 5})

    async def go() -> None:
        async with AsyncClient(url) as client:
            twice = {"name": "twice", "inputs": {"n": "integer"}, "nodes": TWICE}
            await client.workflows.create(twice, replace=True)
            started = await client.workflows.run("twice", {"n": 4}, wait=False)
            assert started.status in ("queued", "running", "succeeded")
            for _ in range(100):
                run = await client.workflows.get_run(started.id)
                if run.settled:
                    break
                await asyncio.sleep(0.05)
            assert run.status == "succeeded" and run.output == {"double": 8}
            await client.workflows.delete("twice")
            assert "twice" not in {w["name"] for w in await client.workflows.list()}

    asyncio.run(go())


TWICE = {"double": {"type": "transform", "expression": "inputs.n * 2"}}


def load_yaml(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)
