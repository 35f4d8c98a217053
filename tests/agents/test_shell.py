"""``llmasos shell`` driven with piped stdin against a real ``llmasos serve`` and the
embedded model: each line becomes a task with the os tools, its steps print, a side effect
asks inline and the next line answers it. Structure only: what the tiny model says varies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmasos.models.builtin import BUILTINS, package_path
from tests.serving import llmasos_serve

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home: Path = tmp_path_factory.mktemp("shell-home")
    with llmasos_serve(home) as url:
        yield url, home


def shell(server: tuple[str, Path], lines: str, *args: str) -> subprocess.CompletedProcess[str]:
    url, home = server
    port = url.rsplit(":", 1)[1]
    return subprocess.run(
        [sys.executable, "-m", "llmasos", "shell", *args],
        input=lines,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "LLMASOS_HOME": str(home), "LLMASOS_PORT": port},
    )


def test_a_line_becomes_a_task_with_the_os_tools(server: tuple[str, Path]) -> None:
    done = shell(server, "which models are loaded?\nexit\nnot read\n",
                 "--tool-choice", "required", "--max-steps", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "llmasos> which models are loaded?" in done.stdout
    assert "not read" not in done.stdout  # `exit` ended the session
    tasks = httpx.get(f"{server[0]}/v1/tasks").json()["data"]
    task = next(t for t in tasks if t["instruction"] == "which models are loaded?")
    assert task["tools"] == ["os"]
    assert f"task {task['id']} {task['status']}" in done.stderr
    steps = httpx.get(f"{server[0]}/v1/tasks/{task['id']}/steps").json()["data"]
    for step in steps[:1]:  # required: the first turn is a call of an os tool
        assert step["kind"] == "tool_call" and step["tool"].startswith(("os_", "app_"))
        assert f"[1] {step['tool']}" in done.stdout
    if not steps:  # the model failed before its first step (a full context, a timeout)
        assert task["status"] in ("failed", "stopped") and task["result"]


def test_a_side_effect_asks_inline_and_no_refuses_it(server: tuple[str, Path]) -> None:
    done = shell(server, "remind me to stretch on 2030-01-01 at 09:00\nn\n",
                 "--only", "--tool", "reminder_create", "--tool-choice", "required",
                 "--max-steps", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = " ".join(done.stdout.split())  # the console wraps long lines
    assert "needs approval: set a reminder" in shown
    assert "allow step 1:" in shown and "[1] reminder_create" in shown
    assert re.search(r"\[1\] reminder_create .* denied", shown)  # the step, refused
    assert httpx.get(f"{server[0]}/v1/reminders").json()["data"] == []  # nothing was set
