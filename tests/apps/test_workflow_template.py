"""``llmasos app new --template workflow``: the app it writes installs, starts as its own
process with a key limited to ``workflows``, stores its workflow on the OS as the app's own
user and runs it there (an in-process server under authentication whose kernel is the fake
engine, scripted to answer the workflow's JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.usage import PriceTable, UsageLog
from llmasos.access.users import UserManager
from llmasos.apps.manifest import load_manifest
from llmasos.apps.scaffold import scaffold, template_files
from llmasos.apps.store import AppStore
from llmasos.apps.supervisor import AppSupervisor, app_user
from llmasos.config import load_settings
from llmasos.kernel.interface import GenerateRequest
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.storage import Database, open_database
from llmasos.workflows.definition import load_workflow
from llmasos.workflows.nodes import NodeRuntime
from llmasos.workflows.system import Workflows
from tests.apps.conftest import Served, confinement_for_tests
from tests.server.conftest import ServerThread
from tests.server.fake_engine import FakeEngineClient

ANSWER = {"title": "A cat", "summary": "A cat sat on a warm mat."}


def script(request: GenerateRequest) -> list[str]:
    if request.sampling.structured is not None:
        text = json.dumps(ANSWER)
        return [text[:12], text[12:]]
    return ["Hello"]


@dataclass
class Server:
    url: str
    home: Path
    database: Database
    admin_key: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("workflow-app-home")
    settings = load_settings(home=home, auth=True)
    database = open_database(settings)
    UserManager(database).create("root", role="admin")
    keys = KeyManager(database)
    admin_key = keys.create("root", "ops").secret
    PriceTable(database).set("smollm2", prompt_per_1k=1.0, completion_per_1k=2.0)
    engine = FakeEngineClient()
    engine.script = script
    app = create_app(
        settings,
        engine,
        ModelStore.open(settings),
        keys=keys,
        database=database,
        workflows=Workflows(database, NodeRuntime(engine=engine)),
    )
    try:
        with ServerThread(app) as url:
            yield Server(url, home, database, admin_key)
    finally:
        database.close()


def test_the_template_writes_a_workflow_named_after_the_app() -> None:
    files = template_files("workflow", "title-maker")
    assert set(files) == {"llmasos-app.toml", "app.py", "workflow.yaml"}
    workflow = load_workflow(files["workflow.yaml"])  # as the OS checks it
    assert workflow.name == "title-maker" and workflow.order == ["clean", "infer", "shape"]
    assert list(workflow.inputs) == ["text"]


def test_the_workflow_app_runs_its_workflow_on_the_os(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "title-maker"
    manifest = scaffold("title-maker", "workflow", source)
    assert manifest.scopes == ["workflows"]
    assert any("app's own user" in line for line in load_manifest(source).permissions.describe())
    store = AppStore(server.home)
    store.install(str(source))
    supervisor = AppSupervisor(store, server.database, server.url, confinement_for_tests())
    running = supervisor.start("title-maker")
    try:
        keys = KeyManager(server.database).list(app_user("title-maker"))
        assert [k.scopes for k in keys if k.status() == "active"] == [["workflows"]]

        reply = httpx.post(
            f"{running.url}/run", json={"text": "  The cat sat on the mat.  "}, timeout=60
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["output"] == {**ANSWER, "text": "A cat: A cat sat on a warm mat."}

        trace = httpx.get(f"{running.url}/runs/{body['run_id']}", timeout=30).json()
        nodes = {n["node"]: n for n in trace["nodes"]}
        assert list(nodes) == ["clean", "infer", "shape"] and trace["status"] == "succeeded"
        assert nodes["infer"]["tokens"] > 0 and nodes["infer"]["cost"] > 0
        assert nodes["clean"]["cost"] == 0 and trace["usage"]["priced"] is True

        # the workflow and its run are the app user's own: the admin's key does not see them
        admin = {"Authorization": f"Bearer {server.admin_key}"}
        assert httpx.get(f"{server.url}/v1/workflows/title-maker", headers=admin).status_code == 404
        reply = httpx.get(f"{server.url}/v1/workflows/runs/{body['run_id']}", headers=admin)
        assert reply.status_code == 404

        again = httpx.post(f"{running.url}/run", json={"text": "Another text."}, timeout=60)
        assert again.status_code == 200 and again.json()["run_id"] != body["run_id"]
        second = httpx.get(f"{running.url}/runs/{again.json()['run_id']}", timeout=30).json()

        # the nodes' tokens are metered to the app's user, and priced like its requests
        usage = {row.group: row for row in UsageLog(server.database).report(by="user")}
        metered = usage[app_user("title-maker")]
        assert metered.total_tokens == (
            trace["usage"]["total_tokens"] + second["usage"]["total_tokens"]
        )
        assert metered.priced
        assert metered.cost == pytest.approx(trace["usage"]["cost"] + second["usage"]["cost"])
        empty = httpx.post(f"{running.url}/run", json={"text": ""}, timeout=60)
        assert empty.status_code == 400  # the workflow's input schema, through the OS
        assert "'text'" in empty.json()["error"]["message"]
        assert httpx.post(f"{running.url}/run", json={}, timeout=60).status_code == 422
        missing = httpx.get(f"{running.url}/runs/run_missing", timeout=30)
        assert missing.status_code == 404
    finally:
        supervisor.stop("title-maker")
        store.remove("title-maker")


@pytest.mark.model
def test_the_workflow_app_on_the_embedded_model(served: Served, tmp_path: Path) -> None:
    """The scaffolded app, unchanged, against a real ``llmasos serve`` and its model."""
    source = tmp_path / "titler"
    scaffold("titler", "workflow", source)
    store = AppStore(served.home)
    store.install(str(source))
    with open_database(load_settings(home=served.home)) as database:
        supervisor = AppSupervisor(store, database, served.url, confinement_for_tests())
        running = supervisor.start("titler")
        try:
            text = "The cat sat on the mat all day. It was warm and happy there."
            reply = httpx.post(f"{running.url}/run", json={"text": text}, timeout=600)
            assert reply.status_code == 200, reply.text
            output = reply.json()["output"]
            assert output["title"].strip() and output["summary"].strip()
            assert output["text"].startswith(output["title"].strip())
            trace = httpx.get(f"{running.url}/runs/{reply.json()['run_id']}", timeout=60).json()
            infer = next(n for n in trace["nodes"] if n["node"] == "infer")
            assert infer["status"] == "succeeded" and infer["tokens"] > 0
            # priced when the shared server's price table has the model, else unknown
            assert trace["usage"]["priced"] is (infer["cost"] is not None)
        finally:
            supervisor.stop("titler")
            store.remove("titler")
