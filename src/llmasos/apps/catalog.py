"""The catalogue of built-in apps: their names and where their directories are.

The apps themselves live in `llmasos.userland.apps` (assistant, summarizer, translator,
writer, tutor), each a directory with ``llmasos-app.toml`` and ``app.py``. ``llmasos app
install builtin:NAME`` installs one (`llmasos.apps.store` resolves the name with
`resolve_builtin`); ``llmasos app builtins`` lists them. Nothing here imports the apps.
"""

from __future__ import annotations

from pathlib import Path

from llmasos.apps.manifest import MANIFEST_NAME
from llmasos.errors import NotFoundError

BUILTIN_PREFIX = "builtin:"
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "userland" / "apps"


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
