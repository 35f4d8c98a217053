"""Where services come from: built-in YAML, the user's YAML, and plugins.

`ServiceRegistry.load` collects, in this order (a later source overrides an earlier one of
the same name): the built-in definitions shipped as package data
(``llmasos/services/definitions/*.yaml``), services registered by plugins through
`llmasos.plugins.PluginRegistry.register_service`, and ``$LLMASOS_HOME/services/*.yaml``.
A broken user file or plugin never hides the others: it is logged and listed in `errors`.
Loading is cheap (a few small files), so faces reload per request and pick up new files.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from llmasos.errors import LLMasOSError, NotFoundError
from llmasos.plugins import get_registry
from llmasos.services.interface import ServiceDefinition, ServiceDefinitionError

logger = logging.getLogger(__name__)
USER_DIR = "services"


def parse_yaml(text: str, source: str) -> ServiceDefinition:
    """One definition from YAML text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ServiceDefinitionError(
            f"service definition ({source}) is not YAML: {error}"
        ) from None
    return ServiceDefinition.from_dict(data, source=source)


@functools.cache
def builtin_definitions() -> tuple[ServiceDefinition, ...]:
    """The services that ship with LLMasOS (package data; read once per process)."""
    folder = resources.files("llmasos.services") / "definitions"
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            found.append(parse_yaml(entry.read_text(encoding="utf-8"), "builtin"))
    return tuple(found)


class ServiceRegistry:
    """Services by name."""

    def __init__(self, definitions: Iterable[ServiceDefinition] = ()) -> None:
        self._services: dict[str, ServiceDefinition] = {}
        self.errors: list[str] = []
        """One line per definition that could not be loaded."""
        for definition in definitions:
            self.add(definition)

    @classmethod
    def load(cls, home: Path | None, *, plugins: bool = True) -> ServiceRegistry:
        """Built-ins, then plugin services, then ``home/services/*.yaml``."""
        registry = cls(builtin_definitions())
        if plugins:
            for name, item in get_registry().services():
                registry._add_safely(lambda item=item, name=name: _from_plugin(item, name))
        if home is not None:
            registry.load_directory(home / USER_DIR)
        return registry

    def load_directory(self, directory: Path) -> None:
        """Add every ``*.yaml`` / ``*.yml`` in ``directory`` (missing: nothing)."""
        if not directory.is_dir():
            return
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            self._add_safely(lambda path=path: parse_yaml(path.read_text("utf-8"), str(path)))

    def _add_safely(self, build: Any) -> None:
        try:
            self.add(build())
        except (LLMasOSError, OSError, UnicodeDecodeError) as error:
            logger.warning("skipping a service definition: %s", error)
            self.errors.append(str(error))

    def add(self, definition: ServiceDefinition) -> None:
        """Add or replace a service."""
        self._services[definition.name] = definition

    def get(self, name: str) -> ServiceDefinition:
        try:
            return self._services[name]
        except KeyError:
            known = ", ".join(sorted(self._services)) or "none"
            raise NotFoundError(f"no service named {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._services)

    def list(self) -> list[ServiceDefinition]:
        return [self._services[name] for name in self.names()]


def _from_plugin(
    item: ServiceDefinition | Mapping[str, Any] | str, plugin: str
) -> ServiceDefinition:
    source = f"plugin:{plugin}"
    if isinstance(item, ServiceDefinition):
        return item
    if isinstance(item, str):
        return parse_yaml(item, source)
    return ServiceDefinition.from_dict(dict(item), source=source)
