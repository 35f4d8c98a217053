"""Ollama's Modelfile format: parse it, validate it, and write one back out.

Instructions (case-insensitive): FROM, PARAMETER key value, TEMPLATE, SYSTEM, ADAPTER,
LICENSE, MESSAGE role content. Values may be triple-quoted (``\"\"\"...\"\"\"``, spanning lines)
or double-quoted; ``#`` starts a comment line. Every problem raises `ModelfileError` naming
the line. Parsing resolves nothing on disk: `ModelStore.create` does that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from llmasos.errors import InvalidRequestError, ModelfileError
from llmasos.models.manifest import Manifest
from llmasos.models.templates import check_template
from llmasos.types import OLLAMA_PARAMETERS, parse_parameter_value

#: Ollama parameter names and the Python type of their values.
PARAMETER_TYPES: dict[str, type] = {
    name: parameter.value_type for name, parameter in OLLAMA_PARAMETERS.items()
}
REPEATABLE_PARAMETERS = {"stop"}
MESSAGE_ROLES = ("system", "user", "assistant")
INSTRUCTIONS = ("from", "parameter", "template", "system", "adapter", "license", "message")


@dataclass
class Modelfile:
    """A parsed Modelfile."""

    base: str
    """FROM: a store name or a path (relative to the Modelfile's directory)."""
    parameters: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    adapter: str | None = None
    license: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)


def parse_parameter(name: str, raw: str) -> Any:
    """Convert one PARAMETER value; `InvalidRequestError` for unknown names or bad values."""
    key = name.lower()
    kind = PARAMETER_TYPES.get(key)
    if kind is None:
        known = ", ".join(PARAMETER_TYPES)
        raise InvalidRequestError(f"unknown parameter {name!r} (known: {known})")
    if kind is str:
        return raw
    try:
        value: Any = parse_parameter_value(kind, raw)
    except ValueError:
        what = {int: "an integer", bool: "true or false"}.get(kind, "a number")
        raise InvalidRequestError(f"parameter {key} must be {what}, got {raw!r}") from None
    if key in {"num_ctx"} and value < 1:
        raise InvalidRequestError(f"parameter {key} must be >= 1, got {raw!r}")
    if key in {"temperature", "top_k", "top_p", "min_p"} and value < 0:
        raise InvalidRequestError(f"parameter {key} must be >= 0, got {raw!r}")
    return value


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return raw[1:-1]
        return value if isinstance(value, str) else raw[1:-1]
    return raw


def _read_value(lines: list[str], index: int, rest: str) -> tuple[str, int]:
    """The value starting at ``rest`` on line ``index``; a triple-quoted one may span lines."""
    if not rest.startswith('"""'):
        return _unquote(rest.strip()), index
    body = rest[3:]
    if '"""' in body:
        value, _, after = body.partition('"""')
        if after.strip():
            raise ModelfileError(f'line {index + 1}: unexpected text after closing """')
        return value, index
    parts = [body]
    for end in range(index + 1, len(lines)):
        line = lines[end]
        if '"""' in line:
            last, _, after = line.partition('"""')
            if after.strip():
                raise ModelfileError(f'line {end + 1}: unexpected text after closing """')
            parts.append(last)
            value = "\n".join(parts)
            value = value[1:] if value.startswith("\n") else value
            return (value[:-1] if value.endswith("\n") else value), end
        parts.append(line)
    raise ModelfileError(f'line {index + 1}: """ is never closed')


def parse_modelfile(text: str) -> Modelfile:
    """Parse Modelfile text; `ModelfileError` with a line number for every problem."""
    lines = text.splitlines()
    base: str | None = None
    result = Modelfile(base="")
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        number = index + 1
        if not line or line.startswith("#"):
            index += 1
            continue
        word, _, rest = line.partition(" ")
        instruction = word.lower()
        rest = rest.strip()
        if instruction not in INSTRUCTIONS:
            raise ModelfileError(
                f"line {number}: unknown instruction {word!r} "
                f"(expected one of {', '.join(i.upper() for i in INSTRUCTIONS)})"
            )
        if instruction in {"parameter", "message"}:
            key, _, rest = rest.partition(" ")
            rest = rest.strip()
            if not key or not rest:
                usage = (
                    "PARAMETER name value" if instruction == "parameter" else "MESSAGE role text"
                )
                raise ModelfileError(f"line {number}: expected {usage}")
            value, index = _read_value(lines, index, rest)
            if instruction == "parameter":
                _add_parameter(result, key, value, number)
            else:
                if key.lower() not in MESSAGE_ROLES:
                    raise ModelfileError(
                        f"line {number}: MESSAGE role must be one of {', '.join(MESSAGE_ROLES)}"
                    )
                result.messages.append({"role": key.lower(), "content": value})
        else:
            if not rest:
                raise ModelfileError(f"line {number}: {word.upper()} needs a value")
            value, index = _read_value(lines, index, rest)
            if instruction == "from":
                if base is not None:
                    raise ModelfileError(f"line {number}: only one FROM is allowed")
                base = value.strip()
            elif instruction == "template":
                try:
                    check_template(value)
                except InvalidRequestError as error:
                    raise ModelfileError(f"line {number}: {error.message}") from None
                result.template = value
            elif instruction == "system":
                result.system = value
            elif instruction == "adapter":
                result.adapter = value.strip()
            else:
                result.license = value
        index += 1
    if not base:
        raise ModelfileError("the Modelfile has no FROM line (e.g. FROM smollm2)")
    result.base = base
    return result


def _add_parameter(result: Modelfile, key: str, raw: str, number: int) -> None:
    try:
        value = parse_parameter(key, raw)
    except InvalidRequestError as error:
        raise ModelfileError(f"line {number}: {error.message}") from None
    name = key.lower()
    if name in REPEATABLE_PARAMETERS:
        result.parameters.setdefault(name, []).append(value)
    else:
        result.parameters[name] = value


def _quote(value: str) -> str:
    if "\n" in value or '"' in value:
        return f'"""{value}"""'
    return value


def to_modelfile(manifest: Manifest, base: str) -> str:
    """A Modelfile that recreates ``manifest`` from ``base`` (a name or path)."""
    out = [f"# Modelfile for {manifest.name}", f"FROM {base}"]
    if manifest.chat_template:
        out.append(f"TEMPLATE {_quote(manifest.chat_template)}")
    if manifest.system is not None:
        out.append(f"SYSTEM {_quote(manifest.system)}")
    for key, value in manifest.parameters.items():
        for item in value if isinstance(value, list) else [value]:
            text = json.dumps(item) if isinstance(item, str) else str(item)
            out.append(f"PARAMETER {key} {text}")
    for message in manifest.messages:
        out.append(f"MESSAGE {message['role']} {_quote(str(message['content']))}")
    if manifest.adapter is not None:
        out.append(f"# ADAPTER {manifest.adapter.digest} (stored in the model)")
    if manifest.projector is not None:
        out.append(f"# vision projector {manifest.projector.digest} (stored in the model)")
    if manifest.license:
        out.append(f"LICENSE {_quote(manifest.license)}")
    return "\n".join(out) + "\n"
