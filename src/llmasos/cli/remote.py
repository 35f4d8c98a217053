"""Finding and calling a running LLMasOS server from the CLI.

``ps``, ``stop`` and ``load`` act on the models a server holds, so they need one; ``run``
prefers one when it answers and falls back to an in-process kernel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from llmasos.config import Settings
from llmasos.errors import LLMasOSError
from llmasos.net import local_url

if TYPE_CHECKING:
    from llmasos.kernel.interface import EngineClientInterface
    from llmasos.models import ModelStoreInterface
    from llmasos.storage.database import Database

T = TypeVar("T")

PROBE_TIMEOUT = 0.5


def base_url(settings: Settings) -> str:
    return local_url(settings.host, settings.port)


def server_url(settings: Settings) -> str | None:
    """The server's base URL if an LLMasOS server answers there, else None."""
    url = base_url(settings)
    try:
        response = httpx.get(f"{url}/", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError:
        return None
    return url if "LLMasOS" in response.text else None


def call_server(settings: Settings, method: str, path: str, **kwargs: Any) -> Any:
    """Call the running server; a clear error when none runs or it refuses."""
    url = server_url(settings)
    if url is None:
        raise LLMasOSError(
            f"no LLMasOS server at {base_url(settings)}: start one with `llmasos serve`"
        )
    response = httpx.request(method, f"{url}{path}", timeout=None, **kwargs)
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        if isinstance(message, dict):
            message = message.get("message", message)
        raise LLMasOSError(str(message))
    return response.json()


def local_engine(settings: Settings, store: ModelStoreInterface) -> EngineClientInterface:
    """An in-process kernel behind the registered remote providers (`llmasos remote`), as
    ``llmasos serve`` builds it, for commands that run without a server."""
    from llmasos.distributed.remote import RemoteEngineClient
    from llmasos.kernel.client import InProcessEngineClient

    return RemoteEngineClient(settings, InProcessEngineClient(settings, store))


def in_process(
    settings: Settings,
    store: ModelStoreInterface,
    work: Callable[[Database, EngineClientInterface], Awaitable[T]],
) -> T:
    """Run ``work(database, engine)`` on this machine's database and an in-process kernel:
    what a command does when no server answers."""
    from llmasos.storage import open_database

    async def go() -> T:
        engine = local_engine(settings, store)
        try:
            with open_database(settings) as database:
                return await work(database, engine)
        finally:
            await engine.close()

    return asyncio.run(go())
