"""Turn ``response_format`` and ``tools`` into output constraints, and parse tool calls back.

`structured_from_response_format` maps OpenAI's ``response_format`` (and Ollama's
``format``) to a `StructuredOutput` the backend enforces while sampling.

Tool calling (`plan_tools`) has three modes:

* ``required`` / a named function: the output is constrained to a JSON schema that is
  exactly one call, ``{"name": <const>, "arguments": <that function's parameters>}``, an
  ``anyOf`` over the allowed functions.
* ``auto``: a GBNF grammar ``root ::= tool-calls | free-text`` where a call is
  ``<tool_call>{json}</tool_call>`` (the SmolLM2 / Qwen / Hermes convention) and free text
  may not begin with ``<``. The first character therefore tells a call from an answer, so
  text can stream as soon as it starts while a call is buffered and parsed whole.
* ``none``: no tools, plain text.

`parse_tool_output` turns generated text into content and validated `ToolCall` objects.
`parse_tool_output_lenient` reads a call out of text generated *without* the grammar (the
suite's unconstrained baseline): wherever it sits, tagged or bare, schema unchecked.

It lives in the kernel because every caller of tool calls uses it the same way: the HTTP
faces (chat completions, responses, Ollama) and the agent runtime, which plans its steps
with `plan_tools` and sends the `GenerateRequest` straight to the engine client.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema

from llmasos.backends.grammar import grammar_schema, strict_strings
from llmasos.errors import InvalidRequestError
from llmasos.types import StructuredOutput

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_TOOL_CALL_RE = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)" + re.escape(TOOL_CALL_CLOSE), re.S)
_FUNCTION_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def _check_schema(schema: Any, param: str) -> dict[str, Any]:
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{param} must be a JSON schema object", param=param)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise InvalidRequestError(
            f"{param} is not a valid JSON schema: {error.message}", param=param
        ) from None
    return schema


def structured_from_response_format(
    response_format: dict[str, Any] | None, *, param: str = "response_format"
) -> StructuredOutput | None:
    """OpenAI ``response_format`` -> `StructuredOutput` (None for plain text)."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return StructuredOutput(kind="json_object")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise InvalidRequestError(
                "response_format.json_schema.schema is required", param=f"{param}.json_schema"
            )
        schema = _check_schema(spec["schema"], f"{param}.json_schema.schema")
        return StructuredOutput(kind="json_schema", schema=schema)
    raise InvalidRequestError(
        f"unsupported response_format type {kind!r} (use text, json_object or json_schema)",
        param=f"{param}.type",
    )


def structured_from_ollama_format(fmt: Any) -> StructuredOutput | None:
    """Ollama ``format``: ``"json"``, a JSON schema object, or empty."""
    if fmt in (None, ""):
        return None
    if fmt == "json":
        return StructuredOutput(kind="json_object")
    if isinstance(fmt, dict):
        return StructuredOutput(kind="json_schema", schema=_check_schema(fmt, "format"))
    raise InvalidRequestError('format must be "json" or a JSON schema object', param="format")


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolPlan:
    """How one request uses tools: the mode, the callable functions and the constraint."""

    mode: Literal["none", "auto", "required"]
    functions: tuple[FunctionSpec, ...] = ()
    structured: StructuredOutput | None = None

    @property
    def active(self) -> bool:
        return self.mode != "none" and bool(self.functions)


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


def function_specs(tools: list[dict[str, Any]] | None) -> tuple[FunctionSpec, ...]:
    """Validate OpenAI-style tool definitions; return their functions."""
    specs: list[FunctionSpec] = []
    for index, tool in enumerate(tools or []):
        where = f"tools[{index}]"
        if tool.get("type", "function") != "function" or not isinstance(tool.get("function"), dict):
            raise InvalidRequestError(f"{where} must be a function tool", param=where)
        function = tool["function"]
        name = function.get("name")
        if not isinstance(name, str) or not _FUNCTION_NAME_RE.match(name):
            raise InvalidRequestError(
                f"{where}.function.name must be 1-64 letters, digits, _ . or -",
                param=f"{where}.function.name",
            )
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        _check_schema(parameters, f"{where}.function.parameters")
        if any(spec.name == name for spec in specs):
            raise InvalidRequestError(f"duplicate tool name {name!r}", param=where)
        specs.append(FunctionSpec(name=name, parameters=parameters))
    return tuple(specs)


def tool_call_schema(functions: tuple[FunctionSpec, ...]) -> dict[str, Any]:
    """A JSON schema matching exactly one call of one of ``functions``."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": f.name}, "arguments": f.parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in functions
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def auto_tool_grammar(functions: tuple[FunctionSpec, ...]) -> str:
    """GBNF: one or more ``<tool_call>{call}</tool_call>``, or free text not starting with '<'."""
    from llama_cpp import llama_grammar

    converter_class: Any = llama_grammar.SchemaConverter
    converter: Any = converter_class(
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    schema = converter.resolve_refs(grammar_schema(tool_call_schema(functions)), "tools")
    converter.visit(schema, "tool-call-json")
    rules: str = strict_strings(converter.format_grammar())
    head = (
        "root ::= tool-calls | free-text\n"
        f'tool-calls ::= tool-call ("\\n" tool-call)*\n'
        f'tool-call ::= "{TOOL_CALL_OPEN}" "\\n"? tool-call-json "\\n"? "{TOOL_CALL_CLOSE}"\n'
        "free-text ::= ([^<] [^\\x00]*)?\n"
    )
    return head + rules


def plan_tools(tools: list[dict[str, Any]] | None, tool_choice: Any) -> ToolPlan:
    """Decide the tool mode and output constraint for ``tools`` + ``tool_choice``."""
    functions = function_specs(tools)
    if tool_choice is None:
        tool_choice = "auto" if functions else "none"
    if tool_choice == "none" or not functions:
        if tool_choice not in ("none", "auto"):
            raise InvalidRequestError("tool_choice needs tools to choose from", param="tool_choice")
        return ToolPlan(mode="none")
    if tool_choice == "auto":
        grammar = auto_tool_grammar(functions)
        return ToolPlan("auto", functions, StructuredOutput(kind="grammar", grammar=grammar))
    if tool_choice == "required":
        allowed = functions
    elif isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        allowed = tuple(f for f in functions if f.name == name)
        if not allowed:
            raise InvalidRequestError(
                f"tool_choice names {name!r}, which is not among the tools",
                param="tool_choice",
            )
    else:
        raise InvalidRequestError(
            'tool_choice must be "none", "auto", "required" or '
            '{"type": "function", "function": {"name": ...}}',
            param="tool_choice",
        )
    schema = tool_call_schema(allowed)
    return ToolPlan("required", allowed, StructuredOutput(kind="json_schema", schema=schema))


def _valid_call(data: Any, functions: tuple[FunctionSpec, ...]) -> ToolCall | None:
    if not isinstance(data, dict):
        return None
    name, arguments = data.get("name"), data.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    spec = next((f for f in functions if f.name == name), None)
    if spec is None or not isinstance(arguments, dict):
        return None
    try:
        _validator(json.dumps(spec.parameters, sort_keys=True)).validate(arguments)
    except (jsonschema.ValidationError, jsonschema.SchemaError):
        return None
    return ToolCall(name=spec.name, arguments=arguments)


@functools.lru_cache(maxsize=512)
def _validator(schema_json: str) -> Any:
    """A compiled validator for a schema (given as JSON text, to be hashable): checking a
    schema costs milliseconds, so it is done once per schema, not per call."""
    schema = json.loads(schema_json)
    cls: Any = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def parse_tool_output(text: str, plan: ToolPlan) -> tuple[str | None, list[ToolCall]]:
    """Split generated text into content and tool calls whose arguments validate.

    Output that is not a complete, valid call (e.g. cut off by ``max_tokens``) stays content.
    """
    if not plan.active:
        return text, []
    if plan.mode == "required":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return text, []
        call = _valid_call(data, plan.functions)
        return (None, [call]) if call else (text, [])
    if not text.lstrip().startswith(TOOL_CALL_OPEN):
        return text, []
    calls: list[ToolCall] = []
    for body in _TOOL_CALL_RE.findall(text):
        try:
            call = _valid_call(json.loads(body), plan.functions)
        except json.JSONDecodeError:
            call = None
        if call is None:
            return text, []
        calls.append(call)
    return (None, calls) if calls else (text, [])


def unconstrained_plan(plan: ToolPlan) -> ToolPlan:
    """The same tools in the prompt, with no constraint on the output."""
    return ToolPlan(plan.mode, plan.functions, None)


def parse_tool_output_lenient(text: str, plan: ToolPlan) -> tuple[str | None, list[ToolCall]]:
    """The first call in free text, as a lenient parser of unconstrained output reads it:
    a JSON object ``{"name": ..., "arguments": ...}`` (``parameters`` also accepted,
    arguments also as JSON text) anywhere in the text, inside ``<tool_call>`` tags or not,
    naming one of the plan's functions. Its arguments are *not* checked against the schema:
    the caller's tool registry does that and reports a mismatch as the call's error. No such
    object: the text is the answer."""
    if not plan.functions:
        return text, []
    names = {f.name for f in plan.functions}
    decoder = json.JSONDecoder()
    position = text.find("{")
    while position != -1:
        try:
            data, _end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and data.get("name") in names:
            arguments = data.get("arguments", data.get("parameters", {}))
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except json.JSONDecodeError:
                    arguments = {"_unparsed": arguments}
            if not isinstance(arguments, dict):
                arguments = {"_unparsed": arguments}
            return None, [ToolCall(name=str(data["name"]), arguments=arguments)]
        position = text.find("{", position + 1)
    return text, []


def looks_like_tool_call(text: str) -> bool | None:
    """For streaming under ``auto``: True once text starts a call, False once it cannot,
    None while it is still undecided (nothing but whitespace yet)."""
    stripped = text.lstrip()
    if not stripped:
        return None
    return stripped.startswith("<")


# -- calls whose result is already in the conversation -----------------------------------------

TEXT_ANSWER_GRAMMAR = "root ::= [^<{\\[ \\t\\r\\n] [^\\x00]*\n"
"""GBNF: a text answer that cannot open a tool call (nor a JSON object or list)."""


def _call_key(name: str, arguments: Any) -> tuple[str, str]:
    if isinstance(arguments, str):
        with contextlib.suppress(json.JSONDecodeError):
            arguments = json.loads(arguments)
    return name, json.dumps(arguments, sort_keys=True, ensure_ascii=False)


def answered_calls(messages: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """``(name, canonical arguments)`` of every assistant tool call that a later ``tool``
    message answered (matched by ``tool_call_id``, else by position)."""
    pending: dict[str, tuple[str, str]] = {}
    unnamed: list[tuple[str, str]] = []
    answered: set[tuple[str, str]] = set()
    for message in messages:
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                key = _call_key(str(function.get("name")), function.get("arguments"))
                if call.get("id"):
                    pending[str(call["id"])] = key
                unnamed.append(key)
        elif message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            if call_id and call_id in pending:
                key = pending.pop(str(call_id))
                answered.add(key)
                if key in unnamed:
                    unnamed.remove(key)
            elif unnamed:
                answered.add(unnamed.pop(0))
    return answered


def repeats_answered_calls(
    calls: list[ToolCall], plan: ToolPlan, answered: set[tuple[str, str]]
) -> bool:
    """True when, under ``tool_choice: auto``, every call the model made is one whose result
    the conversation already holds: the model is looping, and the server asks it for the
    answer instead (docs/design/mcp.md, *Finishing a tool round trip*)."""
    return (
        plan.mode == "auto"
        and bool(calls)
        and all(_call_key(c.name, c.arguments) in answered for c in calls)
    )


def text_answer_plan(plan: ToolPlan) -> ToolPlan:
    """The same tools in the prompt, but output constrained to a text answer."""
    return ToolPlan(
        plan.mode,
        plan.functions,
        StructuredOutput(kind="grammar", grammar=TEXT_ANSWER_GRAMMAR),
    )
