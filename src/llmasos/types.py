"""Plain data types shared by the kernel, the backends and the faces.

These are the words every layer speaks: how to sample (`SamplingParams`), what shape the
output must take (`StructuredOutput`), and a chat message. They hold data and validate it;
they do not know how a backend implements them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from llmasos.errors import InvalidRequestError


@dataclass(frozen=True)
class OllamaParameter:
    """One of Ollama's model parameters (Modelfile ``PARAMETER``, API ``options``)."""

    value_type: type
    """The Python type of one value (``stop`` repeats: a list of them)."""
    sampling_field: str | None
    """The `SamplingParams` field it sets; None for ``num_ctx``, fixed when a model loads."""


OLLAMA_PARAMETERS: dict[str, OllamaParameter] = {
    "temperature": OllamaParameter(float, "temperature"),
    "top_k": OllamaParameter(int, "top_k"),
    "top_p": OllamaParameter(float, "top_p"),
    "min_p": OllamaParameter(float, "min_p"),
    "num_ctx": OllamaParameter(int, None),
    "num_predict": OllamaParameter(int, "max_tokens"),
    "repeat_penalty": OllamaParameter(float, "repetition_penalty"),
    "repeat_last_n": OllamaParameter(int, "penalty_last_n"),
    "presence_penalty": OllamaParameter(float, "presence_penalty"),
    "frequency_penalty": OllamaParameter(float, "frequency_penalty"),
    "seed": OllamaParameter(int, "seed"),
    "stop": OllamaParameter(str, "stop"),
    "repetition_guard": OllamaParameter(bool, "repetition_guard"),
}
"""The one table of Ollama's parameters: the Modelfile parser, the ``options`` of the
Ollama API, the REPL's ``/set parameter`` and the services read it. ``repetition_guard`` is
LLMasOS's own (Ollama ignores unknown options)."""


def parse_parameter_value(kind: type, raw: str) -> object:
    """One parameter value from text (a Modelfile, the REPL): ``ValueError`` if malformed.

    Booleans read ``true/false``, ``yes/no``, ``on/off`` or ``1/0``; ``bool("false")`` would
    be True."""
    if kind is bool:
        word = raw.strip().lower()
        if word in {"true", "yes", "on", "1"}:
            return True
        if word in {"false", "no", "off", "0"}:
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    return kind(raw)


OLLAMA_PARAMETER_FIELDS: dict[str, str] = {
    name: parameter.sampling_field
    for name, parameter in OLLAMA_PARAMETERS.items()
    if parameter.sampling_field is not None
}
"""Ollama parameter name -> `SamplingParams` field, for the sampling parameters."""

ChatMessage = dict[str, Any]
"""An OpenAI-style chat message: ``{"role": ..., "content": ..., "tool_calls": ...}``."""


@dataclass(frozen=True)
class StructuredOutput:
    """A constraint on generated text, enforced by the backend while it samples.

    ``kind`` is ``json_object`` (any JSON object), ``json_schema`` (JSON valid against
    ``schema``), ``grammar`` (a llama.cpp GBNF grammar in ``grammar``) or ``regex``.
    """

    kind: Literal["json_object", "json_schema", "grammar", "regex"]
    schema: dict[str, Any] | None = None
    grammar: str | None = None
    regex: str | None = None


@dataclass(frozen=True)
class SamplingParams:
    """How to choose each next token, and when to stop.

    ``temperature == 0`` means greedy decoding. ``max_tokens=None`` means "until the context
    is full". ``seed`` makes sampling reproducible for one request.
    """

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_last_n: int = 64
    seed: int | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: int | None = None
    """Return the chosen token's log-probability and this many top alternatives (0-20)."""
    structured: StructuredOutput | None = None
    repetition_guard: bool = True
    """Stop the generation when its output falls into a loop (`llmasos.kernel.repetition`);
    it never applies with ``ignore_eos``."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `InvalidRequestError` naming the first out-of-range parameter."""
        checks: list[tuple[str, bool, str]] = [
            ("temperature", 0.0 <= self.temperature <= 2.0, "must be between 0 and 2"),
            ("top_p", 0.0 < self.top_p <= 1.0, "must be in (0, 1]"),
            ("top_k", self.top_k >= 0, "must be >= 0 (0 disables it)"),
            ("min_p", 0.0 <= self.min_p <= 1.0, "must be between 0 and 1"),
            ("repetition_penalty", 0.0 < self.repetition_penalty <= 10.0, "must be in (0, 10]"),
            ("presence_penalty", -2.0 <= self.presence_penalty <= 2.0, "must be between -2 and 2"),
            (
                "frequency_penalty",
                -2.0 <= self.frequency_penalty <= 2.0,
                "must be between -2 and 2",
            ),
            ("max_tokens", self.max_tokens is None or self.max_tokens >= 1, "must be >= 1"),
            (
                "logprobs",
                self.logprobs is None or 0 <= self.logprobs <= 20,
                "must be between 0 and 20",
            ),
            ("stop", len(self.stop) <= 16, "at most 16 stop sequences"),
        ]
        for name, ok, why in checks:
            if not ok:
                value = getattr(self, name)
                raise InvalidRequestError(f"{name}={value!r} {why}", param=name)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def with_changes(self, **changes: Any) -> SamplingParams:
        """A copy with some fields replaced (and validated)."""
        return replace(self, **changes)
