"""The ``raw-loop`` reference: a continuous-batching greedy loop straight on llama.cpp.

`RawLoop` drives llama-cpp-python's low-level API directly (one context with
``n_seq_max = concurrency`` sequences over one unified KV cache, ``llama_batch``,
``llama_decode``, ``llama_get_logits_ith``, ``llama_memory_seq_rm``) and nothing of LLMasOS's
backend or kernel, so it is an independent ceiling for the serving benchmark. It serves the
same workload the servers get, closed-loop: at most C sequences live, one per slot (the
slot is the llama.cpp sequence id). Each pass of the loop (1) starts the next requests in
the free slots and decodes their whole prompts, packed together into ``n_batch``-token
batches with logits only at each prompt's last token, whose argmax is the first output
token; then (2) decodes one token for every live sequence in ONE ``llama_decode`` and takes
each row's argmax (numpy). A sequence that has its ``max_tokens`` (or, without
``ignore_eos``, samples an end-of-generation token) is removed from the KV cache and its slot
takes the next request in the next pass.

Times are ``perf_counter`` seconds since the first ``llama_decode`` (model load, rendering
and tokenization come before it). A request's *start* is the moment its slot became free:
0 for the first C requests, else the end of the pass in which the slot's previous request
produced its last token. Every token is stamped when the ``llama_decode`` that produced it
(and the argmax) returned. So TTFT = first token - start (its prefill, plus the other prompts
packed with it), ITL = gaps between its tokens, E2E = last token - start; duration runs from
the first decode to the last token. Results are `RequestResult`s, summarized by
`llmasos.bench.metrics` like the servers' runs.

`run_raw_loop` resolves prompts the way LLMasOS does for a chat request (the manifest's
default system prompt and example messages, its chat template, else the GGUF's; tokenized
with special tokens parsed and BOS added as the model asks) and returns a `RawLoopSummary`.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import llama_cpp
import numpy as np

from llmasos.bench.metrics import SLO, BenchmarkSummary, RequestResult, summarize
from llmasos.bench.workloads import BenchRequest
from llmasos.chat_template import render_chat_template
from llmasos.errors import (
    BackendError,
    ContextLengthExceededError,
    InvalidRequestError,
    ModelFormatError,
    UnsupportedError,
)
from llmasos.models.manifest import Manifest, ResolvedModel
from llmasos.types import ChatMessage

LABEL = "raw-loop"
N_BATCH = 512
MAX_SEQUENCES = 256
"""llama.cpp's LLAMA_MAX_SEQ: the most sequences one context can hold."""

ProgressCallback = Callable[[RequestResult], None]


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp's log sink during the run (module level, so the callback stays alive)."""


def check_raw_loop_options(*, scenario: str, request_rate: float) -> None:
    """The raw loop is a closed loop on the default scenario only; else one clear error."""
    if scenario != "load":
        raise InvalidRequestError(
            f"--peer raw-loop measures the closed-loop load run only, not --scenario {scenario}"
        )
    if not math.isinf(request_rate):
        raise InvalidRequestError(
            "--peer raw-loop is a closed loop (--concurrency requests at a time); "
            f"it cannot follow --request-rate {request_rate:g} (use the default, inf)"
        )


def check_raw_loop_model(resolved: ResolvedModel) -> None:
    """The raw loop runs GGUF generation models without adapters; else one clear error."""
    manifest = resolved.manifest
    if manifest.format != "gguf" or manifest.kind != "generate":
        raise UnsupportedError(
            f"--peer raw-loop needs a GGUF generation model; {manifest.name} is a "
            f"{manifest.format} {manifest.kind} model"
        )
    if resolved.adapter_path is not None:
        raise UnsupportedError(f"--peer raw-loop does not apply {manifest.name}'s LoRA adapter")


@dataclass(frozen=True)
class RawLoopStats:
    """Where the raw loop's time went, and how it was set up."""

    concurrency: int
    threads: int
    n_ctx: int
    n_batch: int
    prompt_tokens: int
    output_tokens: int
    prefill_seconds: float
    """Time in prompt ``llama_decode`` calls and their argmaxes."""
    prefill_calls: int
    decode_seconds: float
    """Time in one-token-per-sequence steps and their argmaxes."""
    decode_steps: int
    decode_tokens: int
    """Output tokens made by decode steps (the first of each request comes from prefill)."""

    @property
    def decode_tokens_per_second(self) -> float | None:
        return self.decode_tokens / self.decode_seconds if self.decode_seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decode_tokens_per_second": self.decode_tokens_per_second}


@dataclass
class RawLoopRun:
    """What `RawLoop.run` did: per-request timings and tokens (input order), and stats."""

    results: list[RequestResult]
    outputs: list[list[int]]
    """The output tokens of each request."""
    stats: RawLoopStats
    duration_s: float


@dataclass
class RawLoopSummary(BenchmarkSummary):
    """A `BenchmarkSummary` of the raw loop, plus its `RawLoopStats`."""

    stats: RawLoopStats | None = None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["raw_loop"] = self.stats.to_dict() if self.stats else None
        return data


@dataclass
class _Live:
    """One request in a slot: its prompt, how far it is, and its timings."""

    request: int
    slot: int
    prompt: Sequence[int]
    max_tokens: int
    result: RequestResult
    output: list[int] = field(default_factory=list)
    cells: int = 0
    """Tokens of this sequence in the KV cache (the next token's position)."""
    last: int = -1
    """The last sampled token, fed by the next decode step."""
    done: bool = False


@dataclass
class _Clock:
    origin: float = 0.0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    prefill_calls: int = 0
    decode_steps: int = 0
    decode_tokens: int = 0

    def now(self) -> float:
        return time.perf_counter() - self.origin


class RawLoop:
    """One GGUF model and one multi-sequence context; use as a context manager."""

    def __init__(
        self, path: Path, *, concurrency: int, threads: int, n_ctx: int, n_batch: int = N_BATCH
    ) -> None:
        if not 1 <= concurrency <= MAX_SEQUENCES:
            raise InvalidRequestError(
                f"the raw loop runs 1 to {MAX_SEQUENCES} sequences at once, not {concurrency}"
            )
        if threads < 1 or n_batch < 1 or n_ctx < 1:
            raise InvalidRequestError("threads, n_batch and n_ctx must be >= 1")
        self.concurrency, self.threads, self.n_batch = concurrency, threads, n_batch
        llama_cpp.llama_log_set(_quiet_log, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self._model: Any = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise ModelFormatError(f"llama.cpp could not load {path}")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_seq_max = concurrency
        params.kv_unified = True
        params.n_batch = params.n_ubatch = n_batch
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        self._ctx: Any = llama_cpp.llama_init_from_model(self._model, params)
        if not self._ctx:
            llama_cpp.llama_model_free(self._model)
            self._model = None
            raise BackendError(f"llama.cpp could not create a context of {n_ctx} tokens")
        self.n_ctx = int(llama_cpp.llama_n_ctx(self._ctx))
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._batch: Any = llama_cpp.llama_batch_init(n_batch, 0, 1)

    # -- text ------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text``: special tokens parsed, BOS added if the model wants one."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buffer = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, capacity, True, True)
        if n < 0:
            capacity = -n
            buffer = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, capacity, True, True)
        if n < 0:
            raise BackendError("llama.cpp failed to tokenize a prompt")
        return list(buffer[:n])

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        buffer = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, 256, 0, True)
        return buffer.raw[: max(n, 0)].decode("utf-8", errors="replace")

    def _gguf_template(self) -> str | None:
        buffer = ctypes.create_string_buffer(1 << 16)
        n = llama_cpp.llama_model_meta_val_str(
            self._model, b"tokenizer.chat_template", buffer, 1 << 16
        )
        if n < 0:
            return None
        if n >= 1 << 16:
            buffer = ctypes.create_string_buffer(n + 1)
            llama_cpp.llama_model_meta_val_str(
                self._model, b"tokenizer.chat_template", buffer, n + 1
            )
        return buffer.value.decode("utf-8", errors="replace")

    def chat_prompt(self, manifest: Manifest, messages: Sequence[ChatMessage]) -> list[int]:
        """Prompt tokens for a chat, rendered as LLMasOS renders it for ``manifest``."""
        template = manifest.chat_template or self._gguf_template()
        if template is None:
            raise UnsupportedError(f"{manifest.name} has no chat template")
        prefix: list[ChatMessage] = []
        if manifest.system and not any(m.get("role") == "system" for m in messages):
            prefix.append({"role": "system", "content": manifest.system})
        prefix.extend(dict(m) for m in manifest.messages)
        text = render_chat_template(
            template,
            [*prefix, *messages],
            bos_token=self._piece(llama_cpp.llama_vocab_bos(self._vocab)),
            eos_token=self._piece(llama_cpp.llama_vocab_eos(self._vocab)),
        )
        return self.tokenize(text)

    # -- the loop --------------------------------------------------------------------------

    def run(
        self,
        prompts: Sequence[Sequence[int]],
        max_tokens: Sequence[int],
        *,
        ignore_eos: bool = True,
        progress: ProgressCallback | None = None,
    ) -> RawLoopRun:
        """Serve every prompt, at most ``concurrency`` at a time, in order of the list."""
        self._check_fits(prompts, max_tokens)
        pending = deque(range(len(prompts)))
        free = deque(range(self.concurrency))
        freed_at = [0.0] * self.concurrency
        live: list[_Live] = []
        finished: list[_Live | None] = [None] * len(prompts)
        clock = _Clock()
        llama_cpp.llama_memory_clear(self._memory, True)
        clock.origin = time.perf_counter()
        while pending or live:
            started: list[_Live] = []
            while pending and free:
                slot, index = free.popleft(), pending.popleft()
                result = RequestResult(ok=True, start=freed_at[slot], end=freed_at[slot])
                result.prompt_tokens = len(prompts[index])
                started.append(_Live(index, slot, prompts[index], max_tokens[index], result))
            if started:
                self._prefill(started, clock, ignore_eos)
                live.extend(started)
            running = [s for s in live if not s.done]
            if running:
                self._step(running, clock, ignore_eos)
            for seq in [s for s in live if s.done]:
                live.remove(seq)
                llama_cpp.llama_memory_seq_rm(self._memory, seq.slot, -1, -1)
                freed_at[seq.slot] = clock.now()
                free.append(seq.slot)
                finished[seq.request] = seq
                if progress is not None:
                    progress(seq.result)
        done = [s for s in finished if s is not None]
        results = [s.result for s in done]
        stats = RawLoopStats(
            concurrency=self.concurrency,
            threads=self.threads,
            n_ctx=self.n_ctx,
            n_batch=self.n_batch,
            prompt_tokens=sum(len(p) for p in prompts),
            output_tokens=sum(r.output_tokens for r in results),
            prefill_seconds=clock.prefill_seconds,
            prefill_calls=clock.prefill_calls,
            decode_seconds=clock.decode_seconds,
            decode_steps=clock.decode_steps,
            decode_tokens=clock.decode_tokens,
        )
        duration = max((r.end for r in results), default=0.0)
        return RawLoopRun(results, [s.output for s in done], stats, duration)

    def _check_fits(self, prompts: Sequence[Sequence[int]], max_tokens: Sequence[int]) -> None:
        if len(prompts) != len(max_tokens):
            raise InvalidRequestError("one max_tokens per prompt, please")
        if any(not p for p in prompts) or any(m < 1 for m in max_tokens):
            raise InvalidRequestError("every request needs prompt tokens and max_tokens >= 1")
        sizes = sorted((len(p) + m for p, m in zip(prompts, max_tokens, strict=True)), reverse=True)
        needed = sum(sizes[: self.concurrency])
        if needed > self.n_ctx:
            raise ContextLengthExceededError(
                f"{self.concurrency} concurrent requests may need {needed} KV cells, but the "
                f"cache has {self.n_ctx} (raise kv_cache_tokens or lower --concurrency)"
            )

    def _decode(self, rows: list[tuple[_Live, int, bool]]) -> None:
        """One ``llama_decode`` of (sequence, token, wants logits) rows."""
        batch = self._batch
        for i, (seq, token, wants) in enumerate(rows):
            batch.token[i] = token
            batch.pos[i] = seq.cells
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq.slot
            batch.logits[i] = wants
            seq.cells += 1
        batch.n_tokens = len(rows)
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            raise BackendError(f"llama_decode failed with status {status} (KV cache full?)")

    def _argmax(self, row: int) -> int:
        logits = llama_cpp.llama_get_logits_ith(self._ctx, row)
        return int(np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).argmax())

    def _accept(self, seq: _Live, token: int, now: float, ignore_eos: bool) -> int:
        """Take a sampled token; returns 1 if it is output, 0 for a (not ignored) EOG."""
        seq.result.end = now
        if not ignore_eos and llama_cpp.llama_vocab_is_eog(self._vocab, token):
            seq.done = True
            return 0
        seq.result.chunk_times.append(now)
        seq.result.output_tokens += 1
        seq.output.append(token)
        seq.last = token
        seq.done = seq.result.output_tokens >= seq.max_tokens
        return 1

    def _prefill(self, started: list[_Live], clock: _Clock, ignore_eos: bool) -> None:
        """Decode the new prompts, packed into n_batch-token calls; sample each first token."""
        rows = [
            (seq, token, i == len(seq.prompt) - 1)
            for seq in started
            for i, token in enumerate(seq.prompt)
        ]
        for begin in range(0, len(rows), self.n_batch):
            chunk = rows[begin : begin + self.n_batch]
            began = time.perf_counter()
            self._decode(chunk)
            firsts = [(row, seq) for row, (seq, _, wants) in enumerate(chunk) if wants]
            tokens = [self._argmax(row) for row, _ in firsts]
            now = clock.now()
            for (_, seq), token in zip(firsts, tokens, strict=True):
                self._accept(seq, token, now, ignore_eos)
            clock.prefill_seconds += time.perf_counter() - began
            clock.prefill_calls += 1

    def _step(self, running: list[_Live], clock: _Clock, ignore_eos: bool) -> None:
        """One token for every running sequence, in one ``llama_decode``."""
        began = time.perf_counter()
        self._decode([(seq, seq.last, True) for seq in running])
        tokens = [self._argmax(row) for row in range(len(running))]
        now = clock.now()
        for seq, token in zip(running, tokens, strict=True):
            clock.decode_tokens += self._accept(seq, token, now, ignore_eos)
        clock.decode_seconds += time.perf_counter() - began
        clock.decode_steps += 1

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> RawLoop:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def run_raw_loop(
    resolved: ResolvedModel,
    requests: Sequence[BenchRequest],
    *,
    concurrency: int,
    threads: int,
    kv_cache_tokens: int,
    ignore_eos: bool = True,
    slo: SLO | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[RawLoopSummary, list[RequestResult]]:
    """Serve ``requests`` with the raw loop on ``resolved``'s GGUF; summarize like a server.

    ``concurrency`` 0 means every request at once (as ``--concurrency 0`` does for servers).
    """
    check_raw_loop_model(resolved)
    manifest = resolved.manifest
    if not requests:
        raise InvalidRequestError("the raw loop needs at least one request")
    width = min(concurrency or len(requests), len(requests))
    with RawLoop(resolved.path, concurrency=width, threads=threads, n_ctx=kv_cache_tokens) as loop:
        prompts = [loop.chat_prompt(manifest, r.messages) for r in requests]
        run = loop.run(
            prompts, [r.max_tokens for r in requests], ignore_eos=ignore_eos, progress=progress
        )
    base = summarize(LABEL, run.results, run.duration_s, slo)
    fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
    fields["output_tokens_source"] = "counted"
    return RawLoopSummary(**fields, stats=run.stats), run.results
