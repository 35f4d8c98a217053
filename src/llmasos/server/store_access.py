"""How the server reaches the model store: typing, thread offloading and manifest facts.

The store is synchronous (it reads and writes files), so routes call it through
`in_thread`. Helpers here turn manifest facts into the small values both API dialects show.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio.to_thread

from llmasos.models.manifest import Manifest, ResolvedModel

if TYPE_CHECKING:
    from collections.abc import Sequence

T = TypeVar("T")


class ModelStoreLike(Protocol):
    """The part of `llmasos.models.store.ModelStore` the server uses."""

    def list(self) -> Sequence[tuple[str, Manifest]]: ...
    def resolve(self, name: str, /) -> ResolvedModel: ...
    def manifest(self, name: str, /) -> Manifest: ...
    def canonical_name(self, name: str, /) -> str: ...
    def copy(self, source: str, destination: str, /) -> Any: ...
    def remove(self, name: str, /) -> Any: ...
    def create(self, name: str, modelfile: str, /, *, base_dir: Path) -> Any: ...
    def pull(
        self, source: str, /, *, progress: Callable[[str, int, int], None] | None = None
    ) -> Any: ...


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
