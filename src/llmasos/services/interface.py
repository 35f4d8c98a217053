"""What a named service is: a definition (data, usually YAML) and the result of calling one.

A `ServiceDefinition` says everything needed to run a service on the kernel: its name and
description, the JSON schema of its input, a prompt template (system + user, Jinja2, rendered
in a sandbox from the validated input), an optional output schema (a dict, or a Jinja2
template of JSON rendered from the input, e.g. classify's ``{"enum": labels}``) under whose
grammar the model decodes, the default model and sampling parameters, and how inputs longer
than the context are handled (``long_input``: ``error``, ``map_reduce`` or ``chunked``).
`ServiceResult` is what a call returns; it carries usage summed over every kernel call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

import jsonschema

from llmasos.errors import InvalidRequestError
from llmasos.types import OLLAMA_PARAMETER_FIELDS, SamplingParams

LongInputStrategy = Literal["error", "map_reduce", "chunked"]
METHODS = ("generate", "extractive")
"""How a text service makes its output: ``generate`` asks the model (the prompt, grammar
and strategies below); ``extractive`` returns the ``sentence_limit`` sentences of the
``text_input`` closest in meaning to the whole text, in their order (no chat model)."""
RESERVED_INPUTS = frozenset({"model", "parameters", "user", "method"})
"""Body keys of ``POST /v1/services/{name}`` that are not service inputs."""
SAMPLING_FIELD_NAMES = frozenset(f.name for f in fields(SamplingParams)) - {"structured"}
_KEYS = {
    "name",
    "description",
    "input_schema",
    "system",
    "prompt",
    "output_schema",
    "model",
    "parameters",
    "text_input",
    "long_input",
    "choose_from",
    "output_field",
    "sentence_limit",
    "split",
    "examples",
    "grounding",
    "methods",
}


class ServiceDefinitionError(InvalidRequestError):
    """A service definition (YAML file or plugin registration) is malformed."""

    default_code = "invalid_service"


@dataclass(frozen=True)
class ServiceDefinition:
    """One named service. Build it with `from_dict` to get its fields checked."""

    name: str
    description: str
    input_schema: dict[str, Any]
    prompt: str
    """Jinja2 template of the user message; the input's fields are its variables."""
    system: str | None = None
    """Jinja2 template of the system message (None: the model's default)."""
    output_schema: dict[str, Any] | str | None = None
    """A JSON schema, or a Jinja2 template rendering to one; None means plain text."""
    model: str | None = None
    """Default model (None: the kernel's default)."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """Default sampling parameters (`SamplingParams` names; Ollama names accepted)."""
    text_input: str | None = None
    """The input field that holds the main text (the CLI's FILE, the chunked field)."""
    long_input: LongInputStrategy = "error"
    """What to do when the input does not fit the context window."""
    choose_from: str | None = None
    """An array input (classify's ``labels``): the output is the option the model finds most
    likely as its reply, scored by the kernel and calibrated against a content-free input
    (``details.probabilities``) instead of sampled."""
    output_field: str | None = None
    """With an object output schema: return this field as the output, the others as
    ``details`` (answer's ``quote``, decoded before its ``answer``)."""
    sentence_limit: str | None = None
    """An integer input (summarize's ``max_sentences``): the text output keeps at most that
    many sentences."""
    split: Literal["sentences"] | None = None
    """``sentences``: the ``text_input`` is run sentence by sentence (concurrently, batched by
    the kernel) and the results joined in order, one per sentence (translate)."""
    grounding: str | None = None
    """A text input (answer's ``context``): when given, the sentence of it that best matches
    the ``text_input`` (the question) is the template's ``quote`` and ``details.quote``, so
    the model answers from the passage that holds the answer; a reply whose words are not in
    the context is replaced by the quote (``details.grounded`` false)."""
    methods: tuple[str, ...] = ("generate",)
    """The methods (`METHODS`) the service can use, the default first. With more than one,
    a call may name one (``method``); otherwise the service uses the method that scored best
    for the call's model in the last ``llmasos eval`` that measured them all, else the
    first."""
    examples: tuple[dict[str, Any], ...] = ()
    """Few-shot examples, ``{input: {...}, output: ...}``: rendered with the same templates as
    earlier user/assistant turns."""
    source: str = "builtin"
    """Where it came from: ``builtin``, a file path, or ``plugin:NAME``."""

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "builtin") -> ServiceDefinition:
        """Check a parsed definition; `ServiceDefinitionError` names what is wrong."""
        where = f"service definition ({source})"
        if not isinstance(data, dict):
            raise ServiceDefinitionError(f"{where} must be a mapping")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ServiceDefinitionError(f"{where}: unknown keys {unknown}")
        for key in ("name", "description", "prompt"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise ServiceDefinitionError(f"{where}: {key!r} must be a non-empty string")
        name = data["name"].strip()
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ServiceDefinitionError(f"{where}: name {name!r} must be letters, digits, - or _")
        schema = data.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise ServiceDefinitionError(f"{where}: input_schema must be an object schema")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            raise ServiceDefinitionError(f"{where}: input_schema: {error.message}") from None
        reserved = sorted(RESERVED_INPUTS & set(schema.get("properties", {})))
        if reserved:
            raise ServiceDefinitionError(f"{where}: input names {reserved} are reserved")
        output = data.get("output_schema")
        if isinstance(output, dict):
            try:
                jsonschema.Draft202012Validator.check_schema(output)
            except jsonschema.SchemaError as error:
                raise ServiceDefinitionError(f"{where}: output_schema: {error.message}") from None
        elif output is not None and not isinstance(output, str):
            raise ServiceDefinitionError(f"{where}: output_schema must be a mapping or a string")
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ServiceDefinitionError(f"{where}: parameters must be a mapping")
        try:
            sampling_values(parameters)
        except InvalidRequestError as error:
            raise ServiceDefinitionError(f"{where}: parameters: {error.message}") from None
        text_input = data.get("text_input")
        properties = schema.get("properties", {})
        if text_input is not None and text_input not in properties:
            raise ServiceDefinitionError(f"{where}: text_input {text_input!r} is not an input")
        long_input = data.get("long_input", "error")
        if long_input not in ("error", "map_reduce", "chunked"):
            raise ServiceDefinitionError(
                f"{where}: long_input must be error, map_reduce or chunked"
            )
        if long_input != "error" and text_input is None:
            raise ServiceDefinitionError(f"{where}: long_input {long_input} needs text_input")
        if long_input != "error" and output is not None:
            raise ServiceDefinitionError(
                f"{where}: long_input {long_input} joins text; it cannot have an output_schema"
            )
        choose_from = data.get("choose_from")
        if choose_from is not None:
            if properties.get(choose_from, {}).get("type") != "array":
                raise ServiceDefinitionError(f"{where}: choose_from must name an array input")
            if output is not None or long_input != "error":
                raise ServiceDefinitionError(
                    f"{where}: choose_from picks the output itself; it takes no output_schema "
                    "and no long_input"
                )
        output_field = data.get("output_field")
        if output_field is not None and (output is None or not isinstance(output_field, str)):
            raise ServiceDefinitionError(f"{where}: output_field needs an output_schema")
        sentence_limit = data.get("sentence_limit")
        if sentence_limit is not None and properties.get(sentence_limit, {}).get("type") != (
            "integer"
        ):
            raise ServiceDefinitionError(f"{where}: sentence_limit must name an integer input")
        split = data.get("split")
        if split not in (None, "sentences"):
            raise ServiceDefinitionError(f"{where}: split must be sentences")
        if split is not None and (text_input is None or output is not None):
            raise ServiceDefinitionError(
                f"{where}: split needs a text_input and a text output (no output_schema)"
            )
        examples = data.get("examples") or []
        if not isinstance(examples, list) or not all(
            isinstance(e, dict) and isinstance(e.get("input"), dict) and "output" in e
            for e in examples
        ):
            raise ServiceDefinitionError(
                f"{where}: examples must be a list of {{input: {{...}}, output: ...}}"
            )
        grounding = data.get("grounding")
        if grounding is not None and (
            properties.get(grounding, {}).get("type") != "string" or text_input is None
        ):
            raise ServiceDefinitionError(
                f"{where}: grounding must name a string input, and the service a text_input"
            )
        methods = data.get("methods", ["generate"])
        if (
            not isinstance(methods, list)
            or not methods
            or any(m not in METHODS for m in methods)
            or len(set(methods)) != len(methods)
        ):
            raise ServiceDefinitionError(
                f"{where}: methods must be a list of distinct names from {list(METHODS)}"
            )
        if "extractive" in methods and (
            sentence_limit is None or text_input is None or output is not None
        ):
            raise ServiceDefinitionError(
                f"{where}: the extractive method needs a text_input, a sentence_limit and a "
                "text output (no output_schema)"
            )
        system, model = data.get("system"), data.get("model")
        return cls(
            name=name,
            description=data["description"].strip(),
            input_schema=schema,
            prompt=data["prompt"],
            system=str(system) if system is not None else None,
            output_schema=output,
            model=str(model) if model is not None else None,
            parameters=dict(parameters),
            text_input=text_input,
            long_input=long_input,
            choose_from=choose_from,
            output_field=output_field,
            sentence_limit=sentence_limit,
            split=split,
            methods=tuple(methods),
            examples=tuple(examples),
            grounding=grounding,
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        """The public description (``GET /v1/services``)."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "model": self.model,
            "parameters": self.parameters,
            "text_input": self.text_input,
            "long_input": self.long_input,
            "choose_from": self.choose_from,
            "output_field": self.output_field,
            "sentence_limit": self.sentence_limit,
            "split": self.split,
            "examples": len(self.examples),
            "grounding": self.grounding,
            "methods": list(self.methods),
            "source": self.source,
        }


def sampling_values(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters (SamplingParams or Ollama names) as checked `SamplingParams` field values."""
    values: dict[str, Any] = {}
    for key, value in parameters.items():
        name = OLLAMA_PARAMETER_FIELDS.get(key, key)
        if name not in SAMPLING_FIELD_NAMES:
            known = ", ".join(sorted(SAMPLING_FIELD_NAMES))
            raise InvalidRequestError(
                f"unknown parameter {key!r} (known: {known})", param=f"parameters.{key}"
            )
        if name == "stop":
            value = (value,) if isinstance(value, str) else tuple(value)
        values[name] = value
    try:
        SamplingParams(**values)
    except InvalidRequestError as error:
        raise InvalidRequestError(error.message, param=f"parameters.{error.param}") from None
    except (TypeError, ValueError) as error:
        raise InvalidRequestError(f"invalid parameters: {error}", param="parameters") from None
    return values


@dataclass
class ServiceUsage:
    """Tokens and kernel calls one service call used (``chunks`` > 1: the input was split)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    chunks: int = 1

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "calls": self.calls,
            "chunks": self.chunks,
        }


@dataclass
class ServiceResult:
    """The outcome of one call: parsed JSON when the service has an output schema, else text."""

    service: str
    model: str
    output: Any
    usage: ServiceUsage = field(default_factory=ServiceUsage)
    details: dict[str, Any] | None = None
    """What the service measured on the way (classify: ``probabilities`` per label; answer
    with a context: the ``quote`` it grounded the answer on); None when nothing."""

    def to_dict(self) -> dict[str, Any]:
        result = {
            "service": self.service,
            "model": self.model,
            "output": self.output,
            "usage": self.usage.to_dict(),
        }
        if self.details is not None:
            result["details"] = self.details
        return result


def coerce_input_value(definition: ServiceDefinition, key: str, value: str) -> Any:
    """A ``key=value`` string from the command line as the type the input schema wants.

    Arrays take a comma list (``labels=a,b,c``) or JSON; numbers, booleans and objects parse.
    """
    import json

    spec = definition.input_schema.get("properties", {}).get(key)
    if spec is None:
        known = ", ".join(definition.input_schema.get("properties", {}))
        raise InvalidRequestError(
            f"service {definition.name} has no input {key!r} (inputs: {known})", param=key
        )
    kind = spec.get("type")
    try:
        if kind == "array":
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "boolean":
            return value.strip().lower() in ("1", "true", "yes", "on")
        if kind == "object":
            return json.loads(value)
    except ValueError as error:
        raise InvalidRequestError(f"{key}: not a valid {kind}: {error}", param=key) from None
    return value
