"""Chat messages checked as OpenAI checks them, before any token is generated.

A conversation the model cannot make sense of (a tool result answering no call, a user turn
with no content) is a client bug; OpenAI answers it with 400 naming the field, and so do
we, instead of rendering it and letting the model ramble. The checks work on the plain
dicts of the request (``model_dump()`` of either dialect's message models):

- ``system``/``developer``/``user`` messages need ``content``; an ``assistant`` message
  needs ``content`` or ``tool_calls``;
- a ``tool`` message needs ``content`` and must answer a call of the assistant message just
  before it (other tool messages may come between). In OpenAI's dialect it also needs a
  ``tool_call_id``, which must be one of that message's call ids.

Ollama's dialect has no call ids (``tool_name`` instead) and allows empty content, so only
the order is checked there (``dialect="ollama"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from llmasos.errors import InvalidRequestError

MISSING = "missing_required_parameter"


def _missing(index: int, name: str, why: str) -> InvalidRequestError:
    param = f"messages[{index}].{name}"
    return InvalidRequestError(
        f"Missing required parameter: '{param}' ({why}).", param=param, code=MISSING
    )


def _call_ids(message: Mapping[str, Any]) -> set[str | None]:
    return {call.get("id") for call in message.get("tool_calls") or ()}


def check_messages(
    messages: Sequence[Mapping[str, Any]], dialect: Literal["openai", "ollama"] = "openai"
) -> None:
    """Raise `InvalidRequestError` (400, naming the field) for the first malformed message."""
    openai = dialect == "openai"
    answering: set[str | None] | None = None
    """The call ids the tool messages here may answer; None when no call precedes them."""
    for index, message in enumerate(messages):
        role = message.get("role")
        has_content = message.get("content") is not None
        if role == "tool":
            tool_call_id = message.get("tool_call_id")
            if openai and not tool_call_id:
                raise _missing(index, "tool_call_id", "a 'tool' message answers a tool call")
            if openai and not has_content:
                raise _missing(index, "content", "a 'tool' message carries the call's result")
            if answering is None:
                raise InvalidRequestError(
                    f"Invalid parameter: messages[{index}] has role 'tool' but is not a "
                    "response to a preceding assistant message with 'tool_calls'.",
                    param=f"messages[{index}].role",
                )
            if openai and None not in answering and tool_call_id not in answering:
                known = ", ".join(sorted(str(i) for i in answering))
                raise InvalidRequestError(
                    f"Invalid parameter: messages[{index}].tool_call_id {tool_call_id!r} "
                    f"answers no call of the preceding assistant message (its calls: {known}).",
                    param=f"messages[{index}].tool_call_id",
                )
            continue
        answering = None
        if role == "assistant":
            if message.get("tool_calls"):
                answering = _call_ids(message)
            elif openai and not has_content:
                raise _missing(index, "content", "an assistant message needs content or tool_calls")
        elif openai and not has_content:
            raise _missing(index, "content", f"a '{role}' message needs content")
