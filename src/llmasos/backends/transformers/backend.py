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
"""

from __future__ import annotations

import gc
import inspect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llmasos.backends.interface import (
    BackendInterface,
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
    UnsupportedError,
)
from llmasos.types import ChatMessage, SamplingParams

logger = logging.getLogger(__name__)


@dataclass
class _Sequence:
    seq_id: int
    slot: int
    sampler: SequenceSampler


class TransformersBackend(BackendInterface):
    """A transformers causal LM executing batched steps over slot-cached sequences."""

    name = "transformers"

    def __init__(self, spec: LoadSpec, loaded: LoadedCausalLM) -> None:
        self._spec = spec
        self._loaded = loaded
        self._model = loaded.model
        self._tokenizer = loaded.tokenizer
        self._device = loaded.device
        config = self._model.config
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
        template = self._spec.chat_template or getattr(self._tokenizer, "chat_template", None)
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

    # --- sequences and steps -----------------------------------------------------------

    def add_sequence(
        self,
        seq_id: int,
        params: SamplingParams,
        tokens: Sequence[int],
        *,
        generated: Sequence[int] = (),
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
        try:
            slot, source, reused = self._slots.claim(seq_id, tokens)
        except LookupError:
            raise BackendError(f"all {self._max_sequences} sequence slots are in use") from None
        if source is not None:
            self._cache.copy_prefix(source.index, slot.index, reused)
        self._sequences[seq_id] = _Sequence(seq_id, slot.index, sampler)
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
        rows: list[tuple[int, int, Sequence[int]]] = []
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
            rows.append((sequence.slot, start, item.tokens))
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

    def _forward(self, rows: list[tuple[int, int, Sequence[int]]]) -> torch.Tensor:
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

    def _forward_rows(self, rows: list[tuple[int, int, Sequence[int]]]) -> torch.Tensor:
        layout = build_step(rows, pad_token=self._pad_token, device=self._device)
        kwargs: dict[str, Any] = {
            "input_ids": layout.input_ids,
            "position_ids": layout.position_ids,
            "attention_mask": self._attention_mask(layout),
            self._cache_kwarg: self._cache,
            "use_cache": True,
        }
        if self._keep_last_logits:
            kwargs["logits_to_keep"] = 1
        with torch.inference_mode():
            self._cache.begin_step(layout)
            try:
                output = self._model(**kwargs)
            finally:
                self._cache.end_step()
        logits: torch.Tensor = output.logits[:, -1, :].float()
        return logits

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
