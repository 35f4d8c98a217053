"""The one plugin mechanism: Python entry points in the group ``llmasos.plugins``.

Each entry point names a ``register(registry)`` function. Built-in backends register
themselves through the same entry points an outside package would use (see pyproject.toml).
Registration is by import path, so heavy dependencies (torch, vLLM) load only when the
backend is first used.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from llmasos.errors import BackendUnavailableError, InvalidRequestError

if TYPE_CHECKING:
    from llmasos.backends.interface import BackendInterface
    from llmasos.services.interface import ServiceDefinition

ENTRY_POINT_GROUP = "llmasos.plugins"
logger = logging.getLogger(__name__)


ServerEntry = Callable[..., None]
"""``serve(settings, store, *, announce)``: runs the OS's server until it is stopped."""


class PluginRegistry:
    """Named extension points: backends, services, and the server ``llmasos serve`` runs."""

    def __init__(self) -> None:
        self._backends: dict[str, str | type[BackendInterface]] = {}
        self._backend_formats: dict[str, tuple[str, ...]] = {}
        self._services: list[tuple[str, ServiceDefinition | Mapping[str, Any] | str]] = []
        self._server: str | ServerEntry | None = None

    def register_server(self, target: str | ServerEntry) -> None:
        """Register what ``llmasos serve`` runs, or ``"module:function"`` to import then.

        The last registration wins, so a plugin can replace the built-in server."""
        self._server = target

    def server(self) -> ServerEntry:
        """The server entry, importing it now."""
        target = self._server
        if target is None:
            raise BackendUnavailableError("no server is registered (is LLMasOS installed?)")
        if isinstance(target, str):
            target = _load(target, "the server")
            self._server = target
        return target

    def register_backend(
        self,
        name: str,
        target: str | type[BackendInterface],
        *,
        formats: tuple[str, ...] = (),
    ) -> None:
        """Register a backend class, or ``"module:Class"`` to import on first use.

        ``formats`` lists the model formats (``gguf``, ``safetensors``) it can load, in the
        order the kernel should prefer backends for a format (first registered wins).
        """
        self._backends[name] = target
        self._backend_formats[name] = formats

    def register_service(self, definition: ServiceDefinition | Mapping[str, Any] | str) -> None:
        """Register a named service: a `ServiceDefinition`, its dict form, or YAML text.

        It is checked when the service registry loads (a broken one is skipped and logged).
        """
        if isinstance(definition, str):
            name = None
        elif isinstance(definition, Mapping):
            name = definition.get("name")
        else:
            name = definition.name
        self._services.append((str(name or "service"), definition))

    def services(self) -> list[tuple[str, ServiceDefinition | Mapping[str, Any] | str]]:
        """``(name, definition)`` for every registered service, in registration order."""
        return list(self._services)

    def backend_names(self) -> list[str]:
        return list(self._backends)

    def backends_for_format(self, model_format: str) -> list[str]:
        return [n for n, fmts in self._backend_formats.items() if model_format in fmts]

    def backend(self, name: str) -> type[BackendInterface]:
        """The backend class, importing it now; a clear error if its extra is missing."""
        try:
            target = self._backends[name]
        except KeyError:
            known = ", ".join(sorted(self._backends)) or "none"
            raise InvalidRequestError(f"unknown backend {name!r} (known: {known})") from None
        if isinstance(target, str):
            target = _load(target, f"the {name} backend")
            self._backends[name] = target
        return target


def _load(target: str, what: str) -> Any:
    """The object a ``"module:attribute"`` path names; a clear error if a package is missing."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendUnavailableError(
            f"{what} needs a package that is not installed: {error.name}"
        ) from None
    return getattr(module, attribute)


_registry: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """The process-wide registry, filled from entry points on first call."""
    global _registry
    if _registry is None:
        registry = PluginRegistry()
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                register: Callable[[PluginRegistry], None] = entry_point.load()
                register(registry)
            except Exception as error:  # a broken plugin must not take the OS down
                logger.warning("plugin %s failed to register: %s", entry_point.name, error)
        _registry = registry
    return _registry


def register_builtins(registry: PluginRegistry) -> None:
    """Entry point of the built-in plugin: the backends and the server that ship with LLMasOS."""
    registry.register_server("llmasos.server.main:serve")
    registry.register_backend(
        "llama.cpp", "llmasos.backends.llamacpp.backend:LlamaCppBackend", formats=("gguf",)
    )
    registry.register_backend(
        "transformers",
        "llmasos.backends.transformers.backend:TransformersBackend",
        formats=("safetensors", "gguf"),
    )
    registry.register_backend(
        "sentence-transformers",
        "llmasos.backends.sentence_transformers:SentenceTransformersBackend",
        formats=("sentence-transformers",),
    )
