"""The ``python_run`` tool and its runner: who may use it, what a run returns, the limits
that end a run, strict mode's refusal, and the escape battery sent as the tool's source.

Calls go through the real `ToolSet` (schema, permission, timeout) with the tool registered
as the built-ins are. The escape battery (`tests/sandbox/escapes.py`, every attempt in one
run) runs twice, without and with the ``code_network`` setting; TEST-NET and DNS are tried
only confined, where no packet can leave (with the network granted, a loopback listener of
the test shows it). The fork bomb runs in the confined batch (its process limit is the
runner's own). Memory past the limit is tried once
here, for the reason the runner reports; the rest of the limits are `llmasos.sandbox`'s and
are tested on a plain child in `tests/sandbox/test_spawn.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.config import Settings
from llmasos.plugins import PluginRegistry
from llmasos.sandbox import probe
from llmasos.tools import ToolContext, ToolResult, ToolSystem
from llmasos.tools.code import OUTPUT_BYTES, PROCESSES
from llmasos.tools.registry import ToolSet
from tests.sandbox.conftest import (
    ESCAPES,
    NETWORK_ESCAPES,
    TEST_NET,
    Listener,
    check_files_out_of_reach,
    check_network_escape,
    nameserver,
    require_cgroups,
    require_namespaces,
)


def registry() -> PluginRegistry:
    plugins = PluginRegistry()
    plugins.register_tool("llmasos.tools.code:PythonRun")
    return plugins


def context(settings: Settings, role: str = "admin") -> ToolContext:
    who = Principal(user_id=1, name="someone", role=role, scopes=ROLE_SCOPES[role])
    return ToolContext(who, ToolSystem(settings, cast(Any, None), cast(Any, None)))


def call(settings: Settings, arguments: dict[str, Any]) -> ToolResult:
    async def go() -> ToolResult:
        ctx = context(settings)
        tools = await ToolSet.load(ctx, registry=registry())
        return await tools.call("python_run", arguments, ctx)

    return asyncio.run(go())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def test_running_code_needs_the_code_scope_and_approval(settings: Settings) -> None:
    async def names(role: str) -> list[str]:
        return (await ToolSet.load(context(settings, role), registry=registry())).names()

    assert asyncio.run(names("user")) == []  # users do not hold `code` unless granted
    assert asyncio.run(names("developer")) == ["python_run"]
    ctx = context(settings)
    tool = asyncio.run(ToolSet.load(ctx, registry=registry())).get("python_run")
    assert tool.spec.permission == "code" and tool.spec.side_effect
    shown = asyncio.run(tool.describe({"code": "print(1)", "timeout_s": 5}, ctx))
    assert "without network, up to 5 s and 256 MB" in shown and "print(1)" in shown


def test_a_run_returns_its_exit_status_and_output_cut_with_a_marker(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_namespaces()
    monkeypatch.setenv("LLMASOS_TEST_SECRET", "the server's")
    code = (
        "import os, sys\n"
        "open('made.txt', 'w').write('mine')\n"
        "print(os.getcwd() == os.environ['HOME'], open('made.txt').read())\n"
        "print(os.environ.get('LLMASOS_TEST_SECRET'))\n"
        f"sys.stderr.write('e' * {OUTPUT_BYTES + 1000})\n"
        "sys.exit(3)\n"
    )
    result = call(settings, {"code": code})
    assert result.is_error
    output = result.output
    assert output["exit_code"] == 3 and output["reason"] is None and not output["timed_out"]
    assert output["stdout"] == "True mine\nNone\n"  # the scratch directory; no server env
    assert output["stderr_truncated"] and not output["stdout_truncated"]
    assert output["stderr"].startswith("e" * OUTPUT_BYTES)
    assert output["stderr"].endswith(
        f"[output truncated: 1000 more bytes not shown (the limit is {OUTPUT_BYTES})]"
    )
    assert result.effects == ("ran 6 line(s) of Python in the sandbox: exit status 3",)
    assert not list(Path("/tmp").glob("llmasos-code-*"))  # the scratch directory is gone
    fine = call(settings, {"code": "print(sum(range(10)))"})
    assert not fine.is_error and fine.output["stdout"] == "45\n"


def test_the_time_and_memory_limits_end_a_run_and_say_why(tmp_path: Path) -> None:
    require_namespaces()
    settings = Settings(home=tmp_path / "home", code_timeout_s=2, code_memory_mb=64)
    looping = call(settings, {"code": "while True:\n    pass", "timeout_s": 100})
    assert looping.output["timed_out"] and looping.output["exit_code"] == -9
    assert looping.output["reason"] == "stopped at the time limit of 2 s"  # the setting wins
    require_cgroups()
    hungry = call(settings, {"code": "x = bytearray(256 * 2**20)\nx[::4096] = b'x' * 65536"})
    assert hungry.output["exit_code"] == -9
    assert hungry.output["reason"] == "out of memory (the sandbox's limit is 64 MB)"


def test_strict_mode_refuses_code_where_the_machine_cannot_confine_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = dataclasses.replace(
        probe(),
        bwrap=None,
        namespaces=False,
        user_namespace=False,
        namespaces_detail="bubblewrap (bwrap) is not installed",
    )
    monkeypatch.setattr("llmasos.sandbox.process.probe", lambda: bare)
    refused = call(settings, {"code": "print('ran')"})
    assert refused.is_error and refused.output["code"] == "confinement_unavailable"
    assert "cannot be confined on this machine" in refused.output["error"]
    assert "app_confinement = allow-weaker" in refused.output["error"]
    weaker = settings.model_copy(update={"app_confinement": "allow-weaker"})
    ran = call(weaker, {"code": "print('ran')"})
    assert ran.output["stdout"] == "ran\n", ran.output
    assert "confinement weaker (no namespaces: bubblewrap" in ran.effects[0]


@dataclass
class Batches:
    root: Path
    closed: dict[str, dict[str, Any]]
    open: dict[str, dict[str, Any]]


def _attempts(root: Path, port: int, *, outward: bool) -> dict[str, dict[str, Any]]:
    """The batch; ``outward`` adds TEST-NET and DNS (tried only where no packet can leave:
    with the network granted, the loopback listener shows it)."""
    home = root / "home"
    attempts: dict[str, dict[str, Any]] = {}
    for what in NETWORK_ESCAPES:
        attempts[f"{what}:local"] = {"what": what, "host": "127.0.0.1", "port": port}
        if outward:
            attempts[f"{what}:testnet"] = {"what": what, "host": TEST_NET, "port": 80}
    if outward:
        attempts["dns"] = {"what": "dns", "name": "example.com", "nameserver": nameserver()}
    for what in ("write_ctypes", "write_subprocess"):
        attempts[f"{what}:outside"] = {"what": what, "path": str(root / f"{what}.txt")}
    attempts["write_ctypes:scratch"] = {"what": "write_ctypes", "path": "mine.txt"}
    attempts["read_ctypes:secret"] = {"what": "read_ctypes", "path": str(home / "secret.key")}
    other = home / "apps" / "notes" / "data" / "private.txt"
    attempts["read_ctypes:other_app"] = {"what": "read_ctypes", "path": str(other)}
    attempts["ptrace"] = {"what": "ptrace"}
    attempts["new_namespace"] = {"what": "new_namespace"}
    return attempts


def _batch(settings: Settings, attempts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every attempt in one python_run call: the escapes script is the source."""
    listed = json.dumps(list(attempts.values()))
    code = ESCAPES.read_text() + f"\nprint(json.dumps(attempt_all(json.loads({listed!r}))))\n"
    result = call(settings, {"code": code})
    assert not result.is_error, result.output
    found = json.loads(result.output["stdout"])
    return dict(zip(attempts, found, strict=True))


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Batches]:
    require_namespaces()
    root = tmp_path_factory.mktemp("code-escapes")
    data = root / "home" / "apps" / "notes" / "data"
    data.mkdir(parents=True)
    (data / "private.txt").write_text("the notes app's")
    (root / "home" / "secret.key").write_text("do not read")
    other = Listener()
    settings = Settings(home=root / "home", code_timeout_s=120)
    closed = _batch(
        settings, {**_attempts(root, other.port, outward=True), "fork_bomb": {"what": "fork_bomb"}}
    )
    assert other.accepted == 0, "the confined code reached the host's loopback"
    granted = settings.model_copy(update={"code_network": True})
    opened = _batch(granted, _attempts(root, other.port, outward=False))
    yield Batches(root, closed, opened)
    other.sock.close()


@pytest.mark.parametrize("what", NETWORK_ESCAPES)
def test_network_escapes_fail_unless_the_setting_grants_the_network(
    batches: Batches, what: str
) -> None:
    check_network_escape(batches.closed, batches.open, what)


def test_dns_cannot_leave_confined_code(batches: Batches) -> None:
    assert batches.closed["dns"]["ok"] is False and "ENETUNREACH" in batches.closed["dns"]["error"]


def test_code_writes_only_its_scratch_and_reads_no_secret_or_app(batches: Batches) -> None:
    for found in (batches.closed, batches.open):
        check_files_out_of_reach(found, "write_ctypes:scratch")
        for what in ("ptrace", "new_namespace"):
            assert found[what]["ok"] is False and found[what]["error"].startswith("EPERM")
    assert not list(batches.root.glob("write_*.txt"))


def test_a_fork_bomb_stops_at_the_runs_process_limit(batches: Batches) -> None:
    require_cgroups()
    bomb = batches.closed["fork_bomb"]
    assert bomb["ok"] is False and bomb["forked"] < PROCESSES, bomb
