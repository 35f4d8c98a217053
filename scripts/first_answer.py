"""Measure the seconds from ``git clone`` to the first right answer, broken down by step.

``python3 scripts/first_answer.py [--cold] [--cache-home DIR] [--source REPO] [--json FILE]``
clones REPO (default: this checkout) into a fresh temporary directory, runs
``make setup-serve`` there, starts ``llmasos serve`` on a free port,
waits for ``/health``, then asks ``llmasos run smollm2 "What is the capital of France?"``
and checks that the answer names Paris. It prints a table of the steps (the set-up's own
per-step timings from ``.venv/.setup/timings.json``) and writes them as JSON. Standard
library only; it leaves the clone in place for inspection unless ``--clean``.

Caches: ``--cold`` runs with every package cache empty, as on a fresh machine: a new
``XDG_CACHE_HOME`` (uv's cache, the uv the set-up fetches, pip's and Hugging Face's caches
all live under it), ``UV_CACHE_DIR`` and ``PIP_CACHE_DIR`` inside it, and
``PIP_NO_CACHE_DIR=1``. ``--cache-home DIR`` puts those caches in DIR instead of the user's
``~/.cache``: empty (or new) with ``--cold``, or as an earlier run left it for a warm run,
so a cold run and the warm run after it can share caches without touching ``~/.cache``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What is the capital of France?"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wait_healthy(url: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"llmasos serve exited with {server.returncode} before /health")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"no healthy /health at {url} within {timeout:.0f} s")


def cache_env(cache_home: Path | None, cold: bool) -> dict[str, str]:
    """The environment that points every package cache at ``cache_home`` (cold: empty)."""
    if cache_home is None:
        return {}
    if cold and cache_home.exists() and any(cache_home.iterdir()):
        raise SystemExit(f"--cold needs an empty cache home and {cache_home} has files in it")
    cache_home.mkdir(parents=True, exist_ok=True)
    env = {
        "XDG_CACHE_HOME": str(cache_home),
        "UV_CACHE_DIR": str(cache_home / "uv"),
        "PIP_CACHE_DIR": str(cache_home / "pip"),
    }
    if cold:
        env["PIP_NO_CACHE_DIR"] = "1"
    return env


def measure(source: str, cold: bool, workdir: Path, cache_home: Path | None) -> dict[str, object]:
    if cold and cache_home is None:
        cache_home = workdir / "cache"
    env = {**os.environ, "LLMASOS_HOME": str(workdir / "home"), **cache_env(cache_home, cold)}
    steps: list[tuple[str, float, float]] = []  # (name, wall seconds, CPU seconds)
    started = time.monotonic()
    load_before = os.getloadavg()

    mark, cpu = time.monotonic(), _children_cpu()
    clone = workdir / "llmasos"
    subprocess.run(["git", "clone", "--quiet", source, str(clone)], check=True)
    steps.append(("git clone", time.monotonic() - mark, _children_cpu() - cpu))

    mark, cpu = time.monotonic(), _children_cpu()
    subprocess.run(["make", "setup-serve"], cwd=clone, env=env, check=True)
    setup = (time.monotonic() - mark, _children_cpu() - cpu)
    timings = json.loads((clone / ".venv" / ".setup" / "timings.json").read_text())
    installer = timings.get("installer", {}).get("tool", "pip")
    # the installer is chosen (and uv fetched) before the steps; it is recorded after them
    for name in sorted(timings, key=lambda name: name != "installer"):
        times = timings[name]
        label = f"installer ({installer})" if name == "installer" else name
        steps.append((f"set-up: {label}", times["seconds"], times["cpu_seconds"]))
    steps.append(
        (
            "set-up: make and the script itself",
            setup[0] - sum(t["seconds"] for t in timings.values()),
            setup[1] - sum(t["cpu_seconds"] for t in timings.values()),
        )
    )

    port = _free_port()
    env["LLMASOS_PORT"] = str(port)
    mark, server_cpu = time.monotonic(), _children_cpu()
    server = subprocess.Popen(
        [str(clone / ".venv" / "bin" / "llmasos"), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", server, timeout=300)
        steps.append(("llmasos serve until /health", time.monotonic() - mark, 0.0))
        mark, cpu = time.monotonic(), _children_cpu()
        answer = subprocess.run(
            [str(clone / ".venv" / "bin" / "llmasos"), "run", "smollm2", QUESTION],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        answer_cpu = _children_cpu() - cpu
        steps.append(("first answer (llmasos run smollm2)", time.monotonic() - mark, answer_cpu))
    finally:
        server.terminate()
        server.wait(timeout=30)
    # the server's own CPU time (start-up and the answer it computed) goes on its row
    name, wall, _ = steps[-2]
    steps[-2] = (name, wall, _children_cpu() - server_cpu - answer_cpu)
    total = time.monotonic() - started
    return {
        "cache": ("cold" if cold else "warm")
        + f" (cache home {cache_home or '~/.cache'}{', PIP_NO_CACHE_DIR=1' if cold else ''})",
        "installer": installer,
        "cpus": os.cpu_count(),
        "load_average_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "steps": [
            {"step": name, "seconds": round(wall, 1), "cpu_seconds": round(cpu_time, 1)}
            for name, wall, cpu_time in steps
        ],
        "total_seconds": round(total, 1),
        "total_cpu_seconds": round(sum(cpu_time for _, _, cpu_time in steps), 1),
        "answer": answer.stdout.strip(),
        "right": "paris" in answer.stdout.lower(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cold", action="store_true", help="empty package caches (a new cache home)"
    )
    parser.add_argument(
        "--cache-home",
        type=Path,
        default=None,
        help="XDG_CACHE_HOME for the set-up (uv's, pip's caches); empty with --cold",
    )
    parser.add_argument("--source", default=str(ROOT), help="repository to clone")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--clean", action="store_true", help="remove the clone afterwards")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="llmasos-first-answer-"))
    try:
        result = measure(args.source, args.cold, workdir, args.cache_home)
    finally:
        if args.clean:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\nclone to first answer, {result['cache']}, {result['installer']}, "
        f"{result['cpus']} CPUs ({workdir})"
    )
    print(f"  {'step':<40} {'wall s':>8} {'CPU s':>8}")
    for row in result["steps"]:  # type: ignore[attr-defined]
        print(f"  {row['step']:<40} {row['seconds']:>8.1f} {row['cpu_seconds']:>8.1f}")
    print(f"  {'total':<40} {result['total_seconds']:>8.1f} {result['total_cpu_seconds']:>8.1f}")
    print(f"load average before/after: {result['load_average_before_after']}")
    print(f"answer ({'right' if result['right'] else 'WRONG'}): {result['answer']!r}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["right"] else 1


if __name__ == "__main__":
    sys.exit(main())
