"""The app manifest, ``llmasos-app.toml``: what an app is and what it may do.

An app is a directory holding this file and its code. `load_manifest` parses and checks it
and returns an `AppManifest`; anything wrong is a `ManifestError` that names the field
(``app.version``, ``permissions.calls[1]`` ...) and why. The permissions become the scopes
of the app's capability key (`AppManifest.scopes`) and its model allow-list, so an app can
reach exactly the syscalls and services it declares and nothing else; ``network`` and
``storage_mb`` are enforced in the app's process by `llmasos.apps.sandbox` and its monitor::

    [app]
    name = "summarizer"
    version = "1.0.0"
    description = "Summarizes text."
    entry = "app:app"                 # module:attribute of an llmasos.Application

    [permissions]
    calls = ["services.summarize"]    # chat, generate, embed, tokenize, models.read,
                                      # memory, files, workflows, services.NAME, services.*
    models = ["smollm2"]              # model names or globs; empty: any model
    network = false                   # only the kernel's server; no processes either
    storage_mb = 50                   # quota of the app's data and temp directories
    files = ["/notes"]                # directories of the app user's file space it reaches
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmasos.errors import InvalidRequestError

MANIFEST_NAME = "llmasos-app.toml"
NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,62}")
VERSION_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)){0,2}")
ENTRY_PATTERN = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"
)
SERVICE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}|\*")
MAX_STORAGE_MB = 1_000_000
SYSCALLS = {
    "chat": "chat",
    "generate": "generate",
    "embed": "embed",
    "tokenize": "tokenize",
    "models.read": "models:read",
    "memory": "memory",
    "files": "files",
    "workflows": "workflows",
}
"""Permission name in a manifest -> API key scope."""
CALL_NOTES = {
    "workflows": (
        " (store and run workflows as the app's own user; their nodes run with that user's "
        "role, not only the calls listed here)"
    ),
}
"""What the install prompt adds to a permission that reaches further than its name says."""
APP_FIELDS = frozenset({"name", "version", "description", "entry"})
PERMISSION_FIELDS = frozenset({"calls", "models", "network", "storage_mb", "files"})


class ManifestError(InvalidRequestError):
    """An app manifest is missing, unreadable or invalid; the message names the field."""

    default_code = "invalid_manifest"


def parse_version(version: str) -> tuple[int, int, int]:
    """``"1.2"`` -> ``(1, 2, 0)``; versions compare as these tuples."""
    if not VERSION_PATTERN.fullmatch(version):
        raise ManifestError(
            f"app.version: {version[:40]!r} is not a version like 1.0.0 (numbers only)",
            param="app.version",
        )
    parts = [int(part) for part in version.split(".")]
    major, minor, patch = [*parts, 0, 0][:3]
    return major, minor, patch


def check_app_name(name: str, field_name: str = "app.name") -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ManifestError(
            f"{field_name}: {name[:80]!r} is not an app name (1-63 lowercase letters, digits "
            "or '-', starting with a letter)",
            param=field_name,
        )
    return name


def permission_scope(permission: str, field_name: str) -> str:
    """The API key scope a manifest permission grants (``services.summarize`` ->
    ``services:summarize``)."""
    if permission in SYSCALLS:
        return SYSCALLS[permission]
    kind, dot, service = permission.partition(".")
    if kind == "services" and dot and SERVICE_PATTERN.fullmatch(service):
        return f"services:{service}"
    raise ManifestError(
        f"{field_name}: unknown permission {permission[:80]!r}; use one of "
        f"{', '.join(SYSCALLS)}, services.NAME or services.*",
        param=field_name,
    )


@dataclass(frozen=True)
class Permissions:
    calls: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    network: bool = False
    storage_mb: int = 100
    files: tuple[str, ...] = ()
    """Directories of the file space the app reaches (``calls = ["files"]``: all of it)."""

    def describe(self) -> list[str]:
        """One line per permission, for the install prompt and ``app info``."""
        lines = [f"call {call}" + CALL_NOTES.get(call, "") for call in self.calls]
        lines = lines or ["no kernel calls"]
        lines.append("models: " + (", ".join(self.models) if self.models else "any model"))
        lines.append(
            "network access: "
            + ("yes (and may start processes)" if self.network else "no (only the kernel)")
        )
        lines.append(f"storage: {self.storage_mb} MB")
        if self.files:
            lines.append("files: " + ", ".join(self.files))
        return lines


@dataclass(frozen=True)
class AppManifest:
    name: str
    version: str
    entry: str
    description: str = ""
    permissions: Permissions = field(default_factory=Permissions)

    @property
    def version_key(self) -> tuple[int, int, int]:
        return parse_version(self.version)

    @property
    def module(self) -> str:
        return self.entry.partition(":")[0]

    @property
    def attribute(self) -> str:
        return self.entry.partition(":")[2]

    @property
    def scopes(self) -> list[str]:
        """The scopes of the app's capability key (empty: the app gets no key)."""
        return [
            permission_scope(call, f"permissions.calls[{index}]")
            for index, call in enumerate(self.permissions.calls)
        ] + [f"files:{directory}" for directory in self.permissions.files]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "entry": self.entry,
            "permissions": {
                "calls": list(self.permissions.calls),
                "models": list(self.permissions.models),
                "network": self.permissions.network,
                "storage_mb": self.permissions.storage_mb,
                "files": list(self.permissions.files),
            },
        }


def _table(data: dict[str, Any], key: str, allowed: frozenset[str]) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ManifestError(f"{key}: must be a table ([{key}])", param=key)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ManifestError(
            f"{key}.{unknown[0]}: unknown field; {key} has {', '.join(sorted(allowed))}",
            param=f"{key}.{unknown[0]}",
        )
    return value


def _string(table: dict[str, Any], key: str, where: str, *, required: bool) -> str:
    value = table.get(key)
    if value is None:
        if required:
            raise ManifestError(f"{where}.{key}: missing (required)", param=f"{where}.{key}")
        return ""
    if not isinstance(value, str):
        raise ManifestError(f"{where}.{key}: must be a string", param=f"{where}.{key}")
    return value


def _strings(table: dict[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    where = f"permissions.{key}"
    if not isinstance(value, list):
        raise ManifestError(f"{where}: must be a list of strings", param=where)
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item or " " in item:
            raise ManifestError(
                f"{where}[{index}]: must be a non-empty string without spaces",
                param=f"{where}[{index}]",
            )
    return tuple(dict.fromkeys(value))


def manifest_from_dict(data: dict[str, Any]) -> AppManifest:
    """Check a parsed manifest; `ManifestError` names the first field that is wrong."""
    unknown = sorted(set(data) - {"app", "permissions"})
    if unknown:
        raise ManifestError(
            f"{unknown[0]}: unknown table; a manifest has [app] and [permissions]",
            param=unknown[0],
        )
    if "app" not in data:
        raise ManifestError("app: missing the [app] table", param="app")
    app = _table(data, "app", APP_FIELDS)
    name = check_app_name(_string(app, "name", "app", required=True))
    version = _string(app, "version", "app", required=True)
    parse_version(version)
    entry = _string(app, "entry", "app", required=True)
    if not ENTRY_PATTERN.fullmatch(entry):
        raise ManifestError(
            f"app.entry: {entry[:80]!r} is not 'module:attribute' (e.g. 'app:app')",
            param="app.entry",
        )
    description = _string(app, "description", "app", required=False)
    permissions = _table(data, "permissions", PERMISSION_FIELDS)
    calls = _strings(permissions, "calls")
    for index, call in enumerate(calls):
        permission_scope(call, f"permissions.calls[{index}]")
    network = permissions.get("network", False)
    if not isinstance(network, bool):
        raise ManifestError(
            "permissions.network: must be true or false", param="permissions.network"
        )
    storage = permissions.get("storage_mb", 100)
    if (
        isinstance(storage, bool)
        or not isinstance(storage, int)
        or not 0 <= storage <= MAX_STORAGE_MB
    ):
        raise ManifestError(
            f"permissions.storage_mb: must be a whole number of MB from 0 to {MAX_STORAGE_MB}",
            param="permissions.storage_mb",
        )
    files = tuple(
        _directory(directory, f"permissions.files[{index}]")
        for index, directory in enumerate(_strings(permissions, "files"))
    )
    return AppManifest(
        name=name,
        version=version,
        entry=entry,
        description=description,
        permissions=Permissions(
            calls=calls,
            models=_strings(permissions, "models"),
            network=network,
            storage_mb=storage,
            files=files,
        ),
    )


def _directory(value: str, field_name: str) -> str:
    """A ``files`` entry in normal form (``/notes``); a bad one names its field."""
    from llmasos.knowledge.fspaths import check_path

    try:
        directory = check_path(value, field_name, directory=True)
    except InvalidRequestError as error:
        raise ManifestError(error.message, param=field_name) from None
    if directory == "/":
        raise ManifestError(
            f'{field_name}: "/" is the whole file space; use calls = ["files"] for that',
            param=field_name,
        )
    return directory


def load_manifest(directory: Path) -> AppManifest:
    """Read and check ``directory/llmasos-app.toml``; the entry module must exist too."""
    path = directory / MANIFEST_NAME
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{directory} is not an app: it has no {MANIFEST_NAME}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"{path} is not valid TOML: {error}") from None
    manifest = manifest_from_dict(data)
    module_path = directory.joinpath(*manifest.module.split("."))
    if not (module_path.with_suffix(".py").is_file() or (module_path / "__init__.py").is_file()):
        raise ManifestError(
            f"app.entry: the module {manifest.module!r} is not in {directory} "
            f"(no {module_path.relative_to(directory)}.py)",
            param="app.entry",
        )
    return manifest
