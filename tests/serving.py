"""Test helpers: a free loopback port, and a real ``llmasos serve`` subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
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
    becomes healthy, with the end of the server's log in the message.
    """
    port = free_port()
    # the server's log goes to a file, not a pipe: a pipe nobody reads fills up (64 KiB) and
    # then blocks the server on its next log line, which a long session of requests reaches
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmasos", "serve", "--port", str(port), *args],
            env={
                **os.environ,
                "LLMASOS_HOME": str(home),
                "LLMASOS_THREADS": "2",
                "LLMASOS_CONTEXT_LENGTH": "1024",
            },
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )

        def log_tail() -> str:  # pread: the server's write offset (shared) stays put
            size = os.fstat(log.fileno()).st_size
            start = max(size - 4000, 0)
            return os.pread(log.fileno(), size - start, start).decode("utf-8", "replace")

        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    pytest.fail(f"llmasos serve exited: {log_tail()}")
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    command = " ".join(args)
                    pytest.fail(f"llmasos serve {command} did not become healthy: {log_tail()}")
                time.sleep(0.2)
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
