"""Turn a `StructuredOutput` constraint into a llama.cpp GBNF grammar.

`structured_output_to_gbnf` is the single entry point: ``json_object`` gets a grammar for
any JSON object, ``json_schema`` a grammar generated from the schema (with the converter that
ships with llama-cpp-python), ``grammar`` is passed through, ``regex`` is converted through the
same converter's pattern support. Every grammar's root rule is named ``root``. A schema or
pattern the converter rejects raises `InvalidRequestError`; whether a GBNF text actually
parses is only known when llama.cpp builds its sampler (the backend checks that).

The JSON grammars allow at most one space between tokens and nothing after the closing
brace, so that a small model cannot wander into endless whitespace and, once the object is
closed, the only token left is end-of-generation.

Length bounds are kept in the grammar only when narrow (`grammar_schema`): the converter
writes ``maxLength: 20000`` as twenty thousand nested optional rules, and llama.cpp's
recursive grammar parser overflows the C stack on it (a segfault of the whole server, from
one tool definition or ``response_format``; measured here: 512 nested rules sample fine,
2000 crash). Bounds up to `GRAMMAR_MAX_SPAN` (256) stay in the grammar, so a short field
(a calculator expression) always closes; a wider bound is left to the JSON-schema check
that every caller runs on the parsed output.

The converter ignores ``minimum`` and ``maximum``: a tool's ``max_num_results`` of 1 to 20
came out as 100, valid in the grammar and refused by the schema check, so a call that the
grammar was to guarantee did not happen. An integer with both bounds at most
`GRAMMAR_MAX_SPAN` apart is therefore written as the ``enum`` of its values, which the
converter does enforce.
"""

from __future__ import annotations

import json
from typing import Any, TypeGuard

from llmasos.errors import InvalidRequestError, UnsupportedError
from llmasos.types import StructuredOutput

JSON_OBJECT_GBNF = r"""
root    ::= object
object  ::= "{" ws ( member ( "," ws member )* )? "}"
member  ::= string ws ":" ws value ws
value   ::= object | array | string | number | "true" | "false" | "null"
array   ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
string  ::= "\"" char* "\""
char    ::= [^"\\\x00-\x1F\x7F] | "\\" ( ["\\/bfnrt] | "u" hex hex hex hex )
hex     ::= [0-9a-fA-F]
number  ::= "-"? int frac? exp?
int     ::= "0" | [1-9] [0-9]{0,15}
frac    ::= "." [0-9]{1,16}
exp     ::= [eE] [-+]? [0-9]{1,4}
ws      ::= " "?
"""
"""Any JSON object; bounded digits and whitespace keep generation finite."""


def structured_output_to_gbnf(structured: StructuredOutput) -> str:
    """The GBNF text enforcing ``structured``; raise `InvalidRequestError` if impossible."""
    if structured.kind == "json_object":
        return JSON_OBJECT_GBNF
    if structured.kind == "grammar":
        if not structured.grammar or not structured.grammar.strip():
            raise InvalidRequestError(
                "a grammar constraint needs the grammar text", param="grammar"
            )
        return structured.grammar
    if structured.kind == "json_schema":
        if structured.schema is None:
            raise InvalidRequestError("a json_schema constraint needs a schema", param="schema")
        return json_schema_to_gbnf(structured.schema)
    if structured.kind == "regex":
        if not structured.regex:
            raise InvalidRequestError("a regex constraint needs a pattern", param="regex")
        return regex_to_gbnf(structured.regex)
    raise UnsupportedError(f"structured output kind {structured.kind!r} is not supported")


def _converter(*, raw_pattern: bool) -> Any:
    from llama_cpp.llama_grammar import SchemaConverter

    return SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=raw_pattern
    )


GRAMMAR_MAX_SPAN = 256
"""The widest ``maxLength - minLength`` (``maxItems - minItems``) a grammar enforces."""
_BOUNDS = (("minLength", "maxLength"), ("minItems", "maxItems"))


def grammar_schema(schema: Any) -> Any:
    """``schema`` without the length and item bounds too wide to put in a grammar (see the
    module's docstring); everything else as it is."""
    if isinstance(schema, list):
        return [grammar_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    bounded = {key: grammar_schema(value) for key, value in schema.items()}
    low, high = bounded.get("minimum"), bounded.get("maximum")
    if (
        bounded.get("type") == "integer"
        and "enum" not in bounded
        and _whole(low)
        and _whole(high)
        and 0 <= float(high) - float(low) <= GRAMMAR_MAX_SPAN
    ):
        bounded = {k: v for k, v in bounded.items() if k not in ("minimum", "maximum")}
        bounded["enum"] = list(range(int(float(low)), int(float(high)) + 1))
    for low_key, high_key in _BOUNDS:
        high, low = bounded.get(high_key), bounded.get(low_key, 0)
        if isinstance(high, int) and isinstance(low, int) and high - low > GRAMMAR_MAX_SPAN:
            del bounded[high_key]
        if isinstance(low, int) and low > GRAMMAR_MAX_SPAN:
            bounded[low_key] = GRAMMAR_MAX_SPAN
    return bounded


def _whole(value: Any) -> TypeGuard[int | float]:
    """An int, or a float with no fraction (JSON's ``20.0``); never a bool."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return float(value).is_integer()


_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def strict_strings(grammar: str) -> str:
    """The converter's grammar with JSON's own string characters: its ``char`` rule lets a
    raw newline or other control character into a string (invalid JSON, which a small
    model's greedy output does produce); JSON wants those escaped."""
    return grammar.replace(_LOOSE_CHAR, _JSON_CHAR)


def json_schema_to_gbnf(schema: dict[str, Any]) -> str:
    """A grammar for JSON documents valid against ``schema`` (remote ``$ref`` not fetched)."""
    if not isinstance(schema, dict):
        raise InvalidRequestError("a JSON schema must be an object", param="schema")
    try:
        # Round-trip through JSON: the converter expects plain JSON data.
        plain = grammar_schema(json.loads(json.dumps(schema)))
        converter = _converter(raw_pattern=False)
        resolved = converter.resolve_refs(plain, "schema")
        converter.visit(resolved, "")
        grammar: str = converter.format_grammar()
    except Exception as error:  # the converter raises ValueError, KeyError, bare Exception ...
        raise InvalidRequestError(f"invalid JSON schema: {error}", param="schema") from None
    return strict_strings(grammar)


def regex_to_gbnf(pattern: str) -> str:
    """A grammar matching exactly the strings the regular expression matches."""
    anchored = pattern if pattern.startswith("^") else "^" + pattern
    anchored = anchored if anchored.endswith("$") else anchored + "$"
    try:
        converter = _converter(raw_pattern=True)
        # The converter's pattern support is not public API; it is stable across 0.3.x.
        converter._visit_pattern(anchored, "root")
        grammar: str = converter.format_grammar()
    except Exception as error:
        raise InvalidRequestError(
            f"unsupported regular expression: {error}", param="regex"
        ) from None
    return grammar
