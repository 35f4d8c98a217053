"""The built-in apps shipped with LLMasOS: assistant, summarizer, translator, writer, tutor.

Each is a directory here with ``llmasos-app.toml`` and ``app.py``, an ordinary app written
with `llmasos.Application` that reaches the kernel only through `llmasos.Client` (so only
with the capability key its manifest earns), and a template to copy. ``llmasos app install
builtin:NAME`` installs one (`llmasos.apps.store` resolves the name with `builtin_path`);
``llmasos app builtins`` lists them. The directories are packages only so that their files
ship in the wheel; nothing here imports the apps.
"""

from __future__ import annotations

from pathlib import Path

from llmasos.apps.manifest import MANIFEST_NAME
from llmasos.errors import NotFoundError

BUILTIN_PREFIX = "builtin:"
BUILTIN_DIR = Path(__file__).resolve().parent


def builtin_names() -> list[str]:
    """The names of the built-in apps, sorted."""
    return sorted(
        child.name for child in BUILTIN_DIR.iterdir() if (child / MANIFEST_NAME).is_file()
    )


def builtin_path(name: str) -> Path:
    """The directory of the built-in app ``name`` (``summarizer``, not ``builtin:summarizer``)."""
    names = builtin_names()
    if name not in names:
        raise NotFoundError(
            f"there is no built-in app {name!r}; built-in apps: {', '.join(names)}",
            code="app_not_found",
        )
    return BUILTIN_DIR / name


def resolve_builtin(source: str) -> Path | None:
    """``builtin:NAME`` -> that app's directory; any other source -> None."""
    if not source.startswith(BUILTIN_PREFIX):
        return None
    return builtin_path(source[len(BUILTIN_PREFIX) :])
