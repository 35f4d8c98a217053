"""Pieces shared by the Ollama endpoint families: options, keep_alive, timings, times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmasos.config import parse_duration
from llmasos.errors import ConfigError, InvalidRequestError
from llmasos.kernel.interface import GenerateOutput
from llmasos.server.sampling import build_sampling
from llmasos.types import OLLAMA_PARAMETER_FIELDS, SamplingParams, StructuredOutput


class OllamaModel(BaseModel):
    """Ollama request models: unknown fields are ignored, as Ollama does."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Options(OllamaModel):
    """The runtime ``options`` LLMasOS honours (others, e.g. ``num_gpu``, are accepted and
    ignored; ``num_ctx`` is the server's ``context_length`` setting). The fields are the
    parameters of `llmasos.types.OLLAMA_PARAMETERS` (a test holds them equal)."""

    model_config = ConfigDict(extra="allow")

    num_predict: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    num_ctx: int | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_guard: bool | None = None
    """LLMasOS: false lets a reply repeat itself (the guard is on by default)."""


OPTION_FIELDS = OLLAMA_PARAMETER_FIELDS


def sampling_from_options(
    options: Options | None,
    structured: StructuredOutput | None = None,
    logprobs: int | None = None,
) -> tuple[SamplingParams, frozenset[str]]:
    """`SamplingParams` from the options given; ``num_predict < 0`` means no limit."""
    given: dict[str, Any] = {}
    unset: set[str] = set()
    if options is not None:
        for option, field_name in OPTION_FIELDS.items():
            value = getattr(options, option)
            if value is None:
                continue
            if option == "num_predict" and value < 0:
                value = None
                unset.add("max_tokens")
            elif option == "stop":
                value = tuple(s for s in value if s)
            given[field_name] = value
    given["structured"] = structured
    given["logprobs"] = logprobs
    names = {field_name: f"options.{option}" for option, field_name in OPTION_FIELDS.items()}
    return build_sampling(given, param_names=names, unset=frozenset(unset))


class KeepAlive:
    """Ollama's ``keep_alive``: a number of seconds or a duration string."""

    @staticmethod
    def value(keep_alive: float | str | None) -> float | str:
        if keep_alive is None:
            return ""
        if isinstance(keep_alive, str):
            try:
                parse_duration(keep_alive)
            except ConfigError as error:
                raise InvalidRequestError(error.message, param="keep_alive") from None
        return keep_alive

    @staticmethod
    def unloads(keep_alive: float | str | None) -> bool:
        if keep_alive is None or keep_alive == "":
            return False
        return parse_duration(KeepAlive.value(keep_alive)) == 0


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def nanoseconds(seconds: float) -> int:
    return int(seconds * 1e9)


def timings(final: GenerateOutput, total_seconds: float) -> dict[str, Any]:
    """Ollama's timing and count fields (durations in nanoseconds)."""
    return {
        "total_duration": nanoseconds(total_seconds),
        "load_duration": nanoseconds(final.load_seconds),
        "prompt_eval_count": final.prompt_tokens,
        "prompt_eval_duration": nanoseconds(final.prompt_seconds),
        "eval_count": final.completion_tokens,
        "eval_duration": nanoseconds(final.generation_seconds),
    }


def done_reason(final: GenerateOutput) -> str:
    return final.finish_reason or "stop"


def final_fields(final: GenerateOutput, total_seconds: float) -> dict[str, Any]:
    """What the last object of a reply adds: ``done_reason``, LLMasOS's ``stopped_by`` when
    the kernel cut the reply short, and the timings."""
    fields: dict[str, Any] = {"done_reason": done_reason(final)}
    if final.stopped_by:
        fields["stopped_by"] = final.stopped_by
    return fields | timings(final, total_seconds)


class LogprobsRequest(OllamaModel):
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)

    def sampling_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None
