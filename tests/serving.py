"""Test helpers: a free loopback port, and a real ``llmasos serve`` subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from llmasos.net import free_port


@contextmanager
def llmasos_serve(home: Path, *args: str, timeout: float = 120) -> Iterator[str]:
    """Run ``llmasos serve ARGS`` on a free port with ``home``; yield its URL once healthy.

    SIGTERM on exit (SIGKILL after 30 s). The test fails if the server exits or never
    becomes healthy, with the server's stderr in the message.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmasos", "serve", "--port", str(port), *args],
        env={
            **os.environ,
            "LLMASOS_HOME": str(home),
            "LLMASOS_THREADS": "2",
            "LLMASOS_CONTEXT_LENGTH": "1024",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"llmasos serve exited: {process.stderr.read() if process.stderr else ''}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llmasos serve {' '.join(args)} did not become healthy")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
