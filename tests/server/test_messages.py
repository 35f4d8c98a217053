"""Chat messages are checked as OpenAI checks them: which conversations are refused, and how."""

from __future__ import annotations

from typing import Any

import pytest

from llmasos.errors import InvalidRequestError
from llmasos.server.messages import check_messages

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def refused(messages: list[dict[str, Any]], dialect: Any = "openai") -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        check_messages(messages, dialect)
    return caught.value


def test_a_lone_tool_message_is_refused_naming_the_field() -> None:
    error = refused([{"role": "tool"}])
    assert error.param == "messages[0].tool_call_id" and error.code == "missing_required_parameter"
    error = refused([{"role": "tool", "tool_call_id": "c1"}])
    assert error.param == "messages[0].content"
    error = refused(
        [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "c1", "content": "x"}]
    )
    assert error.param == "messages[1].role" and "preceding assistant" in error.message


def test_a_tool_message_must_answer_a_call_of_the_assistant_before_it() -> None:
    assistant = {"role": "assistant", "content": None, "tool_calls": [CALL]}
    check_messages(
        [
            {"role": "user", "content": "q"},
            assistant,
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
        ]
    )
    error = refused([assistant, {"role": "tool", "tool_call_id": "c9", "content": "1"}])
    assert error.param == "messages[1].tool_call_id" and "c1" in error.message
    # a user turn in between ends the calls' answers
    error = refused(
        [
            assistant,
            {"role": "user", "content": "q"},
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
        ]
    )
    assert error.param == "messages[2].role"
    # several results for several calls
    two = {**assistant, "tool_calls": [CALL, {**CALL, "id": "c2"}]}
    check_messages(
        [
            two,
            {"role": "tool", "tool_call_id": "c2", "content": "2"},
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
        ]
    )


def test_content_is_required_where_openai_requires_it() -> None:
    assert refused([{"role": "user", "content": None}]).param == "messages[0].content"
    assert refused([{"role": "system"}]).param == "messages[0].content"
    assert refused([{"role": "assistant", "content": None}]).param == "messages[0].content"
    check_messages([{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}])


def test_ollama_checks_only_the_order() -> None:
    check_messages(
        [
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f"}}]},
            {"role": "tool", "content": None, "tool_name": "f"},
        ],
        "ollama",
    )
    assert refused([{"role": "tool", "content": "x"}], "ollama").param == "messages[0].role"
