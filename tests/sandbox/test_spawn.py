"""`llmasos.sandbox.spawn` on a plain child process (no app, no in-process guard): what an
stdio MCP server or an agent's code tool will get.

Each escape of ``escapes.py`` runs in a real sandbox. Without the network permission every
way out but the kernel's port fails; with it, the child sees what the host sees. Writing
outside the writable directories, reading hidden ones, tracing, new namespaces fail either
way; a fork bomb and an allocation past the memory limit are stopped by the cgroup.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llmasos.sandbox import (
    ConfinementError,
    ConfinementMode,
    MachineSupport,
    ResourceLimits,
    SandboxSpec,
    plan,
    probe,
    spawn,
)
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


@dataclasses.dataclass
class Box:
    """A sandbox layout in a temporary directory: a writable data directory and a hidden
    "home" holding a secret."""

    root: Path
    kernel: Listener

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def home(self) -> Path:
        return self.root / "home"

    def spec(self, *, network: bool = False, **limits: Any) -> SandboxSpec:
        return SandboxSpec(
            name="test",
            network=network,
            kernel=("127.0.0.1", self.kernel.port),
            readable=(ESCAPES.parent,),
            writable=(self.data,),
            hidden=(self.home,),
            limits=ResourceLimits(**limits) if limits else ResourceLimits(),
        )

    def attempt(
        self,
        what: str,
        /,
        *,
        network: bool = False,
        support: MachineSupport | None = None,
        **arguments: Any,
    ) -> dict[str, Any]:
        """Run one escape in a sandbox (``support``: as if the machine had only that, in
        weaker mode); its JSON answer."""
        request = json.dumps({"what": what, **arguments})
        process = spawn(
            [sys.executable, str(ESCAPES), request],
            self.spec(network=network),
            stdout=subprocess.PIPE,
            support=support,
            mode=ConfinementMode.ALLOW_WEAKER if support else ConfinementMode.STRICT,
        )
        output = (process.communicate()[0] or b"").decode()
        assert process.returncode == 0, output
        result: dict[str, Any] = json.loads(output.splitlines()[-1])
        return result


@pytest.fixture
def box(tmp_path: Path, kernel_listener: Listener) -> Box:
    (tmp_path / "data").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "secret.key").write_text("do not read")
    return Box(tmp_path, kernel_listener)


def test_strict_mode_refuses_what_the_machine_cannot_confine() -> None:
    bare = dataclasses.replace(
        probe(),
        bwrap=None,
        namespaces=False,
        user_namespace=False,
        namespaces_detail="bubblewrap (bwrap) is not installed",
    )
    spec = SandboxSpec(name="mcp.files")
    with pytest.raises(ConfinementError, match=r"mcp\.files cannot be confined .*bwrap"):
        plan(spec, ConfinementMode.STRICT, bare)
    report = plan(spec, ConfinementMode.ALLOW_WEAKER, bare)
    assert not report.complete
    assert {layer.name for layer in report.missing} == {"namespaces", "network", "filesystem"}
    assert report.summary().startswith("weaker (no namespaces: bubblewrap")


def test_weaker_mode_keeps_seccomp_landlock_and_limits(box: Box, other_listener: Listener) -> None:
    """Without namespaces (as on a machine without bubblewrap) seccomp still denies tracing,
    and Landlock, where the kernel has it, still hides the home and other TCP ports."""
    bare = dataclasses.replace(probe(), bwrap=None, namespaces=False, user_namespace=False)
    if not bare.seccomp:
        pytest.skip(f"no seccomp: {bare.seccomp_detail}")
    traced = box.attempt("ptrace", support=bare)
    assert traced["ok"] is False and traced["error"].startswith("EPERM")
    report = plan(box.spec(), ConfinementMode.ALLOW_WEAKER, bare)
    assert {layer.name for layer in report.missing} == {"namespaces", "network", "filesystem"}
    if not bare.landlock_abi:
        return
    secret = str(box.home / "secret.key")
    assert box.attempt("read_ctypes", support=bare, path=secret)["error"].startswith("EACCES")
    outside = str(box.root / "outside.txt")
    assert box.attempt("write_subprocess", support=bare, path=outside)["ok"] is False
    assert box.attempt("write_ctypes", support=bare, path=str(box.data / "x"))["ok"] is True
    if bare.landlock_abi >= 4:
        port = other_listener.port
        assert not box.attempt("ctypes_connect", support=bare, host="127.0.0.1", port=port)["ok"]
        kernel = box.kernel.port
        assert box.attempt("ctypes_connect", support=bare, host="127.0.0.1", port=kernel)["ok"]


def test_the_program_gets_its_exit_status_output_and_signals(box: Box) -> None:
    require_namespaces()
    process = spawn(
        [sys.executable, "-c", "import sys; print('hello'); sys.exit(7)"],
        box.spec(),
        stdout=subprocess.PIPE,
    )
    assert process.communicate() == (b"hello\n", None)
    assert process.returncode == 7
    graceful = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('bye', flush=True), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    with spawn([sys.executable, "-c", graceful], box.spec(), stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        process.terminate()
        assert process.stdout.read() == b"bye\n"
        assert process.wait(10) == 0
    process = spawn([sys.executable, "-c", "import time; time.sleep(60)"], box.spec())
    process.kill()
    assert process.wait(10) == -signal.SIGKILL
    missing = spawn(["/no/such/program"], box.spec(), stderr=subprocess.PIPE)
    errors = missing.communicate(timeout=10)[1] or b""
    assert missing.returncode == 127 and b"cannot run /no/such/program" in errors


@pytest.mark.parametrize("what", NETWORK_ESCAPES)
def test_without_network_only_the_kernel_is_reachable(
    box: Box, other_listener: Listener, what: str
) -> None:
    require_namespaces()
    to_kernel = box.attempt(what, host="127.0.0.1", port=box.kernel.port)
    if to_kernel.get("skipped"):
        pytest.skip(to_kernel["error"])
    assert to_kernel["ok"], to_kernel  # through the bridge
    assert not box.attempt(what, host="127.0.0.1", port=other_listener.port)["ok"]
    assert not box.attempt(what, host=TEST_NET, port=80)["ok"]
    assert other_listener.accepted == 0


@pytest.mark.parametrize("what", NETWORK_ESCAPES)
def test_with_network_the_program_sees_what_the_host_sees(
    box: Box, other_listener: Listener, what: str
) -> None:
    require_namespaces()
    local = box.attempt(what, network=True, host="127.0.0.1", port=other_listener.port)
    if local.get("skipped"):
        pytest.skip(local["error"])
    assert local["ok"], local
    assert other_listener.accepted >= 1


def test_dns_queries_leave_only_with_the_network_permission(
    box: Box, local_nameserver: DatagramListener
) -> None:
    require_namespaces()
    blocked = box.attempt("dns", name="example.com", nameserver=nameserver())
    assert blocked["ok"] is False and "ENETUNREACH" in blocked["error"]
    sent = box.attempt(
        "dns", network=True, name="example.com", nameserver="127.0.0.1", port=local_nameserver.port
    )
    assert sent["ok"], sent
    assert local_nameserver.wait_for(1)


@pytest.mark.parametrize("network", [False, True])
def test_files_outside_the_writable_directories_are_out_of_reach(box: Box, network: bool) -> None:
    require_namespaces()
    outside = box.root / "outside.txt"
    for what in ("write_ctypes", "write_subprocess"):
        assert not box.attempt(what, network=network, path=str(outside))["ok"]
        assert not box.attempt(what, network=network, path=str(ESCAPES.parent / "x"))["ok"]
    assert not outside.exists()
    inside = box.data / "mine.txt"
    assert box.attempt("write_ctypes", network=network, path=str(inside))["ok"]
    assert inside.read_text() == "escaped\n"
    secret = box.attempt("read_ctypes", network=network, path=str(box.home / "secret.key"))
    assert secret["ok"] is False
    assert not box.attempt("read_ctypes", network=network, path="/etc/shadow")["ok"]


def test_the_home_is_hidden_even_under_a_readable_directory(box: Box) -> None:
    require_namespaces()
    spec = dataclasses.replace(box.spec(), readable=(ESCAPES.parent, box.root))
    request = json.dumps({"what": "read_ctypes", "path": str(box.home / "secret.key")})
    process = spawn([sys.executable, str(ESCAPES), request], spec, stdout=subprocess.PIPE)
    assert json.loads(process.communicate()[0] or b"")["ok"] is False
    assert process.returncode == 0


@pytest.mark.parametrize("what", ["ptrace", "new_namespace"])
def test_tracing_and_new_namespaces_are_denied(box: Box, what: str) -> None:
    require_namespaces()
    result = box.attempt(what)
    assert result["ok"] is False and result["error"].startswith("EPERM"), result
    if what == "ptrace":
        assert box.attempt("ptrace", pid=os.getppid())["ok"] is False  # not even visible


def test_a_fork_bomb_stops_at_the_process_limit(box: Box) -> None:
    require_namespaces()
    require_cgroups()
    request = json.dumps({"what": "fork_bomb"})
    process = spawn(
        [sys.executable, str(ESCAPES), request], box.spec(processes=32), stdout=subprocess.PIPE
    )
    result = json.loads(process.communicate()[0] or b"")
    assert process.returncode == 0
    assert result["ok"] is False and result["forked"] < 32
    assert process.exit_reason() is not None
    assert "process limit (32)" in process.exit_reason()


def test_memory_past_the_limit_kills_the_program_and_says_why(box: Box) -> None:
    require_namespaces()
    require_cgroups()
    request = json.dumps({"what": "allocate", "megabytes": 512})
    process = spawn(
        [sys.executable, str(ESCAPES), request], box.spec(memory_mb=128), stdout=subprocess.PIPE
    )
    assert process.communicate() == (b"", None)  # it never answered
    assert process.returncode == -signal.SIGKILL
    assert process.exit_reason() == "out of memory (the sandbox's limit is 128 MB)"
