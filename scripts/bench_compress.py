"""Quality, size and speed of store models side by side: the prune/distill trade-off table.

For each model (its current version, a GGUF), with llama.cpp: file size, token-level
perplexity on the shipped public-domain text (`llmasos.toolchain.perplexity`), and decode
tokens/s of one sequence (the best of ``--rounds``). Prints a table, writes JSON and a PNG
(perplexity against size, the marker's area the decode speed).

    LLMASOS_HOME=... .venv/bin/python scripts/bench_compress.py smollm2 smollm2-pruned6 \\
        --out docs/bench/compress
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from llmasos.backends.interface import LoadSpec
from llmasos.backends.llamacpp.backend import LlamaCppBackend
from llmasos.config import load_settings
from llmasos.models import open_model_store
from llmasos.toolchain.perplexity import perplexity, public_domain_text
from llmasos.toolchain.tune import _measure_speed


def measure(name: str, rounds: int, tokens: int, threads: int) -> dict[str, Any]:
    store = open_model_store(load_settings())
    manifest = store.manifest(name)
    resolved = store.resolve(name)
    backend = LlamaCppBackend.load(
        LoadSpec(
            path=resolved.path, format="gguf", context_length=1024, max_sequences=1, threads=threads
        )
    )
    try:
        value = perplexity(backend, public_domain_text(), window=1024).value
        decode = 0.0
        for round_number in range(rounds):
            prompt = backend.tokenize(f"Tell me a long story, part {round_number}.")
            decode = max(decode, _measure_speed(backend, [prompt], tokens)[1])
    finally:
        backend.close()
    return {
        "model": manifest.name,
        "format": manifest.quantization,
        "size_bytes": manifest.size,
        "parameters": manifest.parameter_count,
        "perplexity": round(value, 3),
        "decode_tokens_per_second": round(decode, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("compress"))
    args = parser.parse_args()
    rows = [measure(m, args.rounds, args.tokens, args.threads) for m in args.models]
    print(f"{'MODEL':<28}{'FORMAT':<8}{'SIZE MB':>9}{'PARAMS M':>10}{'PPL':>9}{'DECODE T/S':>12}")
    for r in rows:
        print(
            f"{r['model']!s:<28}{r['format']!s:<8}{int(r['size_bytes']) / 1e6:>9.1f}"
            f"{(r['parameters'] or 0) / 1e6:>10.1f}{r['perplexity']:>9}"
            f"{r['decode_tokens_per_second']:>12}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for r in rows:
        size = int(r["size_bytes"]) / 1e6
        axes.scatter(size, r["perplexity"], s=20 + 4 * float(r["decode_tokens_per_second"]))
        axes.annotate(str(r["model"]), (size, r["perplexity"]), fontsize=8)
    axes.set_xlabel("GGUF size (MB)")
    axes.set_ylabel("perplexity (shipped text)")
    axes.set_title("size, quality and decode speed (marker area)")
    figure.tight_layout()
    figure.savefig(args.out.with_suffix(".png"), dpi=100)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
