"""The ``{{ ... }}`` of a workflow: evaluated in Jinja's immutable sandbox, never as code.

`resolve` walks a node's parameters: a string that is exactly one ``{{ expression }}`` becomes
the expression's value (a list stays a list, a number a number); any other string with
templates is rendered to text; mappings and lists are walked. The names in scope are
``inputs``, ``nodes`` (each ``{"output", "status", "error"}``) and, inside a map, ``item``
and ``index``. The sandbox refuses attribute access to internals and calling methods that
change data; a mapping's keys come before its methods; a render error is a `NodeFailure`
naming the node.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmasos.workflows.errors import NodeFailure, WorkflowError

SINGLE: Final = re.compile(r"\s*\{\{(.*?)\}\}\s*", re.S)
MAX_RENDERED_CHARS: Final = 1_000_000


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with data before methods: ``nodes.items`` is the node named items and
    ``output.keys`` a field named keys, not the dict's methods."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_environment = _Environment(undefined=StrictUndefined, autoescape=False)


def check_template(text: str, where: str) -> None:
    """A syntax error in a template, as a definition error naming ``where``."""
    if "{{" not in text and "{%" not in text:
        return
    try:
        _environment.parse(text)
    except TemplateError as error:
        raise WorkflowError(f"{where}: template error: {error}") from None


def evaluate(expression: str, scope: Mapping[str, Any], where: str) -> Any:
    """The value of one expression (``nodes.a.output.score > 0.5``)."""
    try:
        compiled = _environment.compile_expression(expression, undefined_to_none=False)
        value = compiled(**scope)
    except (TemplateError, TypeError, ValueError, ZeroDivisionError) as error:
        raise NodeFailure(f"{where}: cannot evaluate {expression.strip()!r}: {error}") from None
    if isinstance(value, StrictUndefined):
        raise NodeFailure(f"{where}: {expression.strip()!r} is undefined")
    return value


def render(text: str, scope: Mapping[str, Any], where: str) -> str:
    try:
        rendered = _environment.from_string(text).render(**scope)
    except (TemplateError, TypeError, ValueError, ZeroDivisionError) as error:
        raise NodeFailure(f"{where}: template failed: {error}") from None
    if len(rendered) > MAX_RENDERED_CHARS:
        raise NodeFailure(f"{where}: rendered text is over {MAX_RENDERED_CHARS} characters")
    return rendered


def resolve(value: Any, scope: Mapping[str, Any], where: str) -> Any:
    """``value`` with every template evaluated (see the module docstring)."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        single = SINGLE.fullmatch(value)
        if single is not None and "{{" not in single.group(1) and "}}" not in single.group(1):
            return evaluate(single.group(1), scope, where)
        return render(value, scope, where)
    if isinstance(value, Mapping):
        return {key: resolve(item, scope, where) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, scope, where) for item in value]
    return value
