"""``/v1/tasks`` over a real ``llmasos serve --auth`` with the embedded SmolLM2: a task runs
and its steps are recorded, a budget stops it, the approval flow, a restart, ownership and
bad input. Structure only: what the tiny model says varies between CPUs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import Settings
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.storage import open_database
from tests.serving import llmasos_serve

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]
FINAL = {"completed", "stopped", "failed", "cancelled"}
BUDGET_CODES = {"max_steps", "max_tokens", "max_seconds"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    home: Path = tmp_path_factory.mktemp("tasks-home")
    with open_database(Settings(home=home)) as database:
        users, keys = UserManager(database), KeyManager(database)
        secrets = {}
        for name in ("alice", "bob"):
            users.create(name, role="user")
            secrets[name] = keys.create(name, "laptop").secret
    return home, secrets


@pytest.fixture(scope="module")
def server(home: tuple[Path, dict[str, str]]) -> Iterator[str]:
    with llmasos_serve(home[0], "--auth") as url:
        yield url


def client(url: str, secrets: dict[str, str], name: str) -> httpx.Client:
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {secrets[name]}"}, timeout=120
    )


def wait(api: httpx.Client, task_id: str, until: set[str], timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = api.get(f"/v1/tasks/{task_id}").json()
        if task["status"] in until:
            return task
        assert time.monotonic() < deadline, f"task stayed {task['status']}"
        time.sleep(0.3)


def steps_of(api: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = api.get(f"/v1/tasks/{task_id}/steps").json()["data"]
    return data


def check_steps(steps: list[dict[str, Any]], tools: set[str]) -> None:
    """Steps are numbered 1..n without gaps, none left half-done, calls name allowed tools."""
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    for step in steps:
        assert step["kind"] in ("tool_call", "answer")
        assert step["status"] != "running"
        if step["kind"] == "tool_call":
            assert step["tool"] in tools and isinstance(step["arguments"], dict)


def test_a_task_runs_and_records_its_steps(server: str, home: tuple[Path, dict[str, str]]) -> None:
    with client(server, home[1], "alice") as api:
        body = {
            "instruction": "What is 17 times 23? Use the calculator.",
            "tools": ["calculator"],
            "tool_choice": "required",
            "budget": {"max_steps": 3, "max_seconds": 200},
        }
        created = api.post("/v1/tasks", json=body)
        assert created.status_code == 200, created.text
        task = created.json()
        assert task["status"] in ("queued", "running") and task["id"].startswith("task_")
        done = wait(api, task["id"], FINAL)
        listed = api.get("/v1/tasks").json()["data"]
        assert task["id"] in [t["id"] for t in listed]
        if done["status"] == "failed":  # the tiny model's forced call ran past its output cap
            assert done["error_code"] == "invalid_tool_call" and not steps_of(api, task["id"])
            return
        assert done["status"] in ("completed", "stopped"), done
        if done["status"] == "stopped":
            assert done["error_code"] in BUDGET_CODES
        steps = steps_of(api, task["id"])
        check_steps(steps, {"calculator"})
        first = steps[0]  # tool_choice required: the first step is a call, run and recorded
        assert first["kind"] == "tool_call" and first["status"] in ("completed", "failed")
        assert first["usage"]["prompt_tokens"] > 0 and first["result"] is not None
        assert done["steps"] == len(steps) and done["usage"]["total_tokens"] > 0


def test_budgets_stop_a_task(server: str, home: tuple[Path, dict[str, str]]) -> None:
    with client(server, home[1], "alice") as api:
        body = {
            "instruction": "Add 1 and 2 with the calculator.",
            "tools": ["calculator"],
            "tool_choice": "required",
            "budget": {"max_steps": 1},
        }
        task = api.post("/v1/tasks", json=body).json()
        stopped = wait(api, task["id"], FINAL)
        assert stopped["status"] == "stopped" and stopped["error_code"] == "max_steps"
        assert stopped["steps"] == 1 and "after 1 steps" in stopped["result"]
        tiny = {"instruction": "Say hi.", "budget": {"max_tokens": 20}}
        task = api.post("/v1/tasks", json=tiny).json()
        stopped = wait(api, task["id"], FINAL)
        assert stopped["status"] == "stopped" and stopped["error_code"] == "max_tokens"
        assert stopped["usage"]["total_tokens"] <= 20


def test_side_effects_wait_for_approval_across_a_restart(
    home: tuple[Path, dict[str, str]],
) -> None:
    """memory_add changes what the OS remembers: it stops for approval, the waiting task
    survives a restart, another user cannot approve it, and approving runs it."""
    path, secrets = home
    body = {
        "instruction": "Remember that my favourite colour is green.",
        "tools": ["memory_add"],
        "tool_choice": "required",
        "budget": {"max_steps": 2, "max_seconds": 200},
    }
    with llmasos_serve(path, "--auth") as url, client(url, secrets, "alice") as api:
        task = api.post("/v1/tasks", json=body).json()
        waiting = wait(api, task["id"], FINAL | {"waiting_approval"})
        assert waiting["status"] == "waiting_approval"
        step = steps_of(api, task["id"])[0]
        assert step["status"] == "waiting_approval" and step["tool"] == "memory_add"
        assert step["description"].startswith("remember about you:")
        assert api.get("/v1/memories").json()["data"] == []  # nothing happened yet
    with llmasos_serve(path, "--auth") as url, client(url, secrets, "alice") as api:
        assert api.get(f"/v1/tasks/{task['id']}").json()["status"] == "waiting_approval"
        with client(url, secrets, "bob") as bob:
            assert bob.post(f"/v1/tasks/{task['id']}/steps/1/approve").status_code == 404
        approved = api.post(f"/v1/tasks/{task['id']}/steps/1/approve")
        assert approved.status_code == 200, approved.text
        after = wait(api, task["id"], FINAL | {"waiting_approval"})
        first = steps_of(api, task["id"])[0]
        assert first["status"] in ("completed", "failed")
        if first["status"] == "completed":
            assert first["effects"] and len(api.get("/v1/memories").json()["data"]) == 1
        again = api.post(f"/v1/tasks/{task['id']}/steps/1/approve")
        assert again.status_code == 400  # decided already
        if after["status"] == "waiting_approval":
            killed = api.post(f"/v1/tasks/{task['id']}/cancel").json()
            assert killed["status"] == "cancelled"


def test_a_running_task_resumes_or_fails_cleanly_after_a_restart(
    home: tuple[Path, dict[str, str]],
) -> None:
    path, secrets = home
    body = {
        "instruction": "Compute 2+2, then 3+3, then 4+4 with the calculator.",
        "tools": ["calculator", "time"],
        "tool_choice": "required",
        "budget": {"max_steps": 4, "max_seconds": 300},
    }
    with llmasos_serve(path, "--auth") as url, client(url, secrets, "alice") as api:
        task = api.post("/v1/tasks", json=body).json()
        time.sleep(0.5)  # stopped mid-run (or, on a fast machine, already done)
    with llmasos_serve(path, "--auth") as url, client(url, secrets, "alice") as api:
        done = wait(api, task["id"], FINAL)
        assert done["status"] in ("completed", "stopped", "failed"), done
        if done["status"] == "failed":
            assert done["result"]  # a reason, not silence
        check_steps(steps_of(api, task["id"]), {"calculator", "time_now", "time_convert"})


def test_another_users_task_is_404(server: str, home: tuple[Path, dict[str, str]]) -> None:
    with client(server, home[1], "alice") as alice, client(server, home[1], "bob") as bob:
        body = {"instruction": "Say hi.", "budget": {"max_steps": 1, "max_tokens": 20}}
        task = alice.post("/v1/tasks", json=body).json()
        for method, path in [
            ("GET", f"/v1/tasks/{task['id']}"),
            ("GET", f"/v1/tasks/{task['id']}/steps"),
            ("GET", f"/v1/tasks/{task['id']}/events"),
            ("POST", f"/v1/tasks/{task['id']}/cancel"),
            ("POST", f"/v1/tasks/{task['id']}/steps/1/deny"),
        ]:
            answer = bob.request(method, path)
            assert answer.status_code == 404, (method, path)
            assert answer.json()["error"]["type"] == "not_found_error"
        assert task["id"] not in [t["id"] for t in bob.get("/v1/tasks").json()["data"]]


def test_events_stream_replays_the_steps(server: str, home: tuple[Path, dict[str, str]]) -> None:
    with client(server, home[1], "alice") as api:
        body = {
            "instruction": "What time is it in Tokyo?",
            "tools": ["time_now"],
            "tool_choice": "required",
            "budget": {"max_steps": 2, "max_seconds": 200},
        }
        task = api.post("/v1/tasks", json=body).json()
        events: list[tuple[str, dict[str, Any]]] = []
        with api.stream("GET", f"/v1/tasks/{task['id']}/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            kind = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and line != "data: [DONE]":
                    events.append((kind, json.loads(line[6:])))
        assert events[-1][0] == "task" and events[-1][1]["status"] in FINAL
        seen = {e["step"] for k, e in events if k == "step"}
        assert seen == {s["step"] for s in steps_of(api, task["id"])}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"instruction": "x", "tools": ["no_such_tool"]}, "tools"),
        ({"instruction": "x", "budget": {"max_steps": 0}}, "budget.max_steps"),
        ({"instruction": "x", "budget": {"max_seconds": -1}}, "budget.max_seconds"),
        ({"instruction": "x", "budget": {"max_steps": "many"}}, "budget.max_steps"),
        ({"instruction": "x", "tools": ["calculator"], "granted": ["memory_add"]}, "granted"),
        ({"instruction": ""}, "instruction"),
        ({"instruction": "x", "tool_choice": "sometimes"}, "tool_choice"),
    ],
)
def test_bad_tasks_are_400(
    server: str, home: tuple[Path, dict[str, str]], body: dict[str, Any], param: str
) -> None:
    with client(server, home[1], "alice") as api:
        answer = api.post("/v1/tasks", json=body)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param
