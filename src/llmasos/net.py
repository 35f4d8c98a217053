"""Serving ASGI apps over HTTP: one place for the rules every LLMasOS listener follows.

`DEFAULT_BASE_URL` is where a local server listens unless told otherwise (clients and the
app sandbox read ``LLMASOS_BASE_URL`` first). `free_port` finds a loopback port to listen
on. `is_loopback` decides whether an address is reachable only from this machine (listeners
on other addresses need authentication or an explicit opt-in). `uvicorn_server` builds a
uvicorn server whose SIGINT/SIGTERM stop drains connections and then *returns*, so the
process exits 0 (plain uvicorn re-raises the signal after a graceful shutdown).
`fetch_public` is the SSRF guard for URLs a request names: it fetches only from public
addresses, checked after resolution and pinned for the connection.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

from llmasos.errors import (
    DownloadError,
    InvalidRequestError,
    PayloadTooLargeError,
    PermissionDeniedError,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_url(host: str, port: int) -> str:
    """The URL a process on this machine reaches a server bound to ``host:port`` at (an
    any-address bind is reached on loopback; IPv6 hosts in brackets)."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


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


def public_addresses(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, all of them public (globally routable unicast);
    `PermissionDeniedError` if any is loopback, private, link-local or otherwise internal."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise InvalidRequestError(f"cannot resolve {host!r}: {error}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            raise PermissionDeniedError(
                f"refused to fetch from {host!r}: it resolves to {address}, a private or "
                "internal address"
            )
    return addresses


def fetch_public(url: str, *, max_bytes: int, timeout: float = 20.0, redirects: int = 3) -> bytes:
    """The body of ``url`` (http or https), fetched only from a public address.

    The host is resolved and every address checked before connecting, and the connection
    goes to the checked address (the name kept for Host and TLS), so a second resolution
    cannot swap in an internal one. Redirects are followed (``redirects`` at most), each
    target checked the same way. A body over ``max_bytes`` is refused while it streams."""
    import httpx

    for _ in range(redirects + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequestError(f"only http(s) URLs can be fetched, not {url[:60]!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = public_addresses(parts.hostname, port)[0]
        literal = f"[{address}]" if ":" in address else address
        pinned = parts._replace(netloc=f"{literal}:{port}").geturl()
        host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        try:
            with (
                httpx.Client(timeout=timeout, follow_redirects=False) as client,
                client.stream(
                    "GET",
                    pinned,
                    headers={"Host": host_header},
                    extensions={"sni_hostname": parts.hostname},
                ) as response,
            ):
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code >= 400:
                    raise DownloadError(f"fetching {url} answered {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise PayloadTooLargeError(f"{url} is larger than {max_bytes // 2**20} MiB")
                return bytes(body)
        except httpx.HTTPError as error:
            raise DownloadError(f"fetching {url} failed: {error}") from None
    raise DownloadError(f"fetching {url}: more than {redirects} redirects")
