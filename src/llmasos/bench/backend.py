"""Backend benchmark: decode speed through `BackendInterface`, next to raw llama-cpp-python.

`benchmark_backend` loads a model with one of our backends and measures, for one stream and
optionally for a batch of B streams decoded together, the prompt (prefill) and decode token
rates as the kernel would drive them: one `execute` per step. For GGUF models it measures the
high-level ``llama_cpp.Llama`` on the same file with the same threads and greedy decoding, so
the difference is our overhead. Every sequence decodes exactly ``tokens`` tokens; a sequence
that reaches end of generation starts over from its prompt (a prefix-cache hit), so a grammar
run measures steady constrained decoding. Progress goes to a caller-supplied callback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmasos.backends.interface import BackendInterface, LoadSpec, SequenceWork
from llmasos.errors import InvalidRequestError
from llmasos.types import SamplingParams, StructuredOutput

BENCH_PROMPT = (
    "<|im_start|>user\n{tag}Write a long, detailed story about a robot who learns to paint, "
    "with many characters and places.<|im_end|>\n<|im_start|>assistant\n"
)
JSON_PROMPT = (
    "<|im_start|>user\n{tag}Give a JSON object describing a person: name, age, city, "
    "hobbies.<|im_end|>\n<|im_start|>assistant\n"
)

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``."""


@dataclass
class BenchRow:
    """One measured configuration."""

    engine: str
    batch: int
    prompt_tokens: int
    decode_tokens: int
    prefill_seconds: float
    decode_seconds: float

    @property
    def prefill_tokens_per_second(self) -> float:
        return self.prompt_tokens * self.batch / self.prefill_seconds if self.prefill_seconds else 0

    @property
    def decode_tokens_per_second(self) -> float:
        return self.decode_tokens / self.decode_seconds if self.decode_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "prefill_tokens_per_second": round(self.prefill_tokens_per_second, 2),
            "decode_tokens_per_second": round(self.decode_tokens_per_second, 2),
        }


@dataclass
class BenchReport:
    model: str
    backend: str
    threads: int
    tokens: int
    structured: str
    rows: list[BenchRow] = field(default_factory=list)

    def overhead_percent(self) -> float | None:
        """How much slower our single stream decodes than raw llama-cpp-python (<0: faster)."""
        ours = next((r for r in self.rows if r.batch == 1 and r.engine.startswith("llmasos")), None)
        raw = next((r for r in self.rows if r.engine.startswith("llama-cpp-python")), None)
        if ours is None or raw is None or not ours.decode_tokens_per_second:
            return None
        return (raw.decode_tokens_per_second / ours.decode_tokens_per_second - 1.0) * 100.0

    def to_dict(self) -> dict[str, Any]:
        overhead = self.overhead_percent()
        return {
            "model": self.model,
            "backend": self.backend,
            "threads": self.threads,
            "tokens": self.tokens,
            "structured": self.structured,
            "cpu_count": os.cpu_count(),
            "results": [r.to_dict() for r in self.rows],
            "overhead_percent": None if overhead is None else round(overhead, 2),
        }


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


def measure_interface(
    backend: BackendInterface,
    prompts: list[list[int]],
    *,
    tokens: int,
    params: SamplingParams,
    progress: Progress = _no_progress,
) -> BenchRow:
    """Prefill one sequence per prompt in one step, then decode ``tokens`` steps."""
    batch = len(prompts)
    phase = f"{backend.name} batch={batch}"
    feeds: dict[int, list[int]] = {}
    start = time.perf_counter()
    for seq_id in range(batch):
        reused = backend.add_sequence(seq_id, params, prompts[seq_id])
        feeds[seq_id] = prompts[seq_id][reused:]
    results = backend.execute([SequenceWork(s, f, True) for s, f in feeds.items()])
    prefill_seconds = time.perf_counter() - start
    decoded = 0
    start = time.perf_counter()
    for step in range(tokens):
        for result in results:
            if backend.is_end_of_generation(result.token):
                backend.remove_sequence(result.seq_id)
                prompt = prompts[result.seq_id]
                reused = backend.add_sequence(result.seq_id, params, prompt)
                feeds[result.seq_id] = prompt[reused:]
            else:
                feeds[result.seq_id] = [result.token]
        results = backend.execute([SequenceWork(s, f, True) for s, f in feeds.items()])
        decoded += len(results)
        progress(phase, step + 1, tokens)
    decode_seconds = time.perf_counter() - start
    for seq_id in range(batch):
        backend.remove_sequence(seq_id)
    return BenchRow(
        f"llmasos {backend.name}",
        batch,
        len(prompts[0]),
        decoded,
        prefill_seconds,
        decode_seconds,
    )


def measure_raw_llama(
    path: Path, prompt_text: str, *, tokens: int, threads: int, progress: Progress = _no_progress
) -> BenchRow:
    """Greedy decode with the high-level ``llama_cpp.Llama`` (one sequence)."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path),
        n_ctx=1024 + tokens,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    try:
        text = prompt_text.format(tag="")
        prompt = llm.tokenize(text.encode(), add_bos=True, special=True)
        start = time.perf_counter()
        generator = llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, reset=True)
        next(generator)  # prompt processed, first token sampled
        prefill_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for step in range(tokens):
            next(generator)
            progress("llama-cpp-python", step + 1, tokens)
        decode_seconds = time.perf_counter() - start
        generator.close()
    finally:
        llm.close()
    return BenchRow(
        "llama-cpp-python Llama", 1, len(prompt), tokens, prefill_seconds, decode_seconds
    )


def benchmark_backend(
    backend_class: type[BackendInterface],
    path: Path,
    model_format: str,
    *,
    tokens: int = 128,
    batch: int = 1,
    threads: int = 0,
    structured: str = "none",
    compare_raw: bool = True,
    progress: Progress = _no_progress,
) -> BenchReport:
    """Measure single-stream (and batch ``batch``) decoding; add raw llama.cpp for GGUF."""
    if tokens < 1 or batch < 1:
        raise InvalidRequestError("--tokens and --batch must be >= 1")
    if structured not in ("none", "json"):
        raise InvalidRequestError("--structured must be 'none' or 'json'")
    threads = threads or os.cpu_count() or 1
    prompt_text = JSON_PROMPT if structured == "json" else BENCH_PROMPT
    params = SamplingParams(
        temperature=0.0,
        structured=StructuredOutput(kind="json_object") if structured == "json" else None,
    )
    spec = LoadSpec(
        path=path,
        format=model_format,
        context_length=256 + tokens,
        max_sequences=batch,
        threads=threads,
    )
    report = BenchReport(str(path), backend_class.name, threads, tokens, structured)
    backend = backend_class.load(spec)
    try:
        # Distinct prompts per run and sequence, so no run starts from another's prefix cache.
        runs = [1, batch] if batch > 1 else [1]
        for run_batch in runs:
            prompts = [
                backend.tokenize(prompt_text.format(tag="" if run_batch == 1 else f"({i}) "))
                for i in range(run_batch)
            ]
            row = measure_interface(
                backend, prompts, tokens=tokens, params=params, progress=progress
            )
            report.rows.append(row)
    finally:
        backend.close()
    if compare_raw and model_format == "gguf" and structured == "none":
        report.rows.append(
            measure_raw_llama(path, prompt_text, tokens=tokens, threads=threads, progress=progress)
        )
    return report
