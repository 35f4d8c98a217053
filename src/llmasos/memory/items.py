"""Conversation items in OpenAI's shape, and their translation into chat messages.

An item is a JSON object as OpenAI's Conversations and Responses APIs write it: a
``message`` (role and content parts), a ``function_call`` or a ``function_call_output``.
`input_items` turns what a client sends (a string, easy messages with string content, or
full items) into normalized items; `items_to_messages` turns items into the chat messages
the kernel renders with the model's template. A running summary made by compaction is an
item of type ``summary`` here and is shown to clients as a system message.

An assistant message keeps what its reply cited and remembered: the ``file_citation`` and
``url_citation`` annotations of its ``output_text`` parts (other annotation types are
dropped, as before) and, our extension, ``memory_ids``: the long-term memories the reply
used, as chat completions and responses report them. Both are part of the item's body, so
they are stored encrypted with its text; the model never reads them.
"""

from __future__ import annotations

import json
from typing import Any

from llmasos.errors import InvalidRequestError, UnsupportedError
from llmasos.storage.ids import new_id
from llmasos.types import ChatMessage

ROLES = ("user", "assistant", "system", "developer")
MAX_ANNOTATIONS = 64
MAX_MEMORY_IDS = 32
_ID_LENGTH = 128
_CITATION_TEXTS = ("file_id", "filename", "chunk_id", "vector_store_id", "quote")
_CITATION_NUMBERS = ("number", "page")
ITEM_TYPES = ("message", "function_call", "function_call_output")
SUMMARY = "summary"
_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", SUMMARY: "msg"}


def item_id(item_type: str) -> str:
    return new_id(_PREFIXES[item_type])


def text_parts(role: str, text: str) -> list[dict[str, Any]]:
    """Content parts for ``text``: ``output_text`` from the assistant, else ``input_text``."""
    if role == "assistant":
        return [{"type": "output_text", "text": text, "annotations": []}]
    return [{"type": "input_text", "text": text}]


def message_item(role: str, text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": role,
        "status": "completed",
        "content": text_parts(role, text),
    }


def summary_item(text: str) -> dict[str, Any]:
    return {"type": SUMMARY, "role": "system", "content": [{"type": "input_text", "text": text}]}


def input_items(value: str | list[Any] | None, *, param: str = "input") -> list[dict[str, Any]]:
    """Normalize what a client sends as ``input`` or ``items`` into items (without ids)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [message_item("user", value)]
    if not isinstance(value, list):
        raise InvalidRequestError(f"{param} must be a string or a list of items", param=param)
    return [_normalize(entry, f"{param}[{index}]") for index, entry in enumerate(value)]


def _normalize(entry: Any, param: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise InvalidRequestError(f"{param} must be an object", param=param)
    kind = entry.get("type", "message")
    if kind == "message":
        role = entry.get("role")
        if role not in ROLES:
            raise InvalidRequestError(
                f"{param}.role must be one of {', '.join(ROLES)}", param=f"{param}.role"
            )
        message = {
            "type": "message",
            "role": role,
            "status": "completed",
            "content": text_parts(role, _content_text(entry.get("content"), f"{param}.content")),
        }
        if role == "assistant":
            annotations = _annotations(entry.get("content"), f"{param}.content")
            if annotations:
                message["content"][0]["annotations"] = annotations
            memory_ids = _memory_ids(entry.get("memory_ids"), f"{param}.memory_ids")
            if memory_ids:
                message["memory_ids"] = memory_ids
        return message
    if kind == "function_call":
        name, arguments = entry.get("name"), entry.get("arguments", "{}")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(f"{param}.name is required", param=f"{param}.name")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        return {
            "type": "function_call",
            "call_id": str(entry.get("call_id") or new_id("call")),
            "name": name,
            "arguments": arguments,
            "status": "completed",
        }
    if kind == "function_call_output":
        call_id, output = entry.get("call_id"), entry.get("output")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequestError(f"{param}.call_id is required", param=f"{param}.call_id")
        if not isinstance(output, str):
            output = json.dumps(output)
        return {
            "type": "function_call_output",
            "call_id": call_id,
            "output": output,
            "status": "completed",
        }
    raise UnsupportedError(
        f"{param}: items of type {str(kind)[:40]!r} are not supported; use "
        + ", ".join(ITEM_TYPES),
        param=f"{param}.type",
    )


def _content_text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"{param} must be a string or a list of parts", param=param)
    texts = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text") or not isinstance(
            part.get("text"), str
        ):
            raise UnsupportedError(
                f"{param}[{index}]: only text parts are supported (input_text, output_text)",
                param=f"{param}[{index}]",
            )
        texts.append(part["text"])
    return "\n".join(texts)


def _annotations(content: Any, param: str) -> list[dict[str, Any]]:
    """The citations of an assistant's ``output_text`` parts, with their indexes moved into
    the one text the parts are joined into."""
    if not isinstance(content, list):
        return []
    found: list[dict[str, Any]] = []
    offset = 0
    for index, part in enumerate(content):
        listed = part.get("annotations") or []
        if not isinstance(listed, list):
            raise InvalidRequestError(
                f"{param}[{index}].annotations must be a list",
                param=f"{param}[{index}].annotations",
            )
        for number, annotation in enumerate(listed):
            where = f"{param}[{index}].annotations[{number}]"
            kind = annotation.get("type") if isinstance(annotation, dict) else None
            if kind == "file_citation":
                found.append(_file_citation(annotation, offset, where))
            elif kind == "url_citation":
                found.append(_url_citation(annotation, offset, where))
        offset += len(part["text"]) + 1  # the parts are joined with a newline
    if len(found) > MAX_ANNOTATIONS:
        raise InvalidRequestError(
            f"{param}: at most {MAX_ANNOTATIONS} annotations per message", param=param
        )
    return found


def _file_citation(annotation: dict[str, Any], offset: int, param: str) -> dict[str, Any]:
    """A ``file_citation`` (OpenAI's fields, plus the chunk, store, source number, page and
    headings LLMasOS's citations carry); other keys are dropped."""
    if not isinstance(annotation.get("file_id"), str) or not annotation["file_id"]:
        raise InvalidRequestError(f"{param}.file_id is required", param=f"{param}.file_id")
    kept: dict[str, Any] = {"type": "file_citation", "index": offset + _index(annotation, param)}
    for key in _CITATION_TEXTS:
        if annotation.get(key) is not None:
            kept[key] = _string(annotation[key], f"{param}.{key}")
    for key in _CITATION_NUMBERS:
        value = annotation.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidRequestError(
                    f"{param}.{key} must be an integer", param=f"{param}.{key}"
                )
            kept[key] = value
    headings = annotation.get("headings")
    if headings is not None:
        if not isinstance(headings, list) or not all(isinstance(h, str) for h in headings):
            raise InvalidRequestError(
                f"{param}.headings must be a list of strings", param=f"{param}.headings"
            )
        kept["headings"] = headings
    return kept


def _url_citation(annotation: dict[str, Any], offset: int, param: str) -> dict[str, Any]:
    url = annotation.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequestError(f"{param}.url is required", param=f"{param}.url")
    kept: dict[str, Any] = {"type": "url_citation", "url": url}
    if annotation.get("title") is not None:
        kept["title"] = _string(annotation["title"], f"{param}.title")
    for key in ("start_index", "end_index"):
        if annotation.get(key) is not None:
            kept[key] = offset + _index(annotation, param, key)
    return kept


def _index(annotation: dict[str, Any], param: str, key: str = "index") -> int:
    value = annotation.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequestError(
            f"{param}.{key} must be a non-negative integer", param=f"{param}.{key}"
        )
    return value


def _string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"{param} must be a string", param=param)
    return value


def _memory_ids(value: Any, param: str) -> list[str]:
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > MAX_MEMORY_IDS
        or not all(isinstance(v, str) and 0 < len(v) <= _ID_LENGTH for v in value)
    ):
        raise InvalidRequestError(
            f"{param} must be a list of at most {MAX_MEMORY_IDS} memory ids", param=param
        )
    return list(dict.fromkeys(value))


def item_text(item: dict[str, Any]) -> str:
    """The text an item carries (content, arguments or output), for transcripts and recall."""
    kind = item.get("type")
    if kind in ("message", SUMMARY):
        return "\n".join(str(p.get("text", "")) for p in item.get("content", []))
    if kind == "function_call":
        return f"{item.get('name')}({item.get('arguments', '')})"
    if kind == "function_call_output":
        return str(item.get("output", ""))
    return ""


def transcript_line(item: dict[str, Any]) -> str:
    """One line of a plain-text transcript: ``role: text``."""
    kind = item.get("type")
    if kind == "function_call":
        return f"assistant called {item_text(item)}"
    if kind == "function_call_output":
        return f"tool result: {item_text(item)}"
    return f"{item.get('role', 'user')}: {item_text(item)}"


def items_to_messages(items: list[dict[str, Any]]) -> list[ChatMessage]:
    """Chat messages for the kernel: developer becomes system, calls become tool calls."""
    messages: list[ChatMessage] = []
    for item in items:
        kind = item.get("type")
        if kind in ("message", SUMMARY):
            role = item.get("role", "user")
            messages.append(
                {"role": "system" if role == "developer" else role, "content": item_text(item)}
            )
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": _arguments(item["arguments"])},
            }
            if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls"):
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
    return messages


def _arguments(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
