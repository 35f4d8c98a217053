"""Response models of the named-service endpoints.

The request of ``POST /v1/services/{name}`` is the service's input object itself, plus the
optional reserved keys ``model``, ``parameters``, ``user`` and ``method``; it is checked against the
service's own input schema, so it has no pydantic model here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ServiceInfo(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | str | None = None
    model: str | None = Field(None, description="Default model (null: the server's default).")
    parameters: dict[str, Any] = Field(default_factory=dict)
    text_input: str | None = Field(None, description="The input field holding the main text.")
    long_input: str = Field("error", description="error, map_reduce or chunked.")
    choose_from: str | None = Field(
        None, description="The array input whose option is chosen by scored likelihood."
    )
    output_field: str | None = Field(
        None, description="The field of the structured output returned as the output."
    )
    sentence_limit: str | None = Field(
        None, description="The integer input capping the output's sentences."
    )
    split: str | None = Field(None, description="sentences: the text is run sentence by sentence.")
    examples: int = Field(0, description="How many few-shot examples the prompt shows.")
    grounding: str | None = Field(
        None, description="The context input the answer is grounded on (details.quote)."
    )
    methods: list[str] = Field(
        default_factory=lambda: ["generate"],
        description="generate and/or extractive, the default first; a call may name one "
        "(the reserved body key method).",
    )
    source: str = "builtin"
    quality: dict[str, Any] | None = Field(
        None,
        description="The last measured quality (`llmasos eval service:NAME`): dataset, items, "
        "metric, value, baseline, plain_chat, model, date, and with several methods their "
        "values (methods) and the one the service uses for that model (method); null if "
        "never measured here.",
    )


class ServiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ServiceInfo]


class ServiceUsageOut(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    calls: int = Field(0, description="Kernel requests made for this call.")
    chunks: int = Field(1, description="Pieces the input was split into (1: not split).")


class ServiceResponse(BaseModel):
    service: str
    model: str
    output: Any = Field(..., description="Parsed JSON when the service has an output schema.")
    usage: ServiceUsageOut
    details: dict[str, Any] | None = Field(
        None,
        description="classify: probabilities per label (calibrated, summing to 1); answer "
        "with a context: the quote the answer is grounded on.",
    )
    citations: list[dict[str, Any]] | None = Field(
        None,
        description="answer with vector_store_ids: the numbered sources ([n] in the output), "
        "each a chunk with its file id, filename and quote.",
    )
