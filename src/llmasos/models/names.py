"""Model names: ``namespace/name:tag[@DIGEST_PREFIX]``, parsed, validated and suggested.

The namespace is optional (``library``, which is never shown) and the tag defaults to
``latest``; names are case-insensitive and stored lowercase. ``@DIGEST_PREFIX`` addresses one
version of a name. Every malformed name raises `InvalidRequestError` saying what is wrong.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from llmasos.errors import InvalidRequestError
from llmasos.models.manifest import ModelName

DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_PART = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
_TAG = re.compile(r"^[a-z0-9_][a-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^(sha256[:-])?[0-9a-f]{1,64}$")


def parse_name(text: str) -> ModelName:
    """``"smollm2"`` -> ``ModelName("library", "smollm2", "latest")``; raise on bad names."""
    name, digest = split_digest(text)
    if digest is not None:
        raise InvalidRequestError(f"invalid model name {text!r}: a digest is not allowed here")
    return _parse(name)


def split_digest(text: str) -> tuple[str, str | None]:
    """``"foo:1@abc12"`` -> ``("foo:1", "abc12")``; the digest prefix is validated, lowercased."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequestError("a model name is required", param="model")
    text = text.strip()
    if "@" not in text:
        return text, None
    name, _, digest = text.partition("@")
    digest = digest.lower()
    if not _DIGEST.match(digest):
        raise InvalidRequestError(
            f"invalid model version {digest!r} in {text!r}: expected hex digits of the model id",
            param="model",
        )
    return name, digest.removeprefix("sha256:").removeprefix("sha256-")


def _parse(text: str) -> ModelName:
    original = text
    text = text.lower()
    path, _, tag = text.partition(":") if ":" in text else (text, "", DEFAULT_TAG)
    if ":" in tag:
        raise _bad(original, "more than one ':'")
    parts = path.split("/")
    if len(parts) == 1:
        namespace, name = DEFAULT_NAMESPACE, parts[0]
    elif len(parts) == 2:
        namespace, name = parts
    else:
        raise _bad(original, "expected [namespace/]name[:tag]")
    for label, value in (("namespace", namespace), ("name", name)):
        if not _PART.match(value):
            raise _bad(
                original,
                f"the {label} {value!r} must start with a letter or digit and use only "
                "letters, digits, '.', '_' and '-' (at most 80)",
            )
    if not _TAG.match(tag):
        raise _bad(
            original,
            f"the tag {tag!r} must use only letters, digits, '.', '_' and '-' (at most 128)",
        )
    return ModelName(namespace=namespace, name=name, tag=tag)


def _bad(text: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"invalid model name {text!r}: {why}", param="model")


def canonical(text: str) -> str:
    """The display form: ``"Library/SmolLM2"`` -> ``"smollm2:latest"``."""
    return str(parse_name(text))


def suggest(name: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """Known names close to ``name`` (also matching without the tag), best first."""
    names = list(known)
    wanted = name.lower()
    close = difflib.get_close_matches(wanted, names, n=limit, cutoff=0.6)
    bare = {n.split(":", 1)[0]: n for n in names}
    for match in difflib.get_close_matches(wanted.split(":", 1)[0], list(bare), n=limit):
        if bare[match] not in close:
            close.append(bare[match])
    return close[:limit]


def not_found_message(name: str, known: Iterable[str]) -> str:
    """``model 'smolm2' not found; did you mean 'smollm2:latest'?`` (or a hint to list)."""
    close = suggest(name, known)
    if close:
        return f"model {name!r} not found; did you mean {' or '.join(repr(c) for c in close)}?"
    return f"model {name!r} not found (see `llmasos list`, or `llmasos pull` / `llmasos import`)"
