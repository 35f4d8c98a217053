"""The llama.cpp backend: GGUF models on CPU through llama-cpp-python's low-level API.

One llama.cpp context holds every sequence: ``n_seq_max = max_sequences`` *slots* share one
unified KV cache of ``kv_capacity_tokens`` cells. Kernel sequence ids map to slots. Each
`execute` builds one ``llama_batch`` with every work item's tokens (positions continue from
each slot's length, ``seq_id`` = the slot) and asks for logits only at the last token of items
that sample; a batch larger than ``n_batch`` is decoded in several calls, sampling each item
right after the call that holds its last token.

Prefix cache: a removed sequence leaves its tokens in its slot. `add_sequence` picks the free
slot whose cached tokens share the longest prefix with the new ones, trims the rest, and
reports the reused count (never all of the tokens: the last one must be fed to get logits).
Cached tokens of free slots are dropped, least recently used first, when the KV pool needs
their cells. Sampling lives in `llamacpp_sampler` (one native chain per sequence).

Images: a model loaded with a vision projector (the ``projector`` option, an ``mmproj`` GGUF)
encodes a prompt's images through libmtmd (`vision.Projector`, off the engine loop). The
prompt's image positions hold a placeholder id; the slot keeps their embeddings, and a step
that reaches them decodes them as a batch of embeddings (``llama_batch.embd``) into the slot,
in their own decode call, since a llama.cpp batch holds either tokens or embeddings. The
placeholder id is the same for any image, so no slot's cache is reused past its first image
position.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import llama_cpp
import numpy as np

from llmasos.backends.interface import (
    BackendInterface,
    ImagePrompt,
    LoadSpec,
    SampledToken,
    SequenceWork,
    scored_tokens,
)
from llmasos.backends.llamacpp.sampler import SamplerChain, token_logprobs
from llmasos.backends.llamacpp.vision import EncodedPrompt, Projector
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

GGUF_MAGIC = b"GGUF"
DEFAULT_BATCH_TOKENS = 512
IMAGE_PLACEHOLDER = 0
"""The token id standing at each image position of a prompt (its embedding replaces it)."""


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _discard_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp's log sink when not debugging (kept at module level so it stays alive)."""


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _forward_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    logger.debug("llama.cpp: %s", text.decode("utf-8", errors="replace").rstrip())


def configure_native_logging() -> None:
    """Send llama.cpp's log lines to this module's logger at debug level, else nowhere."""
    debug = logger.isEnabledFor(logging.DEBUG)
    llama_cpp.llama_log_set(_forward_log if debug else _discard_log, ctypes.c_void_p(0))


def check_gguf_file(path: os.PathLike[str] | str) -> None:
    """Raise `ModelFormatError` unless ``path`` is a readable file that starts like a GGUF."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        raise ModelFormatError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelFormatError(f"expected a .gguf file, got a directory: {path}") from None
    except OSError as error:
        raise ModelFormatError(f"cannot read model file {path}: {error.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelFormatError(f"{path} is not a GGUF file (it does not start with 'GGUF')")


@dataclass
class _Slot:
    """One llama.cpp sequence: the tokens in its KV cells and, when live, its owner."""

    index: int
    tokens: list[int] = field(default_factory=list)
    seq_id: int | None = None
    sampler: SamplerChain | None = None
    params: SamplingParams | None = None
    last_used: int = 0
    embeddings: dict[int, np.ndarray] = field(default_factory=dict)
    """Image embeddings by position, for image positions not yet decoded."""
    image_start: int | None = None
    """The first image position among ``tokens`` (cached cells past it are never reused)."""

    def reusable(self, tokens: Sequence[int]) -> int:
        """How many leading ``tokens`` this slot's cached cells hold."""
        shared = _common_prefix(self.tokens, tokens)
        return shared if self.image_start is None else min(shared, self.image_start)


# A step entry: the slot, the position, the token, and whether its logits are wanted.
_Entry = tuple["_Slot", int, int, bool]


class LlamaCppBackend(BackendInterface):
    """`BackendInterface` over one llama.cpp model and one multi-sequence context."""

    name: ClassVar[str] = "llama.cpp"

    def __init__(self, spec: LoadSpec, model: Any, ctx: Any) -> None:
        self._spec = spec
        self._model = model
        self._ctx = ctx
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._n_batch = int(llama_cpp.llama_n_batch(ctx))
        self._n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self._n_embd = int(llama_cpp.llama_model_n_embd_inp(model))
        """The width of an input embedding (what an image position is fed)."""
        self._unified = _unified_kv(spec)
        self._batch: Any = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._slots = [_Slot(i) for i in range(int(llama_cpp.llama_n_seq_max(ctx)))]
        self._by_seq: dict[int, _Slot] = {}
        self._clock = 0
        self._piece_cache: dict[int, bytes] = {}
        train = int(llama_cpp.llama_model_n_ctx_train(model))
        limit = spec.context_length if train <= 0 else min(spec.context_length, train)
        self._context_length = min(limit, int(llama_cpp.llama_n_ctx_seq(ctx)))
        self._closed = False
        self._adapter: Any = None
        self._projector: Projector | None = None
        self._projector_error: str | None = None
        """Why a model stored with a projector cannot take images here (no libmtmd)."""
        self._embd_batch: Any = None

    # --- loading -----------------------------------------------------------------------

    @classmethod
    def load(cls, spec: LoadSpec) -> LlamaCppBackend:
        if spec.embedding:
            raise UnsupportedError("the llama.cpp backend loads generation models only")
        if spec.context_length < 1 or spec.max_sequences < 1:
            raise InvalidRequestError("context_length and max_sequences must be >= 1")
        check_gguf_file(spec.path)
        configure_native_logging()
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = int(spec.options.get("n_gpu_layers", 0))
        model = llama_cpp.llama_model_load_from_file(str(spec.path).encode(), model_params)
        if not model:
            raise ModelFormatError(
                f"llama.cpp could not load {spec.path}: the GGUF is truncated, corrupt or of an "
                "unsupported architecture"
            )
        threads = spec.threads or os.cpu_count() or 1
        n_ctx = spec.kv_capacity_tokens or spec.context_length * spec.max_sequences
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_seq_max = spec.max_sequences
        params.kv_unified = _unified_kv(spec)
        params.n_batch = max(DEFAULT_BATCH_TOKENS, int(spec.options.get("n_batch", 0)))
        params.n_ubatch = params.n_batch
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model, params)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise BackendError(
                f"llama.cpp could not create a context of {n_ctx} tokens for "
                f"{spec.max_sequences} sequences (out of memory?)"
            )
        backend = cls(spec, model, ctx)
        adapter = spec.options.get("adapter")
        if adapter:
            backend._apply_lora(Path(adapter))
        projector = spec.options.get("projector")
        if projector:
            try:
                backend._projector = Projector.load(
                    Path(projector),
                    model,
                    backend._n_embd,
                    threads,
                    IMAGE_PLACEHOLDER,
                    _forward_log if logger.isEnabledFor(logging.DEBUG) else _discard_log,
                )
            except UnsupportedError as error:  # no libmtmd: the model still serves text
                logger.warning("%s: images are refused: %s", spec.path.name, error)
                backend._projector_error = str(error)
            except BaseException:
                backend.close()
                raise
        return backend

    def _apply_lora(self, path: Path) -> None:
        """Apply a LoRA adapter GGUF (Modelfile ADAPTER) at scale 1.0 to every sequence."""
        adapter = llama_cpp.llama_adapter_lora_init(self._model, str(path).encode())
        if not adapter:
            self.close()
            raise ModelFormatError(
                f"llama.cpp could not load the LoRA adapter {path}: it is not a GGUF LoRA "
                "for this model's architecture"
            )
        self._adapter = adapter
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(1.0)
        if llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, scales) != 0:
            self.close()
            raise BackendError(f"llama.cpp could not apply the LoRA adapter {path}")

    # --- facts -------------------------------------------------------------------------

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def max_sequences(self) -> int:
        return len(self._slots)

    @property
    def kv_capacity_tokens(self) -> int:
        return self._n_ctx

    @property
    def kv_used_tokens(self) -> int:
        return sum(len(s.tokens) for s in self._slots if s.seq_id is not None)

    def memory_bytes(self) -> int:
        model = self._model
        n_layer = int(llama_cpp.llama_model_n_layer(model))
        n_head = max(1, int(llama_cpp.llama_model_n_head(model)))
        head_dim = int(llama_cpp.llama_model_n_embd(model)) // n_head
        kv_width = head_dim * int(llama_cpp.llama_model_n_head_kv(model))
        kv_bytes = self._n_ctx * n_layer * 2 * kv_width * 2  # K and V, f16
        logits_bytes = self._n_batch * self._n_vocab * 4
        return int(llama_cpp.llama_model_size(model)) + kv_bytes + logits_bytes

    # --- text --------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        for _ in range(2):
            buffer = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), buffer, capacity, add_special, True
            )
            if n >= 0:
                return list(buffer[:n])
            capacity = -n
        raise BackendError("llama.cpp failed to tokenize the text")

    def is_special(self, token: int) -> bool:
        return bool(
            llama_cpp.llama_vocab_is_control(self._vocab, token)
            or llama_cpp.llama_vocab_is_eog(self._vocab, token)
        )

    def token_bytes(self, token: int) -> bytes:
        cached = self._piece_cache.get(token)
        if cached is not None:
            return cached
        if not 0 <= token < self._n_vocab:
            raise InvalidRequestError(f"token id {token} is outside the vocabulary")
        size = 32
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, True)
            if n >= 0:
                piece = buffer.raw[:n]
                self._piece_cache[token] = piece
                return piece
            size = -n

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.token_bytes(token).decode("utf-8", errors="replace")

    def chat_template(self) -> str | None:
        """The override from the LoadSpec, else the GGUF's ``tokenizer.chat_template``."""
        if self._spec.chat_template:
            return self._spec.chat_template
        key = b"tokenizer.chat_template"
        size = 1 << 16
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self._model, key, buffer, size)
            if n < 0:
                return None
            if n < size:
                return buffer.value.decode("utf-8", errors="replace")
            size = n + 1

    def render_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        template = self.chat_template()
        if template is None:
            raise UnsupportedError(
                f"{self._spec.path.name} has no chat template; give one in its Modelfile"
            )
        if self._projector is not None:
            messages = [_with_marker(m, self._projector.marker) for m in messages]
        return render_chat_template(
            template,
            messages,
            add_generation_prompt=add_generation_prompt,
            tools=tools,
            bos_token=self._special_text(llama_cpp.llama_vocab_bos(self._vocab)),
            eos_token=self._special_text(llama_cpp.llama_vocab_eos(self._vocab)),
        )

    # --- sequences ---------------------------------------------------------------------

    def add_sequence(
        self,
        seq_id: int,
        params: SamplingParams,
        tokens: Sequence[int],
        *,
        generated: Sequence[int] = (),
    ) -> int:
        return self._add(seq_id, params, tokens, generated, None)

    # --- images ------------------------------------------------------------------------

    @property
    def accepts_images(self) -> bool:
        """True with a loaded projector, and also when the model has one that this build
        cannot load: `encode_images` then says how to build it."""
        return self._projector is not None or self._projector_error is not None

    def encode_images(self, prompt: str, images: Sequence[bytes]) -> ImagePrompt:
        projector = self._projector
        if projector is None:
            raise UnsupportedError(
                self._projector_error or "this model has no vision projector; it cannot take images"
            )
        encoded = projector.encode(prompt, images)
        return ImagePrompt(encoded.tokens, encoded, encoded.image_tokens)

    def add_image_sequence(
        self,
        seq_id: int,
        params: SamplingParams,
        tokens: Sequence[int],
        media: object,
        *,
        generated: Sequence[int] = (),
    ) -> int:
        if self._projector is None or not isinstance(media, EncodedPrompt):
            raise UnsupportedError("this model has no vision projector; it cannot take images")
        embeddings: dict[int, np.ndarray] = {}
        for image in media.images:
            for offset, row in enumerate(image.embeddings):
                embeddings[image.start + offset] = row
        if not embeddings or max(embeddings) >= len(tokens) - len(generated):
            raise InvalidRequestError("the image positions do not fit the prompt")
        return self._add(seq_id, params, tokens, generated, embeddings)

    def _add(
        self,
        seq_id: int,
        params: SamplingParams,
        tokens: Sequence[int],
        generated: Sequence[int],
        embeddings: dict[int, np.ndarray] | None,
    ) -> int:
        self._check_open()
        if seq_id in self._by_seq:
            raise InvalidRequestError(f"sequence {seq_id} is already running")
        if not tokens:
            raise InvalidRequestError("a sequence needs at least one token")
        if len(tokens) > self._context_length:
            raise ContextLengthExceededError(
                f"{len(tokens)} tokens exceed the context length of {self._context_length}"
            )
        if len(generated) > len(tokens):
            raise InvalidRequestError("generated tokens must be the tail of tokens")
        if any(not 0 <= t < self._n_vocab for t in tokens):
            raise InvalidRequestError("a token id is outside the vocabulary")
        free = [s for s in self._slots if s.seq_id is None]
        if not free:
            raise BackendError(f"all {len(self._slots)} sequence slots are in use")
        sampler = SamplerChain.build(params, self._vocab, self._n_vocab)
        try:
            sampler.replay(generated)
        except BaseException:
            sampler.free()
            raise
        tokens = list(tokens)
        limit = len(tokens) - 1 if not embeddings else min(len(tokens) - 1, min(embeddings))
        slot = max(free, key=lambda s: (s.reusable(tokens), -s.last_used))
        reused = min(slot.reusable(tokens), limit)
        self._truncate(slot, reused)
        if self._unified:
            reused = self._share_prefix(slot, tokens, reused, limit)
        if embeddings:
            slot.embeddings = {p: row for p, row in embeddings.items() if p >= reused}
            slot.image_start = min(embeddings)
        slot.seq_id, slot.sampler, slot.params = seq_id, sampler, params
        self._by_seq[seq_id] = slot
        self._touch(slot)
        return reused

    def _share_prefix(self, slot: _Slot, tokens: list[int], reused: int, limit: int) -> int:
        """Extend ``slot``'s cached prefix with cells of another slot (live or free) that
        holds a longer prefix of ``tokens``; return the new reused count.

        In a unified KV cache a cell can belong to several sequences, so
        ``llama_memory_seq_cp`` shares the cells instead of copying them: a system prompt or
        the prompt of ``n`` choices is computed once. Both slots' KV for a position depends
        only on the tokens up to it, which are the same, so the cells are interchangeable.
        """
        best, source = reused, None
        for other in self._slots:
            if other is slot or len(other.tokens) <= best:
                continue
            shared = min(other.reusable(tokens), limit)
            if shared > best:
                best, source = shared, other
        if source is None:
            return reused
        llama_cpp.llama_memory_seq_cp(self._memory, source.index, slot.index, reused, best)
        slot.tokens.extend(tokens[reused:best])
        self._touch(source)
        return best

    def remove_sequence(self, seq_id: int) -> None:
        slot = self._by_seq.pop(seq_id, None)
        if slot is None:
            return
        if slot.sampler is not None:
            slot.sampler.free()
        slot.seq_id, slot.sampler, slot.params = None, None, None
        self._touch(slot)

    def _touch(self, slot: _Slot) -> None:
        self._clock += 1
        slot.last_used = self._clock

    def _truncate(self, slot: _Slot, keep: int) -> None:
        if keep < len(slot.tokens):
            llama_cpp.llama_memory_seq_rm(self._memory, slot.index, keep, -1)
            del slot.tokens[keep:]
        if slot.image_start is not None and keep <= slot.image_start:
            slot.image_start = None
            slot.embeddings = {}

    def _make_room(self, needed: int) -> None:
        """Drop cached prefixes of free slots (oldest first) until ``needed`` cells are free."""
        used = sum(len(s.tokens) for s in self._slots)
        for slot in sorted(self._slots, key=lambda s: s.last_used):
            if used + needed <= self._n_ctx:
                return
            if slot.seq_id is None and slot.tokens:
                used -= len(slot.tokens)
                self._truncate(slot, 0)
        if used + needed > self._n_ctx:
            raise BackendError(
                f"the KV cache is full ({used} of {self._n_ctx} tokens held by live sequences)"
            )

    # --- steps -------------------------------------------------------------------------

    def execute(self, work: Sequence[SequenceWork]) -> list[SampledToken]:
        self._check_open()
        entries: list[_Entry] = []
        seen: set[int] = set()
        for item in work:
            slot = self._by_seq.get(item.seq_id)
            if slot is None:
                raise InvalidRequestError(f"sequence {item.seq_id} was not added")
            if item.seq_id in seen:
                raise InvalidRequestError(f"sequence {item.seq_id} appears twice in one step")
            seen.add(item.seq_id)
            if not item.tokens:
                raise InvalidRequestError(f"sequence {item.seq_id} has no tokens in this step")
            start = len(slot.tokens)
            if start + len(item.tokens) > self._context_length:
                raise ContextLengthExceededError(
                    f"sequence {item.seq_id} would exceed the context length of "
                    f"{self._context_length}"
                )
            last = len(item.tokens) - 1
            for i, token in enumerate(item.tokens):
                entries.append((slot, start + i, int(token), item.sample and i == last))
        self._make_room(len(entries))
        results: list[SampledToken] = []
        for chunk in self._chunks(entries):
            self._decode(chunk)
            for row, (slot, _, _, wants) in enumerate(chunk):
                if wants:
                    results.append(self._sample(slot, row))
        return results

    def _chunks(self, entries: list[_Entry]) -> list[list[_Entry]]:
        """``entries`` cut into decode calls of at most ``n_batch``; image positions go in
        calls of their own (a llama.cpp batch holds tokens or embeddings, not both)."""
        chunks: list[list[_Entry]] = []
        current: list[_Entry] = []
        current_image = False
        for entry in entries:
            image = entry[1] in entry[0].embeddings
            if current and (image != current_image or len(current) == self._n_batch):
                chunks.append(current)
                current = []
            current.append(entry)
            current_image = image
        if current:
            chunks.append(current)
        return chunks

    def _decode(self, chunk: list[_Entry]) -> None:
        slot0, position0 = chunk[0][0], chunk[0][1]
        image = position0 in slot0.embeddings
        batch = self._image_batch() if image else self._batch
        n_embd = self._n_embd
        for i, (slot, position, token, wants) in enumerate(chunk):
            if image:
                row = np.ascontiguousarray(slot.embeddings[position], dtype=np.float32)
                target = ctypes.addressof(batch.embd.contents) + i * n_embd * 4
                ctypes.memmove(target, row.ctypes.data, n_embd * 4)
            else:
                batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = slot.index
            batch.logits[i] = wants
        batch.n_tokens = len(chunk)
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            # The KV state of this chunk is undefined now: drop it from every slot it touched.
            for slot in {id(s): s for s, _, _, _ in chunk}.values():
                llama_cpp.llama_memory_seq_rm(self._memory, slot.index, len(slot.tokens), -1)
            raise BackendError(f"llama_decode failed with status {status}")
        for slot, position, token, _ in chunk:
            slot.tokens.append(token)
            if image:
                del slot.embeddings[position]
        for slot in {id(s): s for s, _, _, _ in chunk}.values():
            self._touch(slot)

    def _image_batch(self) -> Any:
        if self._embd_batch is None:
            self._embd_batch = llama_cpp.llama_batch_init(self._n_batch, self._n_embd, 1)
        return self._embd_batch

    def score(self, tokens: Sequence[int]) -> list[float]:
        """Teacher-forced log-probabilities from the model's logits, in one free slot.

        Every position asks for logits; row ``i`` of a decode call predicts token ``i + 1``.
        The slot is emptied before and after, so scoring neither reuses nor leaves a prefix.
        """
        self._check_open()
        tokens = scored_tokens(tokens, self._context_length, self._n_vocab)
        free = [s for s in self._slots if s.seq_id is None]
        if not free:
            raise BackendError(f"all {len(self._slots)} sequence slots are in use")
        slot = min(free, key=lambda s: s.last_used)
        self._truncate(slot, 0)
        self._make_room(len(tokens))
        scores: list[float] = []
        try:
            for begin in range(0, len(tokens), self._n_batch):
                chunk = [
                    (slot, begin + i, token, True)
                    for i, token in enumerate(tokens[begin : begin + self._n_batch])
                ]
                self._decode(chunk)
                for row in range(len(chunk)):
                    following = begin + row + 1
                    if following < len(tokens):
                        logits = llama_cpp.llama_get_logits_ith(self._ctx, row)
                        chosen, _ = token_logprobs(logits, self._n_vocab, tokens[following], 0)
                        scores.append(chosen)
        finally:
            self._truncate(slot, 0)
        return scores

    def score_continuations(
        self, prefix: Sequence[int], continuations: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """The prefix is decoded once in a free slot; each continuation is decoded after it,
        and the slot is cut back to the prefix before the next one."""
        self._check_open()
        prefix = [int(t) for t in prefix]
        options = [[int(t) for t in c] for c in continuations]
        if not prefix or any(not c for c in options):
            raise InvalidRequestError("scoring needs a prefix and non-empty continuations")
        longest = len(prefix) + max((len(c) for c in options), default=0)
        if longest > self._context_length:
            raise ContextLengthExceededError(
                f"{longest} tokens exceed the context length of {self._context_length}"
            )
        if any(not 0 <= t < self._n_vocab for t in prefix + [t for c in options for t in c]):
            raise InvalidRequestError("a token id is outside the vocabulary")
        free = [s for s in self._slots if s.seq_id is None]
        if not free:
            raise BackendError(f"all {len(self._slots)} sequence slots are in use")
        slot = min(free, key=lambda s: s.last_used)
        self._truncate(slot, 0)
        self._make_room(longest)
        scores: list[list[float]] = []
        try:
            piece: list[int] = []
            for begin in range(0, len(prefix), self._n_batch):
                piece = prefix[begin : begin + self._n_batch]
                last = begin + len(piece) == len(prefix)
                self._decode(
                    [
                        (slot, begin + i, token, last and i == len(piece) - 1)
                        for i, token in enumerate(piece)
                    ]
                )
            # the prefix's last row is overwritten by the next decode: read every first token now
            logits = llama_cpp.llama_get_logits_ith(self._ctx, len(piece) - 1)
            firsts = [token_logprobs(logits, self._n_vocab, c[0], 0)[0] for c in options]
            for option, first in zip(options, firsts, strict=True):
                self._truncate(slot, len(prefix))
                values = [first]
                body = option[:-1]  # the last token's following logits are not needed
                for begin in range(0, len(body), self._n_batch):
                    chunk = [
                        (slot, len(prefix) + begin + i, token, True)
                        for i, token in enumerate(body[begin : begin + self._n_batch])
                    ]
                    self._decode(chunk)
                    for row in range(len(chunk)):
                        logits = llama_cpp.llama_get_logits_ith(self._ctx, row)
                        following = option[begin + row + 1]
                        values.append(token_logprobs(logits, self._n_vocab, following, 0)[0])
                scores.append(values)
        finally:
            self._truncate(slot, 0)
        return scores

    def _sample(self, slot: _Slot, row: int) -> SampledToken:
        assert slot.sampler is not None and slot.params is not None and slot.seq_id is not None
        token = slot.sampler.sample(self._ctx, row)
        top_n = slot.params.logprobs
        if top_n is None:
            return SampledToken(slot.seq_id, token)
        logits = llama_cpp.llama_get_logits_ith(self._ctx, row)
        chosen, top = token_logprobs(logits, self._n_vocab, token, top_n)
        return SampledToken(slot.seq_id, token, chosen, top)

    # --- lifetime ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("the model was unloaded")

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for slot in self._slots:
            if slot.sampler is not None:
                slot.sampler.free()
                slot.sampler = None
        self._by_seq.clear()
        if self._projector is not None:
            self._projector.close()
            self._projector = None
        if self._embd_batch is not None:
            llama_cpp.llama_batch_free(self._embd_batch)
            self._embd_batch = None
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self._ctx)
        if self._adapter:
            llama_cpp.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        llama_cpp.llama_model_free(self._model)

    def __del__(self) -> None:
        # At interpreter shutdown the native library may already be gone.
        with contextlib.suppress(Exception):
            self.close()


def _unified_kv(spec: LoadSpec) -> bool:
    """One KV pool for all sequences, unless the pool is big enough for every sequence to
    have its own full context (or the ``kv_unified`` option says otherwise).

    Per-sequence streams are faster (each token attends only to its own stream; in a unified
    pool it attends over every cell up to the highest one in use, cached prefixes of free
    slots included: batch-8 decode at 1k-token contexts 183 vs 154 tok/s here), but a stream
    holds ``kv_capacity_tokens / max_sequences`` tokens at most, so they are chosen only when
    that loses no context.
    """
    option = spec.options.get("kv_unified")
    if option is not None:
        return bool(option)
    capacity = spec.kv_capacity_tokens or spec.context_length * spec.max_sequences
    return capacity < spec.context_length * spec.max_sequences


def _with_marker(message: ChatMessage, marker: str) -> ChatMessage:
    """``message`` with a content list holding image parts flattened to text, each image
    replaced by libmtmd's marker: any chat template renders it, and `Projector.encode` finds
    the images where the markers stand."""
    content = message.get("content")
    if not isinstance(content, list) or not any(
        isinstance(p, dict) and p.get("type") == "image" for p in content
    ):
        return message
    pieces: list[str] = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image":
            pieces.append(marker)
        elif isinstance(part, dict) and part.get("type") == "text":
            pieces.append(str(part.get("text", "")))
    return {**message, "content": "".join(pieces)}


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
