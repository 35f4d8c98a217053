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
    from llmasos.tools.interface import Tool, ToolProvider

ENTRY_POINT_GROUP = "llmasos.plugins"
PERCEPTION_KINDS = ("speech", "voice", "ocr")
logger = logging.getLogger(__name__)


ServerEntry = Callable[..., None]
"""``serve(settings, store, *, announce)``: runs the OS's server until it is stopped."""

ConsoleFactory = Callable[..., Any]
"""``create_console(api, settings) -> ASGI app``: the web console, mounted by the server on
every path outside the API's (`llmasos.server.console`)."""


class PluginRegistry:
    """Named extension points: backends, services, tools, perception engines, and the server
    (with its web console) ``llmasos serve`` runs."""

    def __init__(self) -> None:
        self._backends: dict[str, str | type[BackendInterface]] = {}
        self._backend_formats: dict[str, tuple[str, ...]] = {}
        self._services: list[tuple[str, ServiceDefinition | Mapping[str, Any] | str]] = []
        self._server: str | ServerEntry | None = None
        self._console: str | ConsoleFactory | None = None
        self._tools: list[str | Tool | ToolProvider] = []
        self._perception: dict[str, dict[str, str | type[Any]]] = {
            kind: {} for kind in PERCEPTION_KINDS
        }

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

    def register_console(self, target: str | ConsoleFactory) -> None:
        """Register the web console's factory, or ``"module:function"`` to import then.

        The last registration wins, so a plugin can replace the built-in console."""
        self._console = target

    def console(self) -> ConsoleFactory:
        """The console factory, importing it now; a clear error if none is registered or a
        package it needs is missing."""
        target = self._console
        if target is None:
            raise BackendUnavailableError("no web console is registered")
        if isinstance(target, str):
            target = _load(target, "the web console")
            self._console = target
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

    def register_tool(self, target: str | Tool | ToolProvider) -> None:
        """Register a tool (a `Tool`), a `ToolProvider` (tools that depend on the caller), or
        ``"module:attribute"`` naming either, or a class of either that takes no arguments,
        to import when tools are first listed."""
        self._tools.append(target)

    def tools(self) -> list[Tool | ToolProvider]:
        """Every registered tool and provider, imported now; one that fails to import is
        logged and left out."""
        loaded: list[Tool | ToolProvider] = []
        for index, target in enumerate(self._tools):
            if isinstance(target, str):
                try:
                    found = _load(target, f"the tool {target}")
                    target = found() if isinstance(found, type) else found
                except Exception as error:  # one broken tool must not hide the others
                    logger.warning("tool %s failed to load: %s", self._tools[index], error)
                    continue
                self._tools[index] = target
            loaded.append(target)
        return loaded

    def register_perception_engine(self, kind: str, name: str, target: str | type[Any]) -> None:
        """Register a perception engine: ``kind`` is ``speech`` (speech to text, a
        `SpeechToTextInterface`), ``voice`` (text to speech, `TextToSpeechInterface`) or
        ``ocr`` (`OcrInterface`); ``target`` the class or ``"module:Class"``. The first
        engine registered for a kind is its default, except that a speech engine running a
        store model (a ``model_format`` on its class, as whisper's) is preferred while such a
        model is in the store (`llmasos.perception.service`). An engine with a
        ``model_format`` (and optionally a ``model_family``) is built with a store model's
        directory and name, and runs that model when a request names it."""
        if kind not in PERCEPTION_KINDS:
            raise InvalidRequestError(
                f"unknown perception kind {kind!r} (one of: {', '.join(PERCEPTION_KINDS)})"
            )
        self._perception[kind][name] = target

    def perception_engine_names(self, kind: str) -> list[str]:
        return list(self._perception.get(kind, {}))

    def perception_engine(self, kind: str, name: str | None = None) -> type[Any]:
        """The engine class for ``kind`` named ``name`` (None: the default), imported now."""
        engines = self._perception.get(kind, {})
        if name is None:
            if not engines:
                raise BackendUnavailableError(f"no {kind} engine is registered")
            name = next(iter(engines))
        try:
            target = engines[name]
        except KeyError:
            known = ", ".join(engines) or "none"
            raise InvalidRequestError(
                f"unknown {kind} engine {name!r} (known: {known})", param="model"
            ) from None
        if isinstance(target, str):
            target = _load(target, f"the {name} {kind} engine")
            engines[name] = target
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


BUILTIN_TOOLS: dict[str, tuple[str, ...]] = {
    "builtin": (
        "NotesCreate", "NotesSearch", "NotesUpdate", "NotesDelete",
        "CalendarCreateEvent", "CalendarListEvents", "CalendarDeleteEvent",
        "ReminderCreate", "ReminderList", "ReminderDelete",
        "MailSend", "MailInbox",
    ),
    "knowledge_graph": ("KnowledgeGraphSearchTool",),
    "calculator": ("calculator",),
    "clock": ("time_now", "time_convert"),
    "recall": ("memory_search_tool", "memory_add_tool", "file_search", "fs_find"),
    "web": ("http_fetch", "service_call"),
    "ostools": (
        "OsModels", "OsResidentModels", "OsServices", "OsApps", "OsTasks", "OsStatus",
        "OsUsage", "ModelCreate", "AppInstall", "AppLaunch",
    ),
    "code": ("PythonRun",),  # model-written Python in the sandbox (design/tools.md)
    "mcp.client": ("McpToolProvider",),  # the tools of each user's MCP servers (design/mcp.md)
}  # fmt: skip
"""Built-in tools (`Tool` classes or instances) by module of ``llmasos.tools``: imported when
tools are first listed."""


def register_builtins(registry: PluginRegistry) -> None:
    """Entry point of the built-in plugin: the backends and the server that ship with LLMasOS."""
    registry.register_server("llmasos.server.main:serve")
    registry.register_console("llmasos.webui.app:create_console")
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
    registry.register_perception_engine(
        "speech", "pocketsphinx", "llmasos.perception.pocketsphinx:PocketSphinxEngine"
    )
    registry.register_perception_engine(
        "speech", "faster-whisper", "llmasos.perception.whisper:FasterWhisperEngine"
    )
    registry.register_perception_engine(
        "voice", "espeak-ng", "llmasos.perception.espeak:EspeakEngine"
    )
    registry.register_perception_engine("voice", "vits", "llmasos.perception.vits:VitsEngine")
    registry.register_perception_engine(
        "ocr", "tesseract", "llmasos.perception.tesseract:TesseractEngine"
    )
    for module, names in BUILTIN_TOOLS.items():
        for name in names:
            registry.register_tool(f"llmasos.tools.{module}:{name}")
