"""Byte relays between TCP ports and Unix sockets: the only way in and out of a sandbox
without network.

A sandbox without the network permission has its own network namespace with nothing but a
loopback interface. Two relays per direction connect it to the host through Unix sockets
in a directory shared with it (a Unix socket named by a path works across network
namespaces): inside, ``127.0.0.1:KERNEL_PORT`` relays to ``kernel.sock``, which the host side
relays to the kernel's server; on the host, ``127.0.0.1:APP_PORT`` relays to ``app.sock``,
which the inside relays to the program's own ``127.0.0.1:APP_PORT``. Each side is a
`Bridge`: an asyncio loop in a daemon thread, listening where it is told and copying bytes
both ways (with half-closes) to a fresh upstream connection per client. A client whose
upstream cannot be reached is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

CHUNK = 65536
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Endpoint:
    """``Endpoint.tcp("127.0.0.1", 8000)`` or ``Endpoint.unix("/run/x.sock")``."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def tcp(cls, host: str, port: int) -> Endpoint:
        return cls(host=host, port=port)

    @classmethod
    def unix(cls, path: str) -> Endpoint:
        return cls(path=path)

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path is not None else f"tcp:{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        kind, _, rest = text.partition(":")
        if kind == "unix":
            return cls.unix(rest)
        host, _, port = rest.rpartition(":")
        return cls.tcp(host, int(port))

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.path is not None:
            return await asyncio.open_unix_connection(self.path)
        return await asyncio.open_connection(self.host, self.port)

    async def listen(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> asyncio.Server:
        if self.path is not None:
            return await asyncio.start_unix_server(handler, self.path)
        return await asyncio.start_server(handler, self.host, self.port, reuse_address=True)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close ``writer``. A reset on either side closes
    ``writer`` whole, so that the other direction ends too instead of waiting forever."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, RuntimeError):
        await writer.wait_closed()


class Bridge:
    """Relays from listening endpoints to upstream endpoints, on a loop in its own thread."""

    def __init__(self, name: str = "sandbox-bridge") -> None:
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def relay(self, listen: Endpoint, upstream: Endpoint) -> None:
        """Listen on ``listen`` (now: an error to bind is raised here) and relay each client
        to a new connection to ``upstream``."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await upstream.open()
            except OSError:
                await _close(writer)
                return
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
            await _close(up_writer)
            await _close(writer)

        future = asyncio.run_coroutine_threadsafe(listen.listen(handle), self._loop)
        self._servers.append(future.result(START_TIMEOUT))

    def close(self) -> None:
        """Stop listening and stop the loop (open relays are dropped)."""
        if not self._loop.is_running():
            return

        async def stop() -> None:
            for server in self._servers:
                server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(START_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT)
        if not self._loop.is_running():
            self._loop.close()
