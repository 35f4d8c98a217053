"""LLMasOS's ChatML template."""

from __future__ import annotations

import pytest

from llmasos.chat_template import render_chat_template as render_chat
from llmasos.errors import InvalidRequestError
from llmasos.models.templates import CHATML_TEMPLATE, check_template


def test_no_default_system_prompt_is_injected() -> None:
    text = render_chat(CHATML_TEMPLATE, [{"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_system_user_assistant_turns() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": "Hello!"},
    ]
    text = render_chat(CHATML_TEMPLATE, messages, add_generation_prompt=False)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
    )


def test_tools_calls_and_results() -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            ],
        },
        {"role": "tool", "content": "sunny"},
    ]
    text = render_chat(CHATML_TEMPLATE, messages, tools=tools)
    assert text.startswith("<|im_start|>system\nYou can call these tools")
    assert '{"name": "weather", "parameters": {}}' in text
    assert (
        '<|im_start|>assistant\n<tool_call>{"name": "weather", "arguments": {"city": "Paris"}}'
        "</tool_call><|im_end|>\n<|im_start|>tool\nsunny<|im_end|>\n<|im_start|>assistant\n"
    ) in text


def test_go_templates_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="Jinja2"):
        check_template("{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}")
    check_template(CHATML_TEMPLATE)
