"""The app monitor: restarts after crashes, stops for good on SIGTERM, start failures.

`RestartPolicy` is tested as the pure logic it is; the rest runs real apps through
`AppSupervisor`, whose monitor is a real ``python -m llmasos.apps.monitor`` process.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import llmasos.cli.main  # noqa: F401  (registers every command)
from llmasos.apps.monitor import RestartPolicy, describe_exit
from llmasos.apps.supervisor import AppStartError
from llmasos.cli.root import app as cli
from llmasos.cli.root import state as cli_state
from tests.apps.conftest import AppHome

CRASHY = """
import os
import uuid

import llmasos

app = llmasos.Application()
RUN = uuid.uuid4().hex  # one per process (its pid is the same in every fresh PID namespace)


@app.route("/run")
def run() -> str:
    return RUN


@app.route("/crash")
def crash() -> str:
    os._exit(1)
"""


def test_the_restart_delay_doubles_with_recent_crashes_and_gives_up() -> None:
    policy = RestartPolicy()
    assert [policy.crashed(t) for t in (0.0, 1.0, 3.0, 7.0)] == [1, 2, 4, 8]
    assert policy.crashed(15.0) is None  # the fifth crash within 60 s
    spaced = RestartPolicy()
    assert [spaced.crashed(t) for t in (0.0, 61.0, 122.0)] == [1, 1, 1]
    capped = RestartPolicy(max_crashes=100)
    assert [capped.crashed(float(t)) for t in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(-9) == "killed by SIGKILL"


def wait_for(condition: str, check: object, timeout: float = 10.0) -> float:
    """Poll ``check()`` until it is true; the seconds it took."""
    assert callable(check)
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{condition} did not happen within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - started


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def process_group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def cli_output(home: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    cli_state.reset()
    try:
        result = CliRunner().invoke(cli, list(args))
    finally:
        cli_state.reset()
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_crashed_app_comes_back_on_its_port_and_stop_ends_it(
    app_home: AppHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor = app_home.supervisor
    app_home.install("crashy", CRASHY)
    started = supervisor.start("crashy", timeout=30)
    first_run = httpx.get(f"{started.url}/run", timeout=10).text

    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{started.url}/crash", timeout=10)
    wait_for("the restart", lambda: answers(started.url), timeout=60)
    assert httpx.get(f"{started.url}/run", timeout=10).text != first_run

    running = supervisor.status("crashy")
    assert running is not None and (running.pid, running.port) == (started.pid, started.port)

    def monitor_sees_it_running() -> bool:
        # The app may answer before the monitor's next health poll records it.
        monitor = supervisor.monitor("crashy")
        return monitor is not None and monitor.state == "running"

    wait_for("the monitor's record of the restart", monitor_sees_it_running)
    monitor = supervisor.monitor("crashy")
    assert monitor is not None and (monitor.state, monitor.restarts) == ("running", 1)
    assert monitor.last_exit == "exited with status 1"
    log = "\n".join(supervisor.logs("crashy"))
    assert "crashy: exited with status 1; restarting in 1 s" in log
    assert "crashy: answering /health again (restart 1)" in log
    assert "1 restart, last: exited with status 1" in cli_output(
        app_home.home, monkeypatch, "app", "info", "crashy"
    )
    assert "storage:     0.00 MB used of 100 MB" in cli_output(
        app_home.home, monkeypatch, "app", "info", "crashy"
    )

    assert supervisor.stop("crashy") is not None
    assert not process_group_exists(started.pid)
    time.sleep(1.5)  # longer than the first restart delay: nothing comes back
    assert not answers(started.url) and not process_group_exists(started.pid)
    assert supervisor.status("crashy") is None
    assert "stopped" in cli_output(app_home.home, monkeypatch, "app", "list")


def test_sigterm_to_the_monitor_stops_the_app_without_a_restart(app_home: AppHome) -> None:
    supervisor = app_home.supervisor
    app_home.install("steady", CRASHY)
    started = supervisor.start("steady", timeout=30)
    monitor = supervisor.monitor("steady")
    assert monitor is not None and monitor.child_pid is not None

    os.kill(started.pid, signal.SIGTERM)  # the monitor only, not its process group
    wait_for("the monitor's exit", lambda: supervisor.status("steady") is None)
    # The sandbox's own processes (bwrap, the kernel relay) leave right after the monitor.
    wait_for("the app's processes' exit", lambda: not process_group_exists(started.pid))
    with pytest.raises(ProcessLookupError):
        os.kill(monitor.child_pid, 0)
    last = supervisor.monitor("steady")
    assert last is not None and (last.state, last.restarts) == ("stopped", 0)
    assert supervisor.logs("steady")[-1].endswith("steady: stopped")


def test_an_app_that_never_starts_fails_at_once_and_is_not_restarted(
    app_home: AppHome,
) -> None:
    supervisor = app_home.supervisor
    app_home.install("broken", "raise RuntimeError('broken at import')\n")
    with pytest.raises(AppStartError, match="broken at import") as caught:
        supervisor.start("broken", timeout=120)  # its exit ends the wait, not the timeout
    assert "broken exited with status 1 while starting" in caught.value.message
    assert "before answering /health; not restarting" in caught.value.message
    last = supervisor.monitor("broken")
    assert last is not None and (last.state, last.restarts) == ("failed", 0)
    assert supervisor.status("broken") is None
