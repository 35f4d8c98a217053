"""kill -9 of a real ``llmasos serve`` mid-run, then a new server on the same home: the run
resumes from the last completed node, and no completed node with a side effect runs again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmasos.net import free_port

FLOW = """
name: durable
nodes:
  first: {type: tool, tool: mark, arguments: {text: first}}
  wait: {type: tool, tool: gate, needs: [first]}
  second: {type: tool, tool: mark, arguments: {text: second}, needs: [wait]}
outputs: {second: "{{ nodes.second.output.result.marked }}"}
"""
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def server(home: Path, marks: Path, gate: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.workflows.serve_with_tools", "serve", "--port", str(port)],
        cwd=ROOT,
        env={
            **os.environ,
            "LLMASOS_HOME": str(home),
            "LLMASOS_THREADS": "1",
            "LLMASOS_CONTEXT_LENGTH": "512",
            "WF_MARKS": str(marks),
            "WF_GATE": str(gate),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited: {process.stderr.read() if process.stderr else ''}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not become healthy"
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()


def poll(url: str, run_id: str, until: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = httpx.get(f"{url}/v1/workflows/runs/{run_id}").json()
        if until(run):
            return dict(run)
        assert time.monotonic() < deadline, f"run stayed {run['status']}: {run}"
        time.sleep(0.05)


def test_kill_9_mid_run_resumes_without_repeating_side_effects(tmp_path: Path) -> None:
    home, marks, gate = tmp_path / "home", tmp_path / "marks.txt", tmp_path / "gate"
    gate.touch()
    with server(home, marks, gate) as (url, process):
        created = httpx.post(f"{url}/v1/workflows", json={"source": FLOW})
        assert created.status_code == 201, created.text
        run_id = httpx.post(f"{url}/v1/workflows/durable/runs", json={}).json()["id"]

        def gate_running(run: dict[str, Any]) -> bool:
            return any(s["node"] == "wait" and s["status"] == "running" for s in run["steps"])

        before = poll(url, run_id, gate_running)
        process.send_signal(signal.SIGKILL)
        process.wait()
    first_before = next(s for s in before["steps"] if s["node"] == "first")
    assert marks.read_text().splitlines() == [f"first workflow:{run_id}:first:0"]

    gate.unlink()
    with server(home, marks, gate) as (url, _):
        done = poll(url, run_id, lambda run: run["status"] in ("succeeded", "failed"))
    assert done["status"] == "succeeded", done["error"]
    assert done["output"] == {"second": "second"}
    lines = marks.read_text().splitlines()
    assert lines == [f"first workflow:{run_id}:first:0", f"second workflow:{run_id}:second:0"]
    first_after = next(s for s in done["steps"] if s["node"] == "first")
    assert first_after["finished_at"] == first_before["finished_at"]
    assert first_after["attempts"] == 1
