"""The sentence-transformers backend: embedding models (all-MiniLM-L6-v2 and kin).

Loads a sentence-transformers directory (``modules.json``, a transformer, a pooling layer)
offline, on CUDA when torch sees one, else on the CPU. `embed` returns L2-normalized vectors,
as Ollama's ``/api/embed`` does, and the number of input tokens (special tokens included)
counted with the model's own tokenizer. Calls of a few texts (a search query, a memory) run
on ONNX Runtime where it is installed (`llmasos.backends.onnx_embedding`: the same vectors in
a fraction of the time); bulk calls stay on torch, which is as fast for them. A text longer
than the model's ``max_seq_length`` is refused with `ContextLengthExceededError` rather than
silently truncated (OpenAI's embeddings API errors too). The generation half of
`BackendInterface` raises `UnsupportedError`: an embedding model cannot generate text.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gc
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from transformers.utils import logging as hf_logging

from llmasos.backends.interface import (
    BackendInterface,
    LoadSpec,
    SampledToken,
    SequenceWork,
)
from llmasos.backends.onnx_embedding import OnnxEncoder, OnnxUnavailable, weights_key
from llmasos.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ModelFormatError,
    UnsupportedError,
)
from llmasos.types import ChatMessage, SamplingParams

EMBED_BATCH_SIZE = 32
ONNX_MAX_TEXTS = 4
"""Calls of up to this many texts run on ONNX Runtime (where it is available): there it is
several times faster than torch; on batches of long chunks the two are about equal."""
RUNTIMES = ("auto", "torch")

log = logging.getLogger(__name__)


class SentenceTransformersBackend(BackendInterface):
    """A sentence-transformers embedding model behind the backend contract."""

    name = "sentence-transformers"

    def __init__(
        self,
        model: SentenceTransformer,
        device: str,
        label: str,
        onnx: OnnxEncoder | None = None,
    ) -> None:
        self._model: SentenceTransformer | None = model
        self._onnx = onnx
        self._device = device
        self._tokenizer: Any = model.tokenizer
        self._max_length = int(model.max_seq_length or self._tokenizer.model_max_length)
        self._label = label

    @classmethod
    def load(cls, spec: LoadSpec) -> SentenceTransformersBackend:
        path = Path(spec.path)
        if spec.format != "sentence-transformers":
            raise ModelFormatError(
                f"the sentence-transformers backend loads sentence-transformers directories, "
                f"not {spec.format!r}"
            )
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelFormatError(f"{path} is not a sentence-transformers model directory")
        requested = str(spec.options.get("device", "auto"))
        use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
        device = "cuda" if use_cuda else "cpu"
        if spec.threads:
            torch.set_num_threads(spec.threads)
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        try:
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise ModelFormatError(f"sentence-transformers cannot load {path}: {error}") from None
        model.eval()
        label = str(spec.options.get("name") or "this model")
        runtime = str(spec.options.get("runtime") or "auto")
        if runtime not in RUNTIMES:
            raise InvalidRequestError(f"embedding runtime {runtime!r}: one of {RUNTIMES}")
        onnx = None
        if runtime == "auto" and device == "cpu":
            try:
                onnx = OnnxEncoder.build(
                    model,
                    key=weights_key(path, str(spec.options.get("digest") or "")),
                    threads=spec.threads,
                )
            except OnnxUnavailable as reason:
                log.info("%s: short embedding calls stay on torch: %s", label, reason)
        return cls(model, device, label, onnx)

    # --- facts -------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self._max_length

    @property
    def max_sequences(self) -> int:
        return 1

    @property
    def kv_capacity_tokens(self) -> int:
        return self._max_length

    @property
    def kv_used_tokens(self) -> int:
        return 0

    @property
    def processor(self) -> str:
        return self._device

    @property
    def runtime(self) -> str:
        """What runs short calls: ``onnxruntime`` or ``torch``."""
        return "onnxruntime" if self._onnx is not None else "torch"

    @property
    def dimensions(self) -> int:
        """Length of each embedding vector."""
        model = self._loaded()
        getter = getattr(model, "get_embedding_dimension", None)
        size = getter() if getter is not None else model.get_sentence_embedding_dimension()
        return int(size) if size is not None else 0

    def memory_bytes(self) -> int:
        model = self._loaded()
        return int(sum(p.numel() * p.element_size() for p in model.parameters()))

    # --- text --------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special))

    def token_bytes(self, token: int) -> bytes:
        text: str = self._tokenizer.decode([token], skip_special_tokens=False)
        return text.encode("utf-8")

    def is_end_of_generation(self, token: int) -> bool:
        return bool(token == self._tokenizer.sep_token_id)

    def render_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        raise self._cannot_generate()

    # --- generation: not for an embedding model ----------------------------------------

    def add_sequence(
        self,
        seq_id: int,
        params: SamplingParams,
        tokens: Sequence[int],
        *,
        generated: Sequence[int] = (),
    ) -> int:
        raise self._cannot_generate()

    def execute(self, work: Sequence[SequenceWork]) -> list[SampledToken]:
        raise self._cannot_generate()

    def remove_sequence(self, seq_id: int) -> None:
        return None

    # --- embeddings --------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            raise InvalidRequestError("nothing to embed: the input is empty", param="input")
        model = self._loaded()
        counts = [len(ids) for ids in self._tokenizer(list(texts), verbose=False)["input_ids"]]
        for index, count in enumerate(counts):
            if count > self._max_length:
                raise ContextLengthExceededError(
                    f"input {index} has {count} tokens, more than the {self._max_length} "
                    f"this embedding model accepts",
                    param="input",
                )
        if self._onnx is not None and len(texts) <= ONNX_MAX_TEXTS:
            return self._onnx.encode(texts).tolist(), sum(counts)
        with torch.inference_mode():
            vectors = model.encode(
                list(texts),
                batch_size=EMBED_BATCH_SIZE,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return vectors.float().cpu().tolist(), sum(counts)

    def close(self) -> None:
        self._model = None
        self._onnx = None
        gc.collect()
        if self._device == "cuda":
            torch.cuda.empty_cache()

    def _loaded(self) -> SentenceTransformer:
        if self._model is None:
            raise UnsupportedError("this embedding model has been unloaded")
        return self._model

    def _cannot_generate(self) -> UnsupportedError:
        return UnsupportedError(f"{self._label} is an embedding model; it cannot generate text")
