"""How the server reaches the model store: thread offloading and manifest facts.

The server holds the store as a `llmasos.models.ModelStoreInterface`, which is synchronous
(it reads and writes files), so routes call it through `in_thread`. Helpers here turn
manifest facts into the small values both API dialects show.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio.to_thread

from llmasos.models.manifest import Manifest

T = TypeVar("T")


async def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking store call in a worker thread."""
    return await anyio.to_thread.run_sync(lambda: function(*args, **kwargs))


def created_at(manifest: Manifest) -> datetime:
    """When the manifest was written (now, if it does not say)."""
    if manifest.created_at:
        try:
            moment = datetime.fromisoformat(manifest.created_at.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parameter_size(manifest: Manifest) -> str:
    """``135M``, ``1.7B``: Ollama's ``parameter_size``."""
    count = manifest.parameter_count
    if not count:
        return ""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f}{unit}".replace(".0" + unit, unit)
    return str(count)


def name_aliases(name: str) -> list[str]:
    """A store name and its short forms (``smollm2:latest`` is also ``smollm2``)."""
    names = [name]
    if name.endswith(":latest"):
        names.append(name.removesuffix(":latest"))
    return names
