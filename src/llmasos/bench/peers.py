"""Servers a benchmark starts and stops itself: LLMasOS and peers on the same GGUF file.

`ServerProcess` runs a server as a child process on a free 127.0.0.1 port, logs to a
temporary file, waits until a readiness URL answers 200 and stops it with SIGTERM (then
SIGKILL after a grace period), returning its exit code. `llmasos_server` starts
``llmasos serve`` (optionally with a temporary ``LLMASOS_HOME``); `llama_cpp_server` starts
llama-cpp-python's own OpenAI server. `rss_bytes` reads a process's resident memory.
`PEERS` names every peer ``bench serve --peer`` accepts; ``vllm`` is prepared and started
by `llmasos.bench.vllm` (a venv of its own); ``raw-loop`` is no server but the in-process
reference loop of `llmasos.bench.rawloop`. A server started with ``process_group`` gets its
own process group, and stopping it signals the whole group.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from llmasos.errors import BackendUnavailableError, LLMasOSError
from llmasos.net import free_port

LLAMA_CPP_SERVER = "llama-cpp-server"
RAW_LOOP = "raw-loop"
VLLM = "vllm"
PEERS: tuple[str, ...] = (LLAMA_CPP_SERVER, VLLM, RAW_LOOP)
LLAMA_CPP_SERVER_PACKAGES = ("llama_cpp", "sse_starlette", "starlette_context", "fastapi")


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process (psutil, else /proc), None if it cannot be read."""
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class ServerProcess:
    """A server child process on 127.0.0.1; use as a context manager."""

    def __init__(
        self,
        label: str,
        command: list[str],
        port: int,
        ready_path: str,
        *,
        env: dict[str, str] | None = None,
        cleanup_dir: Path | None = None,
        start_timeout_s: float = 180.0,
        process_group: bool = False,
    ) -> None:
        self.label = label
        self.command = command
        self.port = port
        self.ready_path = ready_path
        self.env = env
        self.cleanup_dir = cleanup_dir
        self.start_timeout_s = start_timeout_s
        self.process_group = process_group
        """Start the server in its own process group and signal the whole group on stop
        (for servers that fork workers, such as vLLM's engine core)."""
        self.process: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            prefix=f"llmasos-bench-{label}-", suffix=".log", delete=False
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout_s: float | None = None) -> ServerProcess:
        """Start the process and wait until ``ready_path`` answers 200."""
        timeout_s = self.start_timeout_s if timeout_s is None else timeout_s
        self.process = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=self.process_group,
        )
        deadline = time.monotonic() + timeout_s
        url = self.base_url + self.ready_path
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    tail = self.log_tail()
                    self.stop()
                    raise LLMasOSError(f"{self.label} exited while starting:\n{tail}")
                try:
                    if client.get(url).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise LLMasOSError(f"{self.label} was not ready within {timeout_s:g} s:\n{tail}")

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL; returns the exit code."""
        if self.process is not None and self.exit_code is None:
            if self.process.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    self.process.wait(grace_s)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self.process.wait()
            self.exit_code = self.process.returncode
            if self.process_group:  # workers the server left behind
                self._signal(signal.SIGKILL)
        self._log.close()
        if self.cleanup_dir is not None:
            shutil.rmtree(self.cleanup_dir, ignore_errors=True)
            self.cleanup_dir = None
        return self.exit_code

    def _signal(self, signum: int) -> None:
        """Signal the server, or its whole process group when it has one."""
        assert self.process is not None
        try:
            if self.process_group:
                os.killpg(self.process.pid, signum)
            else:
                self.process.send_signal(signum)
        except ProcessLookupError:
            pass

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        Path(self._log.name).unlink(missing_ok=True)


def llmasos_server(
    *, threads: int | None = None, home: Path | None = None, extra_args: list[str] | None = None
) -> ServerProcess:
    """``llmasos serve`` on a free port; with no ``home``, a temporary one that is removed."""
    port = free_port()
    cleanup = None
    if home is None:
        home = cleanup = Path(tempfile.mkdtemp(prefix="llmasos-bench-home-"))
    # no first-start tune in the background of a server being measured
    env = {**os.environ, "LLMASOS_HOME": str(home), "LLMASOS_AUTO_TUNE": "false"}
    command = [sys.executable, "-m", "llmasos", "serve", "--port", str(port)]
    if threads:
        command += ["--threads", str(threads)]
    command += extra_args or []
    return ServerProcess("llmasos", command, port, "/health", env=env, cleanup_dir=cleanup)


def llama_cpp_server(gguf: Path, *, threads: int, context_length: int = 4096) -> ServerProcess:
    """llama-cpp-python's OpenAI server on ``gguf`` (ChatML), on a free port."""
    import importlib.util

    missing = [p for p in LLAMA_CPP_SERVER_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise BackendUnavailableError(
            "the llama-cpp-server peer needs these packages: "
            f"{', '.join(m.replace('_', '-') for m in missing)} (pip install them)"
        )
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--n_threads",
        str(threads),
        "--n_ctx",
        str(context_length),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--interrupt_requests",
        "False",
        "--chat_format",
        "chatml",
    ]
    return ServerProcess(LLAMA_CPP_SERVER, command, port, "/v1/models")
