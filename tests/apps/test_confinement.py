"""Installed apps in their OS sandbox: every way out tried from inside a real app.

The app's routes run `tests/sandbox/escapes.py` (copied next to its code), which goes
through ``ctypes`` and started binaries, so that the in-process guard does not see the
attempts and only the OS sandbox stands in the way. A listener of the test plays the
kernel's server (the app's ``LLMASOS_BASE_URL``): it is the one address a ``network =
false`` app reaches. The same attempts with ``network = true`` reach what the host reaches.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import llmasos.cli.main  # noqa: F401  (registers every command)
from llmasos.apps.confinement import AppConfinement
from llmasos.apps.store import AppStore
from llmasos.apps.supervisor import AppSupervisor
from llmasos.cli.root import app as cli
from llmasos.cli.root import state as cli_state
from llmasos.config import load_settings
from llmasos.sandbox import ConfinementMode
from llmasos.storage import open_database
from tests.sandbox.conftest import (
    ESCAPES,
    NETWORK_ESCAPES,
    TEST_NET,
    DatagramListener,
    Listener,
    nameserver,
    require_cgroups,
    require_namespaces,
)

ESCAPE_APP = """
import json

import escapes
import llmasos

app = llmasos.Application()


@app.route("/attempt", methods=("POST",))
def attempt(what: str, arguments: str = "{}") -> dict:
    return escapes.attempt(what, **json.loads(arguments))
"""
MEMORY_MB = 256
PROCESSES = 48


class EscapeApps:
    """A home with an escape app per network permission, started on demand."""

    def __init__(self, root: Path, kernel: Listener) -> None:
        self.root = root
        self.home = root / "home"
        self.kernel = kernel
        self._database = open_database(load_settings(home=self.home))
        self.supervisor = AppSupervisor(
            AppStore(self.home),
            self._database.__enter__(),
            f"http://127.0.0.1:{kernel.port}",
            AppConfinement(ConfinementMode.STRICT, memory_mb=MEMORY_MB, processes=PROCESSES),
        )
        self.urls: dict[str, str] = {}

    def start(self, name: str, *, network: bool) -> str:
        source = self.root / "sources" / name
        source.mkdir(parents=True)
        (source / "llmasos-app.toml").write_text(
            f'[app]\nname = "{name}"\nversion = "1.0.0"\nentry = "app:app"\n\n'
            f"[permissions]\nnetwork = {str(network).lower()}\nstorage_mb = 10\n"
        )
        (source / "app.py").write_text(ESCAPE_APP)
        shutil.copy(ESCAPES, source / "escapes.py")
        self.supervisor.store.install(str(source))
        url = self.supervisor.start(name, timeout=60).url
        self.urls[name] = url
        return url

    def attempt(self, app: str, what: str, /, **arguments: Any) -> dict[str, Any]:
        response = httpx.post(
            f"{self.urls[app]}/attempt",
            json={"what": what, "arguments": json.dumps(arguments)},
            timeout=60,
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def close(self) -> None:
        for installed in self.supervisor.store.list():
            self.supervisor.stop(installed.name)
        self._database.__exit__(None, None, None)


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EscapeApps]:
    require_namespaces()
    kernel = Listener()
    home = EscapeApps(tmp_path_factory.mktemp("confined"), kernel)
    home.start("closed", network=False)
    home.start("open", network=True)
    yield home
    home.close()
    kernel.sock.close()


@pytest.fixture(scope="module")
def other_service() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.sock.close()


@pytest.mark.parametrize("what", NETWORK_ESCAPES)
def test_a_closed_app_reaches_the_kernel_and_nothing_else(
    apps: EscapeApps, other_service: Listener, what: str
) -> None:
    to_other = apps.attempt("closed", what, host="127.0.0.1", port=other_service.port)
    if to_other.get("skipped"):
        pytest.skip(to_other["error"])
    assert to_other["ok"] is False, to_other
    assert apps.attempt("closed", what, host=TEST_NET, port=80)["ok"] is False
    assert other_service.accepted == 0
    if what != "socket_connect":  # (Python's own socket is refused by the guard as well)
        to_kernel = apps.attempt("closed", what, host="127.0.0.1", port=apps.kernel.port)
        assert to_kernel["ok"], to_kernel


@pytest.mark.parametrize("what", NETWORK_ESCAPES)
def test_an_app_with_network_reaches_what_the_host_reaches(
    apps: EscapeApps, other_service: Listener, what: str
) -> None:
    local = apps.attempt("open", what, host="127.0.0.1", port=other_service.port)
    if local.get("skipped"):
        pytest.skip(local["error"])
    assert local["ok"] is True, local
    assert other_service.accepted >= 1


def test_dns_leaves_only_an_app_with_network(apps: EscapeApps) -> None:
    blocked = apps.attempt("closed", "dns", name="example.com", nameserver=nameserver())
    assert blocked["ok"] is False and "ENETUNREACH" in blocked["error"]
    resolver = DatagramListener()  # a nameserver on the host's loopback
    try:
        sent = apps.attempt(
            "open", "dns", name="example.com", nameserver="127.0.0.1", port=resolver.port
        )
        assert sent["ok"], sent
        assert resolver.wait_for(1)
    finally:
        resolver.sock.close()


@pytest.mark.parametrize("name", ["closed", "open"])
def test_an_app_writes_only_its_data_and_reads_no_other_app_or_secret(
    apps: EscapeApps, name: str
) -> None:
    home = apps.home
    other = "open" if name == "closed" else "closed"
    (home / "apps" / other / "data" / "private.txt").write_text("the other app's")
    installed = apps.supervisor.store.get(name).directory
    for what in ("write_ctypes", "write_subprocess"):
        for target in (apps.root / "outside.txt", installed / "app.py", home / "secret.key"):
            assert apps.attempt(name, what, path=str(target))["ok"] is False, (what, target)
    assert not (apps.root / "outside.txt").exists()
    data = home / "apps" / name / "data" / "mine.txt"
    assert apps.attempt(name, "write_ctypes", path=str(data))["ok"] is True
    assert data.read_text() == "escaped\n"
    for target in (home / "apps" / other / "data" / "private.txt", home / "secret.key"):
        if target.exists() or target.name != "secret.key":
            assert apps.attempt(name, "read_ctypes", path=str(target))["ok"] is False, target


@pytest.mark.parametrize("name", ["closed", "open"])
def test_an_app_cannot_trace_or_make_namespaces(apps: EscapeApps, name: str) -> None:
    for what in ("ptrace", "new_namespace"):
        result = apps.attempt(name, what)
        assert result["ok"] is False and result["error"].startswith("EPERM"), (what, result)


def test_a_fork_bomb_stops_at_the_limit_and_the_app_keeps_answering(apps: EscapeApps) -> None:
    require_cgroups()
    result = apps.attempt("closed", "fork_bomb")
    assert result["ok"] is False and result["forked"] < PROCESSES
    assert httpx.get(f"{apps.urls['closed']}/health", timeout=10).status_code == 200


def test_memory_past_the_limit_kills_the_app_and_the_monitor_says_why(apps: EscapeApps) -> None:
    require_cgroups()
    url = apps.urls["closed"]
    with pytest.raises(httpx.HTTPError):
        apps.attempt("closed", "allocate", megabytes=MEMORY_MB * 2)
    deadline = time.monotonic() + 30
    while True:
        status = apps.supervisor.monitor("closed")
        if status is not None and status.state == "running" and status.restarts:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status.last_exit == (
        f"killed by SIGKILL (out of memory (the sandbox's limit is {MEMORY_MB} MB))"
    )
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # restarted, OS up
    assert any("out of memory" in line for line in apps.supervisor.logs("closed"))


def test_app_info_shows_the_confinement_in_force(
    apps: EscapeApps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMASOS_HOME", str(apps.home))
    cli_state.reset()
    try:
        runner = CliRunner()
        result = runner.invoke(cli, ["app", "info", "closed", "--json"])
        text = runner.invoke(cli, ["app", "info", "closed"])
    finally:
        cli_state.reset()
    assert result.exit_code == 0, result.output
    confinement = json.loads(result.stdout)["confinement"]
    assert confinement["source"] == "running" and confinement["complete"] is True
    layers = {layer["name"]: layer for layer in confinement["layers"]}
    assert layers["network"]["active"] and "only way out" in layers["network"]["detail"]
    assert layers["seccomp"]["active"] and layers["filesystem"]["active"]
    planned = apps.supervisor.confinement_plan("closed").layer("filesystem")
    assert planned is not None and str(apps.home / "apps" / "closed" / "data") in planned.detail
    assert "confinement (in force, strict):" in text.stdout
    assert "network: yes - own network namespace" in text.stdout
