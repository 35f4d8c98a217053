"""response_format mapping, tool-call schemas and grammars, and tool-call parsing."""

from __future__ import annotations

import json

import jsonschema
import pytest
from llama_cpp.llama_grammar import LlamaGrammar

from llmasos.errors import InvalidRequestError
from llmasos.kernel.structured import (
    looks_like_tool_call,
    parse_tool_output,
    plan_tools,
    structured_from_ollama_format,
    structured_from_response_format,
    tool_call_schema,
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "now"}},
]


def test_response_format_mapping() -> None:
    assert structured_from_response_format(None) is None
    assert structured_from_response_format({"type": "text"}) is None
    json_object = structured_from_response_format({"type": "json_object"})
    assert json_object is not None and json_object.kind == "json_object"
    schema = {"type": "object"}
    spec = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    converted = structured_from_response_format(spec)
    assert converted is not None and converted.schema == schema
    with pytest.raises(InvalidRequestError) as error:
        structured_from_response_format(
            {"type": "json_schema", "json_schema": {"schema": {"type": 5}}}
        )
    assert error.value.param == "response_format.json_schema.schema"
    assert structured_from_ollama_format("") is None
    with pytest.raises(InvalidRequestError):
        structured_from_ollama_format("yaml")


def test_required_schema_is_exactly_a_call() -> None:
    plan = plan_tools(TOOLS, "required")
    assert plan.mode == "required" and plan.structured is not None
    schema = plan.structured.schema
    assert schema is not None
    jsonschema.validate({"name": "get_weather", "arguments": {"city": "Oslo"}}, schema)
    jsonschema.validate({"name": "now", "arguments": {}}, schema)
    for bad in (
        {"name": "get_weather", "arguments": {}},
        {"name": "other", "arguments": {}},
        {"name": "now", "arguments": {}, "extra": 1},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_named_choice_restricts_to_one_function() -> None:
    plan = plan_tools(TOOLS, {"type": "function", "function": {"name": "now"}})
    assert [f.name for f in plan.functions] == ["now"]
    assert plan.structured is not None
    assert plan.structured.schema == tool_call_schema(plan.functions)
    with pytest.raises(InvalidRequestError):
        plan_tools(TOOLS, {"type": "function", "function": {"name": "nope"}})


def test_none_and_invalid_choices() -> None:
    assert plan_tools(TOOLS, "none").mode == "none"
    assert plan_tools(None, None).mode == "none"
    with pytest.raises(InvalidRequestError):
        plan_tools(None, "required")
    with pytest.raises(InvalidRequestError):
        plan_tools(TOOLS, "sometimes")
    with pytest.raises(InvalidRequestError):
        plan_tools([{"type": "function", "function": {"name": "bad name!"}}], "auto")


def test_auto_grammar_is_valid_gbnf() -> None:
    plan = plan_tools(TOOLS, "auto")
    assert plan.structured is not None and plan.structured.kind == "grammar"
    grammar = plan.structured.grammar or ""
    assert grammar.startswith("root ::= tool-calls | free-text")
    LlamaGrammar.from_string(grammar, verbose=False)


def test_parse_auto_output() -> None:
    plan = plan_tools(TOOLS, "auto")
    call = json.dumps({"name": "get_weather", "arguments": {"city": "Rome", "days": 2}})
    content, calls = parse_tool_output(f"<tool_call>\n{call}\n</tool_call>", plan)
    assert content is None and calls[0].name == "get_weather"
    assert calls[0].arguments == {"city": "Rome", "days": 2}
    assert calls[0].id.startswith("call_") and json.loads(calls[0].arguments_json)["days"] == 2
    two = (
        f"<tool_call>{call}</tool_call>\n<tool_call>"
        + '{"name": "now", "arguments": {}}</tool_call>'
    )
    assert [c.name for c in parse_tool_output(two, plan)[1]] == ["get_weather", "now"]
    assert parse_tool_output("Just text", plan) == ("Just text", [])
    invalid = '<tool_call>{"name": "get_weather", "arguments": {"days": 1}}</tool_call>'
    assert parse_tool_output(invalid, plan) == (invalid, [])
    truncated = '<tool_call>{"name": "get_weather", "argu'
    assert parse_tool_output(truncated, plan) == (truncated, [])


def test_parse_required_output() -> None:
    plan = plan_tools(TOOLS, "required")
    content, calls = parse_tool_output('{"name": "now", "arguments": {}}', plan)
    assert content is None and calls[0].name == "now"
    assert parse_tool_output('{"name": "now", "argum', plan)[1] == []


def test_looks_like_tool_call() -> None:
    assert looks_like_tool_call("  ") is None
    assert looks_like_tool_call(" <tool") is True
    assert looks_like_tool_call("Hi") is False
