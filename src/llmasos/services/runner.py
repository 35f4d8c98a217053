"""Run a named service on the kernel: validate, render, generate, parse.

`ServiceRunner.call` checks the input against the service's input schema (an
`InvalidRequestError` naming the field), renders the system and user prompts with sandboxed
Jinja2, and calls the kernel through `EngineClientInterface` with the service's default
model and parameters (overridable per call). A service with an output schema decodes under
that schema's grammar and returns the parsed JSON; otherwise it returns the text.

Inputs longer than the context window are never silently truncated. ``map_reduce``
(summarize) splits the text into chunks by tokens (`EngineClientInterface.tokenize`),
summarizes each, then summarizes the joined summaries (again in chunks if they are still too
long); ``chunked`` (translate) processes chunk by chunk and joins the results; any other
service raises `ContextLengthExceededError` naming its text field.

A service with several ``methods`` (summarize: ``extractive`` and ``generate``) runs the one a
call names, else the one that scored best for the call's model in the last evaluation that
measured them all (``measured``: the service's recorded quality), else its first. The
extractive method embeds the text and its sentences with the embedding model
(`EngineClientInterface.embed`) and keeps the ``sentence_limit`` sentences whose embeddings are
closest to the text's, in their order: no chat model runs.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmasos.errors import ContextLengthExceededError, InvalidRequestError, LLMasOSError
from llmasos.kernel.interface import EngineClientInterface, GenerateRequest
from llmasos.models import ModelStoreInterface
from llmasos.services.interface import (
    ServiceDefinition,
    ServiceResult,
    ServiceUsage,
    sampling_values,
)
from llmasos.services.quality import read_quality
from llmasos.services.registry import ServiceRegistry
from llmasos.services.strategies import (
    CONTENT_FREE_TEXT,
    PriorCache,
    best_sentences,
    calibrate,
    central_sentences,
    keep_sentences,
    split_sentences,
    supported,
)
from llmasos.types import ChatMessage, SamplingParams, StructuredOutput

TEMPLATE_MARGIN_TOKENS = 64
"""Tokens reserved for the chat template's markup around the rendered messages."""
DEFAULT_SUMMARY_TOKENS = 256
MAX_REDUCE_LEVELS = 6
_SENTENCE_END = re.compile(r"(?<=[.!?\n])\s+")
_environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_environment.filters["best_sentences"] = best_sentences


def validate_input(definition: ServiceDefinition, data: Mapping[str, Any]) -> dict[str, Any]:
    """The input checked against the schema, with defaults filled in for the template."""
    validator = jsonschema.Draft202012Validator(definition.input_schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(data)))
    if error is not None:
        path = [str(part) for part in error.absolute_path]
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [n for n in error.validator_value if n not in error.instance]
            path = [*path, missing[0]] if missing else path
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(definition.input_schema.get("properties", {}))
            extra = sorted(set(error.instance) - allowed)
            path = [*path, extra[0]] if extra else path
        field = ".".join(path) or None
        where = f"input {field!r}" if field else "input"
        raise InvalidRequestError(
            f"service {definition.name}: {where}: {error.message}", param=field
        )
    values: dict[str, Any] = {}
    for key, spec in definition.input_schema.get("properties", {}).items():
        values[key] = spec.get("default") if isinstance(spec, dict) else None
    values.update(data)
    return values


def render(template: str, values: Mapping[str, Any], what: str) -> str:
    try:
        return _environment.from_string(template).render(**values).strip()
    except TemplateError as error:
        raise LLMasOSError(f"the {what} template failed to render: {error}") from None


def render_messages(definition: ServiceDefinition, values: Mapping[str, Any]) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    if definition.system:
        system = render(definition.system, values, f"{definition.name} system")
        messages.append({"role": "system", "content": system})
    for example in definition.examples:
        shown = {**values, **example["input"]}
        output = example["output"]
        reply = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        messages.append({"role": "user", "content": render(definition.prompt, shown, "example")})
        messages.append({"role": "assistant", "content": reply})
    user = render(definition.prompt, values, f"{definition.name} prompt")
    messages.append({"role": "user", "content": user})
    return messages


def output_schema(
    definition: ServiceDefinition, values: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The JSON schema the output must match (rendered from the input when templated)."""
    schema = definition.output_schema
    if schema is None or isinstance(schema, dict):
        return schema
    text = render(schema, values, f"{definition.name} output_schema")
    if text == "null":  # a conditional template: no schema for this input
        return None
    try:
        parsed = json.loads(text)
        jsonschema.Draft202012Validator.check_schema(parsed)
    except (json.JSONDecodeError, jsonschema.SchemaError) as error:
        message = getattr(error, "message", None) or str(error)
        raise InvalidRequestError(
            f"service {definition.name}: the output schema built from the input is not a "
            f"valid JSON schema: {message}",
            param="schema" if "schema" in values else None,
        ) from None
    if not isinstance(parsed, dict):
        raise InvalidRequestError(f"service {definition.name}: output schema must be an object")
    return parsed


@dataclass
class _Call:
    """One service call in progress: what stays the same across its kernel requests."""

    definition: ServiceDefinition
    model: str | None
    sampling: SamplingParams
    explicit: frozenset[str]
    tenant: str
    usage: ServiceUsage
    model_name: str = ""


class ServiceRunner:
    """Runs services from a registry on a kernel client.

    ``registry`` is a `ServiceRegistry` or a function returning one (reloaded per call, so
    new YAML files are picked up). ``canonical_model`` maps a requested model name (None:
    the default) to the name the kernel reports for it; it is needed only to find a model's
    context window when an input must be split.
    """

    def __init__(
        self,
        engine: EngineClientInterface,
        registry: ServiceRegistry | Callable[[], ServiceRegistry],
        *,
        canonical_model: Callable[[str | None], str] | None = None,
        measured: Callable[[str], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.engine = engine
        self._registry = registry
        self.canonical_model = canonical_model
        self.measured = measured
        self._priors = PriorCache()

    @property
    def registry(self) -> ServiceRegistry:
        return self._registry if isinstance(self._registry, ServiceRegistry) else self._registry()

    async def call(
        self,
        service: str,
        data: Mapping[str, Any],
        *,
        model: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        tenant: str = "anonymous",
        method: str | None = None,
    ) -> ServiceResult:
        """Run ``service`` on ``data``; per-call ``model`` / ``parameters`` / ``method``
        override defaults."""
        definition = self.registry.get(service)
        if not isinstance(data, Mapping):
            raise InvalidRequestError(f"service {service}: the input must be a JSON object")
        if method is not None and method not in definition.methods:
            raise InvalidRequestError(
                f"service {service}: method {method!r} is not one of its methods "
                f"({', '.join(definition.methods)})",
                param="method",
            )
        values = validate_input(definition, data)
        details: dict[str, Any] | None = None
        if definition.grounding is not None:
            values["quote"] = None
            context = values.get(definition.grounding)
            if isinstance(context, str) and context.strip():
                question = str(values.get(definition.text_input or "", ""))
                values["quote"] = best_sentences(context, question, 1)
                details = {"quote": values["quote"]}
        given = sampling_values({**definition.parameters, **(parameters or {})})
        schema = output_schema(definition, values)
        if schema is not None:
            given["structured"] = StructuredOutput(kind="json_schema", schema=schema)
        call = _Call(
            definition=definition,
            model=model or definition.model or self.best_resident_model(),
            sampling=SamplingParams(**given),
            explicit=frozenset(given),
            tenant=tenant,
            usage=ServiceUsage(),
        )
        if definition.choose_from is not None:
            return await self._choose(call, values)
        if (method or self.method_for(definition, call.model)) == "extractive":
            summary = await self._extract(call, values)
            return ServiceResult(service, call.model_name, summary, call.usage, None)
        try:
            if definition.split == "sentences":
                text, finish = await self._by_sentence(call, values), "stop"
            else:
                text, finish = await self._generate(call, values)
        except ContextLengthExceededError:
            if definition.long_input == "error":
                field = definition.text_input or "input"
                raise ContextLengthExceededError(
                    f"service {service}: the input does not fit the model's context window "
                    f"(this service does not split long inputs); shorten {field!r}",
                    param=definition.text_input,
                ) from None
            text = await self._long_input(call, values)
            finish = "stop"
        output: Any = text.strip()
        if schema is not None:
            output = parse_output(definition, schema, text, finish, call.sampling.max_tokens)
            keep = definition.output_field
            if keep is not None and isinstance(output, dict) and keep in output:
                details = {**(details or {}), **{k: v for k, v in output.items() if k != keep}}
                output = output[keep]
        if details and "quote" in details and isinstance(output, str):
            context = str(values.get(definition.grounding or "", ""))
            details["grounded"] = supported(output, context)
            if not details["grounded"]:  # an answer not found in the context: quote instead
                output = details["quote"]
        if definition.sentence_limit is not None and isinstance(output, str):
            limit = values.get(definition.sentence_limit)
            if isinstance(limit, int) and limit > 0:
                output = keep_sentences(output, limit)
        return ServiceResult(service, call.model_name, output, call.usage, details)

    def method_for(self, definition: ServiceDefinition, model: str | None) -> str:
        """The method a call of ``definition`` on ``model`` uses when it names none."""
        first = definition.methods[0]
        if len(definition.methods) == 1 or self.measured is None:
            return first
        entry = self.measured(definition.name) or {}
        scores, measured_on = entry.get("methods"), entry.get("model")
        if not isinstance(scores, Mapping) or not measured_on or self.canonical_model is None:
            return first
        try:
            if self.canonical_model(model) != self.canonical_model(str(measured_on)):
                return first
        except LLMasOSError:  # a model the store no longer has
            return first
        known = [m for m in definition.methods if isinstance(scores.get(m), int | float)]
        if len(known) != len(definition.methods):
            return first
        return max(known, key=lambda m: (scores[m], -definition.methods.index(m)))

    async def _extract(self, call: _Call, values: Mapping[str, Any]) -> str:
        """The ``sentence_limit`` sentences of the text closest in meaning to all of it."""
        definition = call.definition
        assert definition.text_input is not None and definition.sentence_limit is not None
        text = str(values[definition.text_input]).strip()
        limit = values.get(definition.sentence_limit)
        sentences = split_sentences(text)
        if not isinstance(limit, int) or limit < 1 or len(sentences) <= limit:
            return text
        embedded = await self.engine.embed(None, [text, *sentences])
        call.model_name = embedded.model
        call.usage.prompt_tokens += embedded.prompt_tokens
        call.usage.calls += 1
        kept = central_sentences(embedded.vectors[0], embedded.vectors[1:], limit)
        return " ".join(sentences[i] for i in kept)

    def best_resident_model(self) -> str | None:
        """The largest loaded text model (None: the kernel's default): a model a user pulled
        and loaded serves services without naming it."""
        try:
            resident = self.engine.resident_models()
        except Exception:  # a kernel that cannot tell: use its default
            return None
        text_models = [m for m in resident if m.backend != "sentence-transformers"]
        if len(text_models) < 2:
            return None
        return max(text_models, key=lambda m: (m.size_bytes, m.name)).name

    async def _choose(self, call: _Call, values: Mapping[str, Any]) -> ServiceResult:
        """The option (of the ``choose_from`` input) the model finds likeliest as its reply,
        calibrated against the same prompt with a content-free text."""
        definition = call.definition
        assert definition.choose_from is not None
        options = [str(o) for o in values[definition.choose_from]]
        request = self._request(call, values)
        scored = await self.engine.score(request, options)
        call.model_name = scored.model
        call.usage.prompt_tokens += scored.prompt_tokens
        call.usage.calls += 1
        field = definition.text_input
        empty = {**values, field: CONTENT_FREE_TEXT} if field else dict(values)
        empty_messages = render_messages(definition, empty)
        key = json.dumps([scored.model, empty_messages, options], ensure_ascii=False)
        prior = self._priors.get(key)
        if prior is None:
            reference = await self.engine.score(self._request(call, empty), options)
            call.usage.prompt_tokens += reference.prompt_tokens
            call.usage.calls += 1
            prior = reference.totals
            self._priors.put(key, prior)
        probabilities = calibrate(scored.totals, prior)
        best = max(range(len(options)), key=lambda i: probabilities[i])
        details = {
            "probabilities": {o: round(p, 4) for o, p in zip(options, probabilities, strict=True)}
        }
        output = values[definition.choose_from][best]
        return ServiceResult(definition.name, call.model_name, output, call.usage, details)

    async def _by_sentence(self, call: _Call, values: Mapping[str, Any]) -> str:
        """The text input run one sentence at a time (concurrently), joined in order:
        paragraphs stay paragraphs, and each sentence yields exactly one result."""
        field = call.definition.text_input
        assert field is not None
        paragraphs = [p for p in re.split(r"\n\s*\n", str(values[field])) if p.strip()]
        plan = [split_sentences(p) for p in paragraphs]
        sentences = [s for p in plan for s in p]
        call.usage.chunks = len(sentences)
        results = await asyncio.gather(
            *(self._generate(call, {**values, field: s}) for s in sentences)
        )
        outputs = iter(
            _one_piece(text) or source for (text, _), source in zip(results, sentences, strict=True)
        )
        return "\n\n".join(" ".join(next(outputs) for _ in p) for p in plan)

    def _request(
        self, call: _Call, values: Mapping[str, Any], sampling: SamplingParams | None = None
    ) -> GenerateRequest:
        return GenerateRequest(
            model=call.model,
            messages=render_messages(call.definition, values),
            sampling=sampling or call.sampling,
            explicit=call.explicit,
            tenant=call.tenant,
        )

    async def _generate(
        self, call: _Call, values: Mapping[str, Any], sampling: SamplingParams | None = None
    ) -> tuple[str, str]:
        request = self._request(call, values, sampling)
        pieces: list[str] = []
        finish = "stop"
        async for output in self.engine.generate(request):
            pieces.append(output.text)
            call.model_name = output.model
            if output.finished:
                finish = output.finish_reason or "stop"
                call.usage.prompt_tokens += output.prompt_tokens
                call.usage.completion_tokens += output.completion_tokens
        call.usage.calls += 1
        return "".join(pieces), finish

    # --- inputs longer than the context ---------------------------------------------------

    async def _long_input(self, call: _Call, values: Mapping[str, Any]) -> str:
        definition = call.definition
        field = definition.text_input
        assert field is not None
        context = await self.context_window(call.model)
        overhead = await self._count(call, {**values, field: ""}) + TEMPLATE_MARGIN_TOKENS
        if definition.long_input == "map_reduce":
            max_tokens = call.sampling.max_tokens or DEFAULT_SUMMARY_TOKENS
            budget = context - overhead - max_tokens
            self._check_budget(call, budget, context)
            sampling = call.sampling.with_changes(max_tokens=max_tokens)
            text = str(values[field])
            previous = await self._tokens(call, text)
            for level in range(MAX_REDUCE_LEVELS):
                chunks = await self._split(call, text, budget)
                if len(chunks) == 1:
                    summary, _ = await self._generate(call, {**values, field: text}, sampling)
                    return summary
                if level == 0:
                    call.usage.chunks = len(chunks)
                summaries = [
                    (await self._generate(call, {**values, field: chunk}, sampling))[0].strip()
                    for chunk in chunks
                ]
                text = "\n\n".join(s for s in summaries if s)
                size = await self._tokens(call, text)
                if size >= previous:
                    break
                previous = size
            raise ContextLengthExceededError(
                f"service {definition.name}: the summaries of the chunks do not get shorter "
                "than the context window; lower parameters.max_tokens",
                param=field,
            )
        # chunked: the output of a chunk is about as long as the chunk itself
        budget = (context - overhead) // 2
        self._check_budget(call, budget, context)
        chunks = await self._split(call, str(values[field]), budget)
        call.usage.chunks = len(chunks)
        results = []
        for chunk in chunks:
            room = context - overhead - await self._tokens(call, chunk)
            limit = min(call.sampling.max_tokens or room, room)
            sampling = call.sampling.with_changes(max_tokens=max(1, limit))
            text, _ = await self._generate(call, {**values, field: chunk}, sampling)
            results.append(text.strip())
        return "\n\n".join(results)

    def _check_budget(self, call: _Call, budget: int, context: int) -> None:
        if budget < 16:
            raise ContextLengthExceededError(
                f"service {call.definition.name}: the prompt template and max_tokens leave no "
                f"room for text in a context window of {context} tokens",
                param="parameters.max_tokens",
            )

    async def context_window(self, model: str | None) -> int:
        """The context window (tokens) of ``model`` as loaded by the kernel."""
        await self.engine.load(model)
        wanted = self.canonical_model(model) if self.canonical_model else model
        resident = self.engine.resident_models()
        for item in resident:
            if item.name == wanted:
                return item.context_length
        if wanted is not None:
            base = wanted.split(":")[0]
            matches = [item for item in resident if item.name.split(":")[0] == base]
            if matches:
                return min(item.context_length for item in matches)
        elif len(resident) == 1:
            return resident[0].context_length
        raise LLMasOSError(f"cannot tell the context window of model {model or '(default)'!r}")

    async def _tokens(self, call: _Call, text: str) -> int:
        return len(await self.engine.tokenize(call.model, text))

    async def _count(self, call: _Call, values: Mapping[str, Any]) -> int:
        messages = render_messages(call.definition, values)
        return await self._tokens(call, "\n".join(str(m["content"]) for m in messages))

    async def _split(self, call: _Call, text: str, budget: int) -> list[str]:
        """``text`` in pieces of at most ``budget`` tokens, broken at sentences when possible."""
        total = await self._tokens(call, text)
        if total <= budget:
            return [text]
        target_chars = max(16, int(budget * len(text) / total * 0.9))
        units: list[str] = []
        for sentence in _SENTENCE_END.split(text):
            while len(sentence) > target_chars:
                cut = sentence.rfind(" ", 0, target_chars)
                cut = cut if cut > 0 else target_chars
                units.append(sentence[:cut])
                sentence = sentence[cut:].lstrip()
            if sentence:
                units.append(sentence)
        chunks: list[str] = []
        current = ""
        for unit in units:
            if current and len(current) + 1 + len(unit) > target_chars:
                chunks.append(current)
                current = unit
            else:
                current = f"{current} {unit}" if current else unit
        if current:
            chunks.append(current)
        result: list[str] = []
        for chunk in chunks:  # the estimate is by characters; check by tokens
            if await self._tokens(call, chunk) > budget and len(chunk) > 32:
                middle = chunk.rfind(" ", 0, len(chunk) // 2) + 1 or len(chunk) // 2
                result.extend(await self._split(call, chunk[:middle], budget))
                result.extend(await self._split(call, chunk[middle:], budget))
            else:
                result.append(chunk)
        return result


def runner_for(
    engine: EngineClientInterface, home: Path | None, store: ModelStoreInterface, default_model: str
) -> ServiceRunner:
    """A runner over the services of ``home`` (reloaded per call) and models of ``store``."""
    return ServiceRunner(
        engine,
        lambda: ServiceRegistry.load(home),
        canonical_model=lambda name: store.manifest(name or default_model).name,
        measured=(lambda service: read_quality(home, service)) if home is not None else None,
    )


def parse_output(
    definition: ServiceDefinition,
    schema: dict[str, Any],
    text: str,
    finish_reason: str,
    max_tokens: int | None,
) -> Any:
    """The generated JSON, checked against ``schema``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        if finish_reason == "length":
            raise InvalidRequestError(
                f"service {definition.name}: the output was cut off at max_tokens={max_tokens} "
                "before the JSON was complete; raise parameters.max_tokens",
                param="parameters.max_tokens",
            ) from None
        raise LLMasOSError(f"service {definition.name}: the model did not return JSON") from None
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as error:
        raise LLMasOSError(
            f"service {definition.name}: the output does not match its schema: {error.message}"
        ) from None
    return data


def _one_piece(text: str) -> str:
    """A per-sentence result without what a small model adds around it: a leading label
    ("Translation:") and anything after its first line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0]
    label, sep, rest = first.partition(":")
    if sep and rest.strip() and len(label.split()) <= 2 and label.strip().istitle():
        first = rest.strip()
    return first.strip().strip('"').strip()
