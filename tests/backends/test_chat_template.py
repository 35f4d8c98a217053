"""Tests for the sandboxed Jinja chat-template renderer shared by the backends."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from llmasos.chat_template import render_chat_template
from llmasos.errors import InvalidRequestError

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_chatml_renders_messages_and_generation_prompt() -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hi"},
    ]
    text = render_chat_template(CHATML, messages, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    without = render_chat_template(CHATML, messages, add_generation_prompt=False)
    assert without.endswith("Hi<|im_end|>\n")


def test_bos_eos_and_tools_are_visible() -> None:
    template = "{{ bos_token }}{% if tools %}{{ tools | tojson }}{% endif %}{{ eos_token }}"
    tools = [{"type": "function", "function": {"name": "f<x>", "description": "é"}}]
    text = render_chat_template(template, [], tools=tools, bos_token="<s>", eos_token="</s>")
    assert text.startswith("<s>") and text.endswith("</s>")
    # tojson behaves like json.dumps: no HTML escaping, non-ASCII kept
    assert json.loads(text[3:-4]) == tools
    assert "f<x>" in text and "é" in text


def test_raise_exception_becomes_invalid_request() -> None:
    template = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}"
    )
    with pytest.raises(InvalidRequestError, match="user first"):
        render_chat_template(template, [{"role": "assistant", "content": "x"}])


def test_strftime_now_helper() -> None:
    text = render_chat_template("{{ strftime_now('%Y') }}", [])
    assert text == str(datetime.now().year)


def test_syntax_error_is_reported_clearly() -> None:
    with pytest.raises(InvalidRequestError, match="does not compile"):
        render_chat_template("{% for m in messages %}", [])


def test_sandbox_blocks_unsafe_access_and_mutation() -> None:
    with pytest.raises(InvalidRequestError):
        render_chat_template("{{ messages.__class__.__mro__ }}", [])
    with pytest.raises(InvalidRequestError):
        render_chat_template("{% set _ = messages.append(1) %}", [{"role": "user"}])


def test_undefined_key_in_message_renders_empty() -> None:
    text = render_chat_template("{{ messages[0]['content'] }}|", [{"role": "user"}])
    assert text == "|"
