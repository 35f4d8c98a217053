"""Serving ASGI apps over HTTP: one place for the rules every LLMasOS listener follows.

`DEFAULT_BASE_URL` is where a local server listens unless told otherwise (clients and the
app sandbox read ``LLMASOS_BASE_URL`` first). `free_port` finds a loopback port to listen
on. `is_loopback` decides whether an address is reachable only from this machine (listeners
on other addresses need authentication or an explicit opt-in). `uvicorn_server` builds a
uvicorn server whose SIGINT/SIGTERM stop drains connections and then *returns*, so the
process exits 0 (plain uvicorn re-raises the signal after a graceful shutdown).
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def uvicorn_server(app: Any, **config: Any) -> Any:
    """A ``uvicorn.Server`` for ``app`` (``config``: uvicorn.Config's keywords)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server(uvicorn.Config(app, **config))
