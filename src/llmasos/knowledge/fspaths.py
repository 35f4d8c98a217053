"""Paths of the semantic file system: what a valid path is, and its normal form.

Every user's file space has its own root ``/``; a path names a file under it. `check_path`
returns the normal form (``/a/b.md``: one leading slash, no empty, ``.`` or ``..``
components) or raises `InvalidPathError` (400) naming the problem: a ``..`` that climbs
out of the root, NUL or another control character, a backslash (a Windows separator),
a component longer than `MAX_NAME_BYTES` or a path longer than `MAX_PATH_CHARS`. A path
given as ``~/x`` or relative is read from the root. `parse_versioned` reads the CLI's
``PATH@V`` form.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from typing import Final

from llmasos.errors import InvalidRequestError

MAX_PATH_CHARS: Final = 1024
MAX_NAME_BYTES: Final = 255
MAX_DEPTH: Final = 32
_VERSION_SUFFIX = re.compile(r"@([0-9]{1,9})$")


class InvalidPathError(InvalidRequestError):
    """A path that is not a valid file-space path (HTTP 400); the message says why."""

    default_code = "invalid_path"


def _bad(path: str, why: str, param: str) -> InvalidPathError:
    shown = path if len(path) <= 120 else path[:117] + "..."
    return InvalidPathError(f"{param}: {shown!r} {why}", param=param)


def check_path(path: object, param: str = "path", *, directory: bool = False) -> str:
    """The normal form of ``path``; with ``directory`` a trailing slash is allowed and the
    root ``/`` is valid."""
    if not isinstance(path, str) or not path.strip():
        raise InvalidPathError(
            f"{param}: must be a non-empty path like /notes/plan.md", param=param
        )
    if len(path) > MAX_PATH_CHARS:
        raise InvalidPathError(
            f"{param}: {len(path)} characters; a path has at most {MAX_PATH_CHARS}", param=param
        )
    for char in path:
        if char == "\0":
            raise _bad(path.replace("\0", "\\0"), "contains a NUL character", param)
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            raise _bad(path, f"contains the control character U+{ord(char):04X}", param)
    if "\\" in path:
        raise _bad(path, "contains a backslash; separate names with '/'", param)
    raw = path[2:] if path.startswith("~/") else path
    parts: list[str] = []
    for part in raw.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise _bad(path, "climbs out of your file space with '..'", param)
            raise _bad(path, "contains '..'; name the file directly", param)
        if len(part.encode()) > MAX_NAME_BYTES:
            raise _bad(
                path, f"has a name of {len(part.encode())} bytes; at most {MAX_NAME_BYTES}", param
            )
        if part != part.strip():
            raise _bad(path, "has a name that starts or ends with a space", param)
        parts.append(unicodedata.normalize("NFC", part))
    if len(parts) > MAX_DEPTH:
        raise _bad(path, f"is {len(parts)} levels deep; at most {MAX_DEPTH}", param)
    if not parts:
        if directory:
            return "/"
        raise _bad(path, "names the root directory, not a file", param)
    if path.endswith("/") and not directory:
        raise _bad(path, "ends with '/': it names a directory, not a file", param)
    return "/" + "/".join(parts)


def is_under(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` itself or inside it (both normal forms)."""
    return directory == "/" or path == directory or path.startswith(directory.rstrip("/") + "/")


def parse_versioned(text: str, param: str = "path") -> tuple[str, int | None]:
    """``/a.md@3`` -> (``/a.md``, 3); no ``@N`` suffix -> (path, None)."""
    match = _VERSION_SUFFIX.search(text)
    if match is None:
        return check_path(text, param), None
    version = int(match.group(1))
    if version < 1:
        raise InvalidPathError(f"{param}: versions start at 1", param=param)
    return check_path(text[: match.start()], param), version


def basename(path: str) -> str:
    return posixpath.basename(path)


def parent(path: str) -> str:
    return posixpath.dirname(path) or "/"
