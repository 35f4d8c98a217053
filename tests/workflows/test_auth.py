"""``/v1/workflows`` under authentication (fake engine): the ``workflows`` scope, each user's
workflows and runs invisible to others (404), webhooks open to their token only, and a tool
node acting with its run owner's permissions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import load_settings
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

FLOW = """
name: note
inputs: {text: string}
nodes:
  save: {type: tool, tool: record, arguments: {text: "{{ inputs.text }}"}}
outputs: {saved: "{{ nodes.save.output.result.recorded }}"}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    home: Path = tmp_path_factory.mktemp("workflows-auth")
    settings = load_settings(home=home, auth=True)
    database = open_database(settings)
    users, keys = UserManager(database), KeyManager(database)
    secrets = {}
    for name in ("alice", "bob"):
        users.create(name, role="user")
        secrets[name] = keys.create(name, "laptop").secret
    secrets["alice-chat"] = keys.create("alice", "chat only", scopes=["chat"]).secret
    engine = FakeEngineClient()
    registry = PluginRegistry()
    registry.register_tool(Record())
    runtime = NodeRuntime(
        engine=engine, tools=ToolSystem(settings, database, engine), registry=registry
    )
    app = create_app(
        settings,
        engine,
        ModelStore.open(settings),
        keys=keys,
        database=database,
        workflows=Workflows(database, runtime),
    )
    with ServerThread(app) as url:
        yield url, secrets
    database.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_owners_scopes_and_webhooks(server: tuple[str, dict[str, str]]) -> None:
    url, keys = server
    alice, bob = auth(keys["alice"]), auth(keys["bob"])
    assert httpx.get(f"{url}/v1/workflows").status_code == 401
    assert httpx.get(f"{url}/v1/workflows", headers=auth(keys["alice-chat"])).status_code == 403
    created = httpx.post(f"{url}/v1/workflows", json={"source": FLOW}, headers=alice)
    assert created.status_code == 201, created.text
    run = httpx.post(
        f"{url}/v1/workflows/note/runs?wait=true", json={"input": {"text": "hi"}}, headers=alice
    ).json()
    assert run["status"] == "succeeded", run["error"]
    assert run["output"] == {"saved": "hi"}  # the tool ran with alice's scopes

    assert httpx.get(f"{url}/v1/workflows/note", headers=bob).status_code == 404
    assert httpx.get(f"{url}/v1/workflows/runs/{run['id']}", headers=bob).status_code == 404
    assert httpx.post(f"{url}/v1/workflows/note/runs", json={}, headers=bob).status_code == 404
    assert httpx.get(f"{url}/v1/workflows/runs/{run['id']}/events", headers=bob).status_code == 404
    assert httpx.post(f"{url}/v1/workflows/runs/{run['id']}/resume", headers=bob).status_code == 404
    names = [w["name"] for w in httpx.get(f"{url}/v1/workflows", headers=bob).json()["data"]]
    assert "note" not in names and "pipeline" in names

    token = created.json()["hook_token"]
    wrong = httpx.post(f"{url}/v1/workflows/note/hooks/wh_0000", json={"text": "x"})
    assert wrong.status_code == 404
    hooked = httpx.post(f"{url}/v1/workflows/note/hooks/{token}", json={"text": "from hook"})
    assert hooked.status_code == 202 and hooked.json()["trigger"] == "webhook"
    runs = httpx.get(f"{url}/v1/workflows/note/runs", headers=alice).json()["data"]
    assert {r["trigger"] for r in runs} == {"manual", "webhook"} and len(runs) == 2
