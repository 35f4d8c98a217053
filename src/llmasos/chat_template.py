"""Render a Jinja2 chat template (the Hugging Face ``chat_template`` convention) safely.

Templates come from model files and Modelfiles, so they are untrusted: they run in jinja2's
`ImmutableSandboxedEnvironment`. They see ``messages``, ``tools``, ``add_generation_prompt``,
``bos_token`` and ``eos_token``, plus the helpers templates in the wild call:
``raise_exception(message)`` and ``strftime_now(format)``; ``tojson`` behaves like Python's
``json.dumps`` (no HTML escaping), as in transformers. A template that does not compile, or
that raises while rendering, gives `InvalidRequestError`. Shared by every backend and by the
model store, which checks a Modelfile's TEMPLATE before storing it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NoReturn

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmasos.errors import InvalidRequestError
from llmasos.types import ChatMessage


class TemplateRaisedError(InvalidRequestError):
    """The chat template itself rejected the messages (``raise_exception`` was called)."""

    default_code = "chat_template_error"


def _raise_exception(message: str) -> NoReturn:
    raise TemplateRaisedError(f"chat template error: {message}")


def _strftime_now(date_format: str) -> str:
    return datetime.now().strftime(date_format)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, sort_keys: bool = False
) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)


@lru_cache(maxsize=32)
def compile_chat_template(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as error:
        raise InvalidRequestError(
            f"the chat template does not compile (line {error.lineno}): {error.message}"
        ) from None


def render_chat_template(
    template: str,
    messages: Sequence[ChatMessage],
    *,
    add_generation_prompt: bool = True,
    tools: Sequence[dict[str, Any]] | None = None,
    bos_token: str = "",
    eos_token: str = "",
) -> str:
    """The prompt text for ``messages``; raise `InvalidRequestError` if the template fails."""
    compiled = compile_chat_template(template)
    try:
        return compiled.render(
            messages=[dict(m) for m in messages],
            tools=list(tools) if tools else None,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except InvalidRequestError:
        raise
    except jinja2.TemplateError as error:
        raise InvalidRequestError(f"the chat template failed to render: {error}") from None
    except (TypeError, KeyError, ValueError, AttributeError, IndexError) as error:
        raise InvalidRequestError(f"the chat template failed to render: {error!r}") from None
