"""Request models of Ollama's model-management endpoints (``name`` accepted for ``model``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from llmasos.server.ollama.common import OllamaModel


class NamedBody(OllamaModel):
    """Ollama accepts ``model`` or the older ``name``."""

    model: str = Field("", description="Model name.")
    name: str | None = Field(None, description="Deprecated alias of model.")

    @model_validator(mode="after")
    def _name_or_model(self) -> NamedBody:
        if not self.model and self.name:
            self.model = self.name
        if not self.model:
            raise ValueError("model is required")
        return self


class ShowBody(NamedBody):
    verbose: bool = False


class PullBody(NamedBody):
    insecure: bool = False
    stream: bool = True


class CopyBody(OllamaModel):
    source: str = Field(..., min_length=1)
    destination: str = Field(..., min_length=1)


class CreateBody(NamedBody):
    modelfile: str | None = None
    from_: str | None = Field(None, alias="from")
    system: str | None = None
    template: str | None = None
    parameters: dict[str, Any] | None = None
    license: str | list[str] | None = None
    messages: list[dict[str, Any]] | None = None
    adapters: dict[str, str] | None = None
    files: dict[str, str] | None = None
    quantize: str | None = None
    stream: bool = True
