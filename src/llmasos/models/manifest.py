"""The model manifest: what the store knows about one version of a named model.

A manifest is JSON on disk under ``$LLMASOS_HOME/models/manifests/<namespace>/<name>/<tag>``.
It points at content-addressed blobs (sha256) and carries the facts a backend and the kernel
need: format, architecture facts, chat template, system prompt and default parameters.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ModelFormat = Literal["gguf", "safetensors", "sentence-transformers", "ctranslate2"]
ModelKind = Literal["generate", "embed", "transcribe", "speak"]
"""``transcribe``: a speech recognizer (whisper in CTranslate2 format) that the perception
layer runs for ``/v1/audio/transcriptions``; ``speak``: a voice (a transformers VITS model such
as MMS-TTS) that it runs for ``/v1/audio/speech``. The kernel loads neither."""


@dataclass(frozen=True)
class ModelName:
    """``namespace/name:tag`` with the namespace optional and the tag defaulting to latest."""

    namespace: str
    name: str
    tag: str

    def __str__(self) -> str:
        prefix = f"{self.namespace}/" if self.namespace != "library" else ""
        return f"{prefix}{self.name}:{self.tag}"


@dataclass(frozen=True)
class BlobRef:
    """One file of a model: its path inside the model, digest and size."""

    path: str
    """Relative path in the model (``model.gguf``, ``config.json`` ...)."""
    digest: str
    """``sha256:<hex>``."""
    size: int


@dataclass(frozen=True)
class Manifest:
    """One version of a model in the store."""

    name: str
    """Canonical ``namespace/name:tag`` (namespace omitted for ``library``)."""
    format: ModelFormat
    kind: ModelKind
    files: tuple[BlobRef, ...]
    digest: str = ""
    """sha256 of the manifest's canonical JSON (without this field): the model id."""
    family: str | None = None
    parameter_count: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    embedding_length: int | None = None
    chat_template: str | None = None
    system: str | None = None
    """Default system prompt, used when a chat has none."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """Default sampling parameters (Ollama names: temperature, top_k, num_ctx, stop ...)."""
    messages: tuple[dict[str, Any], ...] = ()
    """Example messages prepended to every chat (Modelfile MESSAGE)."""
    adapter: BlobRef | None = None
    """A LoRA adapter applied on load (Modelfile ADAPTER)."""
    projector: BlobRef | None = None
    """A GGUF model's vision projector (an ``mmproj`` GGUF that llama.cpp's libmtmd loads
    beside it); left out of the canonical JSON when None, so other digests do not change."""
    license: str | None = None
    source: str | None = None
    """Where it came from: a path, ``hf:<repo>``, ``package:<name>``, ``from:<model>``."""
    created_at: str = ""
    """ISO 8601 UTC time the version was written."""
    capabilities: tuple[str, ...] = ()
    """What it takes beyond text: ``vision`` (a vision-language model: images in chat go
    to the model itself, not through OCR). Empty for text-only models, and then left out of
    the canonical JSON so their digests do not change."""

    @property
    def sees_images(self) -> bool:
        return "vision" in self.capabilities

    @property
    def size(self) -> int:
        extras = (self.adapter, self.projector)
        return sum(f.size for f in self.files) + sum(e.size for e in extras if e is not None)

    @property
    def short_id(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["files"] = tuple(BlobRef(**f) for f in data["files"])
        data["messages"] = tuple(data.get("messages") or ())
        data["capabilities"] = tuple(data.get("capabilities") or ())
        if data.get("adapter"):
            data["adapter"] = BlobRef(**data["adapter"])
        if data.get("projector"):
            data["projector"] = BlobRef(**data["projector"])
        return cls(**data)


@dataclass(frozen=True)
class ResolvedModel:
    """A manifest plus where its files are on disk, ready for a backend to load."""

    manifest: Manifest
    path: Path
    """The .gguf file, or a directory laid out as the model expects (links to blobs)."""
    adapter_path: Path | None = None
    projector_path: Path | None = None
    """The vision projector GGUF of a GGUF model that has one."""
