"""OpenAI's attribute filters for vector-store search, and the attributes they read.

A filter is a *comparison* ``{"type": "eq"|"ne"|"gt"|"gte"|"lt"|"lte"|"in"|"nin", "key",
"value"}`` or a *compound* ``{"type": "and"|"or", "filters": [...]}`` (nested at most
`MAX_DEPTH` deep). `parse_filter` checks the shape and raises a 400 naming the failing path
(``filters.filters[1].value``); `matches` evaluates it on one file's attributes. A missing
key fails every comparison except ``ne`` and ``nin``; ordering compares numbers with numbers
and strings with strings, anything else does not match (no coercion, no error at search
time). Attributes are at most 16 pairs of a key (≤ 64 characters) and a string (≤ 512
characters), number or boolean, as OpenAI's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from llmasos.errors import InvalidRequestError

COMPARISONS: Final = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
COMPOUNDS: Final = ("and", "or")
MAX_DEPTH: Final = 8
MAX_ATTRIBUTES: Final = 16
MAX_KEY_CHARS: Final = 64
MAX_STRING_CHARS: Final = 512
Scalar = str | int | float | bool


@dataclass(frozen=True)
class Comparison:
    type: str
    key: str
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class Compound:
    type: str
    filters: tuple[Comparison | Compound, ...]


Filter = Comparison | Compound


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def check_attributes(attributes: Any, where: str = "attributes") -> dict[str, Scalar]:
    """Validate a file's attributes; a 400 names the key at fault."""
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise InvalidRequestError(f"{where}: must be an object of key -> value", param=where)
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidRequestError(
            f"{where}: {len(attributes)} keys; at most {MAX_ATTRIBUTES}", param=where
        )
    for key, value in attributes.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
            raise InvalidRequestError(
                f"{where}: keys are 1-{MAX_KEY_CHARS} characters", param=where
            )
        if not _is_scalar(value):
            raise InvalidRequestError(
                f"{where}.{key}: must be a string, number or boolean", param=f"{where}.{key}"
            )
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            raise InvalidRequestError(
                f"{where}.{key}: at most {MAX_STRING_CHARS} characters", param=f"{where}.{key}"
            )
    return dict(attributes)


def parse_filter(data: Any, where: str = "filters", depth: int = 0) -> Filter:
    """A checked filter from its JSON form."""
    if not isinstance(data, Mapping):
        raise InvalidRequestError(f"{where}: must be an object", param=where)
    kind = data.get("type")
    if kind in COMPOUNDS:
        if depth >= MAX_DEPTH:
            raise InvalidRequestError(f"{where}: nested more than {MAX_DEPTH} deep", param=where)
        items = data.get("filters")
        if not isinstance(items, list) or not items:
            raise InvalidRequestError(
                f"{where}.filters: must be a non-empty list of filters", param=f"{where}.filters"
            )
        return Compound(
            str(kind),
            tuple(
                parse_filter(item, f"{where}.filters[{i}]", depth + 1)
                for i, item in enumerate(items)
            ),
        )
    if kind not in COMPARISONS:
        raise InvalidRequestError(
            f"{where}.type: {str(kind)[:20]!r} is not one of {', '.join(COMPARISONS + COMPOUNDS)}",
            param=f"{where}.type",
        )
    key = data.get("key")
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidRequestError(f"{where}.key: must be an attribute name", param=f"{where}.key")
    value = data.get("value")
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not all(_is_scalar(v) for v in value):
            raise InvalidRequestError(
                f"{where}.value: {kind} takes a list of strings, numbers or booleans",
                param=f"{where}.value",
            )
        return Comparison(str(kind), key, tuple(value))
    if not _is_scalar(value) or value is None:
        raise InvalidRequestError(
            f"{where}.value: must be a string, number or boolean", param=f"{where}.value"
        )
    return Comparison(str(kind), key, value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _number(a) and _number(b):
        return bool(a == b)
    return type(a) is type(b) and a == b


def matches(flt: Filter, attributes: Mapping[str, Any]) -> bool:
    """Whether a file with these attributes passes the filter."""
    if isinstance(flt, Compound):
        results = (matches(f, attributes) for f in flt.filters)
        return all(results) if flt.type == "and" else any(results)
    if flt.key not in attributes:
        return flt.type in ("ne", "nin")
    have, want = attributes[flt.key], flt.value
    if flt.type == "eq":
        return _equal(have, want)
    if flt.type == "ne":
        return not _equal(have, want)
    if flt.type in ("in", "nin"):
        assert isinstance(want, tuple)
        found = any(_equal(have, w) for w in want)
        return found if flt.type == "in" else not found
    comparable = (_number(have) and _number(want)) or (
        isinstance(have, str) and isinstance(want, str)
    )
    if not comparable:
        return False
    if flt.type == "gt":
        return bool(have > want)
    if flt.type == "gte":
        return bool(have >= want)
    if flt.type == "lt":
        return bool(have < want)
    return bool(have <= want)
