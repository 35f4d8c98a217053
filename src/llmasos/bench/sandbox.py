"""``python -m llmasos.bench.sandbox [--starts N] [--requests N] [--out FILE]``: what the OS
sandbox costs an app.

One small app (`Application` with a ``/kernel`` route that makes one HTTP request to the
kernel's address) is run the way the monitor runs it — ``python -m llmasos.apps.runner``
with the in-process guard — once as a plain child process (how apps ran before the
sandbox) and once through `llmasos.sandbox.spawn` with the spec a ``network = false``
manifest gives (network namespace and its relays, mount namespace, seccomp, Landlock,
cgroup). The spec is written out here rather than taken from `llmasos.apps.confinement`:
benchmarks sit below apps in the layering. For each it measures the start
(spawn until ``/health`` answers, ``--starts`` times) and, on one running instance, requests
from the host over a kept-alive connection — ``GET /health`` (host -> app) and ``GET
/kernel`` (host -> app -> kernel -> app -> host) — ``--requests`` times each. A stdlib HTTP
server on loopback stands in for the kernel, so the figures are the sandbox's, not a
model's. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from llmasos.net import free_port
from llmasos.sandbox import ConfinementMode, ResourceLimits, SandboxSpec, probe, spawn

APP = """
import http.client
import os
from urllib.parse import urlsplit

import llmasos

app = llmasos.Application()
KERNEL = urlsplit(os.environ["LLMASOS_BASE_URL"])


@app.route("/kernel")
def kernel() -> int:
    connection = http.client.HTTPConnection(KERNEL.hostname, KERNEL.port, timeout=10)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status
    finally:
        connection.close()
"""
MANIFEST = '[app]\nname = "bench"\nversion = "1.0.0"\nentry = "app:app"\n'
START_TIMEOUT = 60.0
POLL_INTERVAL = 0.02
"""Between /health polls while an app starts: the start is known to ±20 ms, and polling
does not take the CPU from the starting app."""


class _Kernel(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 3),
        "n": len(ordered),
    }


def _wait_healthy(url: str, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the app exited while starting")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"no /health from {url} within {START_TIMEOUT:g} s")


MODES = ("unconfined", "sandboxed")


class _Bench:
    """One installed-looking app directory and the two ways of starting it."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.home = root / "home"
        self.directory = self.home / "apps" / "bench" / "1.0.0"
        self.directory.mkdir(parents=True)
        (self.directory / "app.py").write_text(APP)
        (self.directory / "llmasos-app.toml").write_text(MANIFEST)
        self.data = self.directory.parent / "data"
        self.tmp = self.directory.parent / "tmp"
        self.data.mkdir()
        self.tmp.mkdir()
        self.base_url = base_url
        self.command = [sys.executable, "-m", "llmasos.apps.runner", str(self.directory)]

    def start(self, mode: str) -> tuple[Any, str, float]:
        """(process, url, seconds until /health answered)."""
        port = free_port()
        env = dict(
            os.environ,
            LLMASOS_BASE_URL=self.base_url,
            LLMASOS_APP_HOST="127.0.0.1",
            LLMASOS_APP_PORT=str(port),
            LLMASOS_APP_DATA=str(self.data),
            LLMASOS_APP_TMP=str(self.tmp),
            TMPDIR=str(self.tmp),
            PYTHONDONTWRITEBYTECODE="1",
        )
        began = time.perf_counter()
        process: Any
        if mode == "unconfined":
            process = subprocess.Popen(
                self.command,
                cwd=self.directory,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        else:
            kernel_port = int(self.base_url.rsplit(":", 1)[1])
            spec = SandboxSpec(
                name="app.bench",
                kernel=("127.0.0.1", kernel_port),
                listen_port=port,
                readable=(self.directory,),
                writable=(self.data, self.tmp),
                hidden=(self.home,),
                limits=ResourceLimits(file_size_mb=100),
            )
            env["LLMASOS_BASE_URL"] = f"http://127.0.0.1:{spec.kernel_port_inside}"
            process = spawn(
                self.command,
                spec,
                mode=ConfinementMode.STRICT,
                cwd=self.directory,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, lambda: process.poll() is None)
        except BaseException:
            _stop(process)
            raise
        return process, url, time.perf_counter() - began


def _stop(process: Any) -> None:
    process.terminate()
    process.wait(10)


def run(starts: int, requests: int) -> dict[str, Any]:
    """Both modes, interleaved (so that other load on the machine hits both alike); the
    result as JSON-ready data."""
    kernel = ThreadingHTTPServer(("127.0.0.1", 0), _Kernel)
    threading.Thread(target=kernel.serve_forever, daemon=True).start()
    results: dict[str, Any] = {"support": probe().to_json(), "modes": {}}
    start_times: dict[str, list[float]] = {mode: [] for mode in MODES}
    timings: dict[tuple[str, str], list[float]] = {
        (mode, route): [] for mode in MODES for route in ("health", "kernel")
    }
    with tempfile.TemporaryDirectory(prefix="llmasos-bench-sandbox-") as root:
        bench = _Bench(Path(root), f"http://127.0.0.1:{kernel.server_address[1]}")
        for _ in range(starts):
            for mode in MODES:
                process, _url, took = bench.start(mode)
                start_times[mode].append(took)
                _stop(process)
        running = {mode: bench.start(mode) for mode in MODES}
        clients = {mode: httpx.Client(base_url=running[mode][1], timeout=10) for mode in MODES}
        try:
            for _ in range(requests):
                for mode in MODES:
                    for route in ("health", "kernel"):
                        sent = time.perf_counter()
                        clients[mode].get(f"/{route}").raise_for_status()
                        timings[mode, route].append(time.perf_counter() - sent)
        finally:
            for mode in MODES:
                clients[mode].close()
                _stop(running[mode][0])
    kernel.shutdown()
    for mode in MODES:
        results["modes"][mode] = {
            "start": _percentiles(start_times[mode]),
            "request_health": _percentiles(timings[mode, "health"]),
            "request_kernel": _percentiles(timings[mode, "kernel"]),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmasos.bench.sandbox")
    parser.add_argument("--starts", type=int, default=10, help="app starts per mode")
    parser.add_argument("--requests", type=int, default=200, help="requests per route and mode")
    parser.add_argument("--out", type=Path, help="write the JSON here")
    arguments = parser.parse_args(argv)
    results = run(arguments.starts, arguments.requests)
    modes = results["modes"]
    rows = [
        ("app start (spawn -> /health answers)", "start"),
        ("GET /health (host -> app)", "request_health"),
        ("GET /kernel (host -> app -> kernel)", "request_kernel"),
    ]
    print(f"{'p50 ms':<40}{'unconfined':>12}{'sandboxed':>12}{'overhead':>12}")
    for label, key in rows:
        plain, boxed = modes["unconfined"][key]["p50_ms"], modes["sandboxed"][key]["p50_ms"]
        print(f"{label:<40}{plain:>12.2f}{boxed:>12.2f}{boxed - plain:>+12.2f}")
    text = json.dumps(results, indent=2)
    if arguments.out:
        arguments.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
