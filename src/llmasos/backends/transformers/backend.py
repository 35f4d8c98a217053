"""The transformers backend: HF causal LMs in torch, with real batched steps.

Loads an HF model directory, or a GGUF file de-quantized through transformers (cached as
safetensors, see `hf_loading`). Every resident sequence owns a slot of a `SlotKVCache`;
`execute` runs ONE forward pass over all work items - prefill chunks and single decode
tokens of sequences at different positions - as a left-padded batch with per-row position
ids and a 4-D mask that lets each row see only its own slot, causally. The model's attention
layers call the slot cache, which scatters the new keys/values into the slots and hands back
each row's history. Greedy output of a batch equals that of each sequence alone (up to the
float rounding of the batched matmuls).

If the batched forward fails for an architecture, the backend logs a warning once and runs
the rows one by one through the same slot cache. Sampling is per sequence in torch
(`hf_sampling`); freed slots keep their tokens as a prefix cache (`hf_cache.SlotTable`).
Structured output masks tokens with llguidance (`hf_structured`).

A vision-language model (loaded with its ``AutoProcessor``) also takes images: the
processor turns a rendered prompt and its images into token ids, each image expanded into
its placeholder tokens, plus pixel inputs (`encode_images`). When such a sequence is added
its images go through the vision tower and projector once; whenever a step feeds one of its
placeholder positions (in any prefill chunk, in a batch with other rows) the step runs on
input embeddings with the image features written over those positions. Steps without image
positions run on token ids exactly as for a text model. The placeholder ids are the same for
any image, so the prefix cache never shares a slot past its first image position.
"""

from __future__ import annotations

import gc
import inspect
import io
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llmasos.backends.interface import (
    BackendInterface,
    ImagePrompt,
    LoadSpec,
    SampledToken,
    SequenceWork,
    scored_tokens,
)
from llmasos.backends.transformers.cache import SlotKVCache, SlotTable, StepLayout, build_step
from llmasos.backends.transformers.loading import LoadedCausalLM, load_causal_lm
from llmasos.backends.transformers.sampling import SequenceSampler
from llmasos.backends.transformers.structured import ConstraintCompiler, TokenConstraint
from llmasos.backends.transformers.tokens import end_of_generation_ids, token_byte_table
from llmasos.chat_template import render_chat_template
from llmasos.errors import (
    BackendError,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelFormatError,
    UnsupportedError,
)
from llmasos.types import ChatMessage, SamplingParams

logger = logging.getLogger(__name__)


@dataclass
class _ImageFeed:
    """A sequence's image features, waiting for the prefill to reach their positions."""

    positions: torch.Tensor
    """``[n]`` prompt positions of the image placeholder tokens, ascending."""
    features: torch.Tensor
    """``[n, hidden]`` what the model's input embedding is at those positions."""


@dataclass
class _Sequence:
    seq_id: int
    slot: int
    sampler: SequenceSampler
    images: _ImageFeed | None = None


@dataclass
class _Row:
    """One row of a forward step: new tokens for a slot from ``start``, and image features
    for some of those tokens (``image_columns`` index ``tokens``)."""

    slot: int
    start: int
    tokens: Sequence[int]
    image_columns: torch.Tensor | None = None
    image_features: torch.Tensor | None = None


class TransformersBackend(BackendInterface):
    """A transformers causal LM executing batched steps over slot-cached sequences."""

    name = "transformers"

    def __init__(self, spec: LoadSpec, loaded: LoadedCausalLM) -> None:
        self._spec = spec
        self._loaded = loaded
        self._model = loaded.model
        self._tokenizer = loaded.tokenizer
        self._device = loaded.device
        self._processor = loaded.processor
        self._processor_lock = threading.Lock()
        config = self._model.config.get_text_config()
        limit = getattr(config, "max_position_embeddings", None) or spec.context_length
        self._context_length = min(spec.context_length, int(limit))
        self._max_sequences = spec.max_sequences
        self._kv_capacity = spec.kv_capacity_tokens or self._context_length * spec.max_sequences
        self._vocab_size = int(self._model.get_output_embeddings().weight.shape[0])
        self._token_bytes = token_byte_table(self._tokenizer)
        self._eog = end_of_generation_ids(self._tokenizer, self._model.generation_config)
        self._special_ids = frozenset(int(t) for t in self._tokenizer.all_special_ids)
        pad = self._tokenizer.pad_token_id
        self._pad_token = int(pad) if pad is not None else 0
        self._slots = SlotTable(spec.max_sequences)
        self._cache = SlotKVCache(
            slots=spec.max_sequences,
            max_length=self._context_length,
            device=self._device,
            dtype=loaded.dtype,
        )
        self._sequences: dict[int, _Sequence] = {}
        self._batched = True
        parameters = inspect.signature(self._model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in parameters else "past_key_values"
        self._keep_last_logits = "logits_to_keep" in parameters
        self._mask_windows = self._mask_layout(config)
        eos = self._tokenizer.eos_token_id
        eos_token = int(eos) if eos is not None else min(self._eog, default=0)
        self._constraints = ConstraintCompiler(self._tokenizer, self._vocab_size, eos_token)
        self._image_token = self._image_token_id()

    def _image_token_id(self) -> int | None:
        if self._processor is None:
            return None
        for owner, name in (
            (self._processor, "image_token_id"),
            (self._model.config, "image_token_id"),
            (self._model.config, "image_token_index"),
        ):
            value = getattr(owner, name, None)
            if isinstance(value, int):
                return value
        raise ModelFormatError(
            f"{type(self._model).__name__} names no image token (image_token_id); "
            "it cannot be served with images"
        )

    @classmethod
    def load(cls, spec: LoadSpec) -> TransformersBackend:
        if spec.embedding:
            raise UnsupportedError(
                "the transformers backend generates text; use sentence-transformers for embeddings"
            )
        if spec.options.get("adapter"):
            raise UnsupportedError(
                "LoRA adapters (Modelfile ADAPTER) are applied by the llama.cpp backend; "
                "serve this model with --backend llama.cpp"
            )
        torch.set_num_threads(spec.threads or os.cpu_count() or 1)
        return cls(spec, load_causal_lm(spec))

    # --- facts -------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def max_sequences(self) -> int:
        return self._max_sequences

    @property
    def kv_capacity_tokens(self) -> int:
        return self._kv_capacity

    @property
    def kv_used_tokens(self) -> int:
        return self._slots.live_tokens()

    @property
    def processor(self) -> str:
        return "cuda" if self._device.type == "cuda" else "cpu"

    @property
    def load_seconds(self) -> float:
        """Wall time the load took (GGUF de-quantization, or reading the safetensors cache)."""
        return self._loaded.seconds

    @property
    def load_source(self) -> str:
        """``safetensors``, ``gguf`` (de-quantized on this load) or ``gguf-cache``."""
        return self._loaded.source

    def memory_bytes(self) -> int:
        weights = sum(p.numel() * p.element_size() for p in self._model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in self._model.buffers())
        return int(weights + buffers + self._cache.nbytes())

    # --- text --------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special))

    def token_bytes(self, token: int) -> bytes:
        if 0 <= token < len(self._token_bytes):
            return self._token_bytes[token]
        return b""

    def is_end_of_generation(self, token: int) -> bool:
        return token in self._eog

    def is_special(self, token: int) -> bool:
        return token in self._eog or token in self._special_ids

    def render_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        template = (
            self._spec.chat_template
            or getattr(self._processor, "chat_template", None)
            or getattr(self._tokenizer, "chat_template", None)
        )
        if self._processor is not None:
            messages = [with_content_parts(m) for m in messages]
        if not isinstance(template, str) or not template:
            raise UnsupportedError(
                "this model has no chat template; give one in its Modelfile (TEMPLATE)"
            )
        return render_chat_template(
            template,
            messages,
            add_generation_prompt=add_generation_prompt,
            tools=tools,
            bos_token=self._tokenizer.bos_token or "",
            eos_token=self._tokenizer.eos_token or "",
        )

    # --- images ------------------------------------------------------------------------

    @property
    def accepts_images(self) -> bool:
        return self._processor is not None

    def encode_images(self, prompt: str, images: Sequence[bytes]) -> ImagePrompt:
        if self._processor is None or self._image_token is None:
            raise UnsupportedError("this model is text-only; it cannot take images")
        if hasattr(getattr(self._model, "model", None), "get_rope_index"):
            raise UnsupportedError(
                f"{type(self._model).__name__} places image tokens with multimodal rotary "
                "positions (M-RoPE), which this backend's batched steps do not compute"
            )
        placeholder = getattr(self._processor, "image_token", None)
        if isinstance(placeholder, str) and prompt.count(placeholder) != len(images):
            raise InvalidRequestError(
                f"the prompt has {prompt.count(placeholder)} image placeholders "
                f"({placeholder}) for {len(images)} images"
            )
        pictures = [open_rgb(data, index) for index, data in enumerate(images)]
        try:
            with self._processor_lock:
                inputs = self._processor(text=[prompt], images=[pictures], return_tensors="pt")
        except (ValueError, TypeError, IndexError) as error:
            raise InvalidRequestError(f"the images do not fit the prompt: {error}") from None
        ids = inputs.pop("input_ids")[0]
        inputs.pop("attention_mask", None)
        count = int((ids == self._image_token).sum())
        if count == 0:
            raise InvalidRequestError("the prompt has no image placeholder for its images")
        return ImagePrompt([int(t) for t in ids.tolist()], dict(inputs), count)

    def add_image_sequence(
        self,
        seq_id: int,
        params: SamplingParams,
        tokens: Sequence[int],
        media: object,
        *,
        generated: Sequence[int] = (),
    ) -> int:
        if self._image_token is None or not isinstance(media, dict):
            raise UnsupportedError("this model is text-only; it cannot take images")
        # only the prompt holds images: a generated token may be the placeholder id too
        prompt = list(tokens[: len(tokens) - len(generated)])
        ids = torch.tensor(prompt, dtype=torch.long)
        positions = torch.nonzero(ids == self._image_token).flatten()
        if positions.numel() == 0:
            raise InvalidRequestError("the prompt has no image placeholder for its images")
        features = self._image_features(media)
        if features.shape[0] != positions.numel():
            raise BackendError(
                f"the vision tower gave {features.shape[0]} image features for "
                f"{positions.numel()} image tokens"
            )
        feed = _ImageFeed(positions.to(self._device), features)
        return self._add(seq_id, params, tokens, generated, feed)

    def _image_features(self, media: dict[str, Any]) -> torch.Tensor:
        """``[tokens, hidden]`` features of the images, in placeholder order."""
        inputs: dict[str, Any] = {}
        for key, value in media.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self._device)
                if value.is_floating_point():
                    value = value.to(self._loaded.dtype)
            inputs[key] = value
        with torch.inference_mode():
            output = self._model.get_image_features(**inputs, return_dict=True)
        features = getattr(output, "pooler_output", None)
        if features is None:
            features = output if isinstance(output, torch.Tensor) else output[0]
        if isinstance(features, (list, tuple)):
            features = torch.cat([f.reshape(-1, f.shape[-1]) for f in features])
        hidden = int(self._model.get_input_embeddings().weight.shape[1])
        return features.reshape(-1, hidden)

    # --- sequences and steps -----------------------------------------------------------

    def add_sequence(
        self,
        seq_id: int,
        params: SamplingParams,
        tokens: Sequence[int],
        *,
        generated: Sequence[int] = (),
    ) -> int:
        return self._add(seq_id, params, tokens, generated, None)

    def _add(
        self,
        seq_id: int,
        params: SamplingParams,
        tokens: Sequence[int],
        generated: Sequence[int],
        images: _ImageFeed | None,
    ) -> int:
        if seq_id in self._sequences:
            raise BackendError(f"sequence {seq_id} is already resident")
        if not tokens:
            raise InvalidRequestError("a sequence needs at least one token")
        if len(tokens) > self._context_length:
            raise ContextLengthExceededError(
                f"{len(tokens)} tokens do not fit the context window of "
                f"{self._context_length} tokens"
            )
        bad = [t for t in tokens if not 0 <= t < self._vocab_size]
        if bad:
            raise InvalidRequestError(f"token id {bad[0]} is outside the vocabulary")
        constraint: TokenConstraint | None = None
        if params.structured is not None:
            constraint = self._constraints.compile(params.structured)
        sampler = SequenceSampler(
            params,
            vocab_size=self._vocab_size,
            device=self._device,
            generated=generated,
            constraint=constraint,
        )
        shareable = int(images.positions[0]) if images is not None else None
        try:
            slot, source, reused = self._slots.claim(seq_id, tokens, shareable=shareable)
        except LookupError:
            raise BackendError(f"all {self._max_sequences} sequence slots are in use") from None
        if source is not None:
            self._cache.copy_prefix(source.index, slot.index, reused)
        self._sequences[seq_id] = _Sequence(seq_id, slot.index, sampler, images)
        return reused

    def remove_sequence(self, seq_id: int) -> None:
        sequence = self._sequences.pop(seq_id, None)
        if sequence is not None:
            slot = self._slots.slots[sequence.slot]
            slot.seq_id = None
            slot.last_used = self._slots.tick()

    def drop_prefix_cache(self) -> None:
        """Forget the tokens cached in free slots (the next sequences start cold)."""
        for slot in self._slots.free_slots():
            slot.tokens = []

    def execute(self, work: Sequence[SequenceWork]) -> list[SampledToken]:
        if not work:
            return []
        rows: list[_Row] = []
        seen: set[int] = set()
        added = 0
        for item in work:
            sequence = self._sequences.get(item.seq_id)
            if sequence is None:
                raise BackendError(f"sequence {item.seq_id} is not resident")
            if item.seq_id in seen:
                raise BackendError(f"sequence {item.seq_id} appears twice in one step")
            if not item.tokens:
                raise BackendError(f"sequence {item.seq_id} was given no tokens to feed")
            seen.add(item.seq_id)
            start = len(self._slots.slots[sequence.slot].tokens)
            if start + len(item.tokens) > self._context_length:
                raise ContextLengthExceededError(
                    f"sequence {item.seq_id} would exceed the context window of "
                    f"{self._context_length} tokens"
                )
            added += len(item.tokens)
            rows.append(self._row(sequence, start, item.tokens))
        if self.kv_used_tokens + added > self._kv_capacity:
            raise BackendError(f"the KV pool of {self._kv_capacity} tokens is full")
        logits = self._forward(rows)
        results: list[SampledToken] = []
        for row, item in enumerate(work):
            sequence = self._sequences[item.seq_id]
            slot = self._slots.slots[sequence.slot]
            slot.tokens.extend(int(t) for t in item.tokens)
            if not item.sample:
                continue
            token, logprob, top = sequence.sampler.sample(logits[row], slot.tokens)
            results.append(SampledToken(item.seq_id, token, logprob, top))
        return results

    # --- the forward pass ----------------------------------------------------------------

    @staticmethod
    def _row(sequence: _Sequence, start: int, tokens: Sequence[int]) -> _Row:
        feed = sequence.images
        if feed is None:
            return _Row(sequence.slot, start, tokens)
        end = start + len(tokens)
        inside = (feed.positions >= start) & (feed.positions < end)
        if int(feed.positions[-1]) < end:
            sequence.images = None  # the prefill passes its last image position now
        if not bool(inside.any()):
            return _Row(sequence.slot, start, tokens)
        return _Row(
            sequence.slot, start, tokens, feed.positions[inside] - start, feed.features[inside]
        )

    def _forward(self, rows: list[_Row]) -> torch.Tensor:
        """Logits (float32, ``[rows, vocab]``) after each row's last new token."""
        if self._batched or len(rows) == 1:
            try:
                return self._forward_rows(rows)
            except (RuntimeError, TypeError, AttributeError, ValueError) as error:
                if len(rows) == 1 or not self._batched:
                    raise BackendError(f"the forward pass failed: {error}") from None
                logger.warning(
                    "batched forward failed for %s (%s); running sequences one by one",
                    type(self._model).__name__,
                    error,
                )
                self._batched = False
        return torch.cat([self._forward_rows([row]) for row in rows])

    def _forward_rows(self, rows: list[_Row]) -> torch.Tensor:
        layout = build_step(
            [(r.slot, r.start, r.tokens) for r in rows],
            pad_token=self._pad_token,
            device=self._device,
        )
        kwargs: dict[str, Any] = {
            "position_ids": layout.position_ids,
            "attention_mask": self._attention_mask(layout),
            self._cache_kwarg: self._cache,
            "use_cache": True,
        }
        if self._keep_last_logits:
            kwargs["logits_to_keep"] = 1
        with torch.inference_mode():
            if any(r.image_columns is not None for r in rows):
                kwargs["inputs_embeds"] = self._embeddings(layout, rows)
            else:
                kwargs["input_ids"] = layout.input_ids
            self._cache.begin_step(layout)
            try:
                output = self._model(**kwargs)
            finally:
                self._cache.end_step()
        logits: torch.Tensor = output.logits[:, -1, :].float()
        return logits

    def _embeddings(self, layout: StepLayout, rows: list[_Row]) -> torch.Tensor:
        """The step's input embeddings, image features written over image positions."""
        embeddings: torch.Tensor = self._model.get_input_embeddings()(layout.input_ids)
        width = layout.input_ids.shape[1]
        for index, row in enumerate(rows):
            if row.image_columns is not None and row.image_features is not None:
                columns = row.image_columns + (width - len(row.tokens))
                embeddings[index, columns] = row.image_features.to(embeddings.dtype)
        return embeddings

    @staticmethod
    def _mask_layout(config: Any) -> dict[str, int | None] | None:
        """Mask kinds the model needs: None for plain causal, else per attention type."""
        layer_types = getattr(config, "layer_types", None)
        window = getattr(config, "sliding_window", None)
        if layer_types and "sliding_attention" in layer_types and window:
            return {"full_attention": None, "sliding_attention": int(window)}
        if window and getattr(config, "use_sliding_window", True) and not layer_types:
            return {"": int(window)}
        return None

    def _attention_mask(self, layout: StepLayout) -> torch.Tensor | dict[str, torch.Tensor]:
        windows = self._mask_windows
        if windows is None:
            return layout.attention_mask()
        if "" in windows:
            return layout.attention_mask(windows[""])
        return {kind: layout.attention_mask(window) for kind, window in windows.items()}

    # --- scoring -----------------------------------------------------------------------

    def score(self, tokens: Sequence[int]) -> list[float]:
        """Teacher-forced log-probabilities of ``tokens[1:]``: one plain forward pass of the
        whole sequence (no slot, no KV cache: nothing resident is touched)."""
        tokens = scored_tokens(tokens, self._context_length, self._vocab_size)
        with torch.inference_mode():
            ids = torch.tensor([tokens], device=self._device)
            logits = self._model(input_ids=ids, use_cache=False).logits[0, :-1].float()
            chosen = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
        return [float(v) for v in chosen.tolist()]

    def close(self) -> None:
        self._sequences.clear()
        self._cache = SlotKVCache(slots=0, max_length=0, device=self._device, dtype=torch.float32)
        self._model = None
        self._loaded.model = None
        gc.collect()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()


def with_content_parts(message: ChatMessage) -> ChatMessage:
    """``message`` with its content as a list of parts (``{"type": "text", ...}``,
    ``{"type": "image"}``), the shape vision-language chat templates index into."""
    content = message.get("content")
    if isinstance(content, list):
        return message
    text = "" if content is None else str(content)
    return {**message, "content": [{"type": "text", "text": text}]}


def open_rgb(data: bytes, index: int) -> Any:
    """Image file bytes as an RGB Pillow image; `InvalidRequestError` if they are not one."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except Exception as error:  # Pillow raises many types for a broken file
        raise InvalidRequestError(f"image {index + 1} cannot be read: {error}") from None
