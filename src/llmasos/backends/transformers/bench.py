"""Decode-throughput measurement for the transformers backend (a tool, not a test).

``python -m llmasos.backends.transformers.bench MODEL.gguf [--batch 1 8] [--tokens 64]`` loads the
model through `TransformersBackend` (GGUF de-quantized, cached), prefills one short prompt
per sequence, then times greedy decode steps and prints tokens per second for each batch
size. Every sequence in a batch decodes in the same forward step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from llmasos.backends.interface import LoadSpec, SequenceWork
from llmasos.backends.transformers.backend import TransformersBackend
from llmasos.types import SamplingParams

PROMPTS = (
    "Tell me a story about a dragon.",
    "Explain photosynthesis.",
    "Write a poem about the sea.",
    "What is machine learning?",
    "Describe the city of Paris.",
    "How do airplanes fly?",
    "List some healthy breakfast ideas.",
    "Why is the sky blue?",
)


def decode_rate(backend: TransformersBackend, batch: int, tokens: int) -> float:
    """Greedy decode ``tokens`` steps for ``batch`` sequences; return generated tokens/s."""
    params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
    work = []
    for seq_id in range(batch):
        text = f"<|im_start|>user\n{PROMPTS[seq_id % len(PROMPTS)]}<|im_end|>\n"
        prompt = backend.tokenize(text + "<|im_start|>assistant\n")
        reused = backend.add_sequence(seq_id, params, prompt)
        work.append(SequenceWork(seq_id, prompt[reused:], True))
    sampled = backend.execute(work)  # prefill, not timed
    started = time.perf_counter()
    for _ in range(tokens):
        sampled = backend.execute([SequenceWork(s.seq_id, [s.token], True) for s in sampled])
    elapsed = time.perf_counter() - started
    for seq_id in range(batch):
        backend.remove_sequence(seq_id)
    return batch * tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a .gguf file or an HF model directory")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    cache_dir = args.cache_dir or Path(tempfile.gettempdir()) / "llmasos-hf-bench"
    spec = LoadSpec(
        path=args.model,
        format="gguf" if args.model.suffix == ".gguf" else "safetensors",
        context_length=2048,
        max_sequences=max(args.batch),
        threads=args.threads,
        options={"cache_dir": str(cache_dir), "dtype": args.dtype},
    )
    backend = TransformersBackend.load(spec)
    print(
        f"loaded in {backend.load_seconds:.2f}s from {backend.load_source} "
        f"on {backend.processor} ({spec.options['dtype']})"
    )
    for batch in args.batch:
        rate = decode_rate(backend, batch, args.tokens)
        print(f"batch {batch}: {rate:.1f} tok/s")
    backend.close()


if __name__ == "__main__":
    main()
