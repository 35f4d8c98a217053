"""Registering a transformed model (fine-tuned, pruned, distilled) in the model store.

`register_result` writes the torch model as an HF directory (bf16 safetensors with its
tokenizer) and, when it came from a GGUF, as an F16 GGUF like that source
(`gguf_export.export_gguf`), compares the greedy answers of the two backends on a few
prompts (llama.cpp on the GGUF, transformers on the weights in memory), and stores both in
one store change (`ModelStoreInterface.add_derived`) as versions of the new name, the GGUF
current: all of it or nothing. `greedy_text` is the llama.cpp side of that check, and what
``llmasos tune`` asks its France question with.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmasos.backends.interface import BackendInterface, SequenceWork
from llmasos.models import ModelStoreInterface
from llmasos.models.manifest import Manifest
from llmasos.types import SamplingParams

logger = logging.getLogger(__name__)

CHECK_TOKENS = 16


@dataclass
class Registered:
    digests: list[str] = field(default_factory=list)
    """The versions stored, the current one last."""
    agreement: str = ""
    """``k/n``: prompts whose greedy answers were the same on both backends."""
    answers: list[tuple[str, str]] = field(default_factory=list)
    """(transformers, llama.cpp) greedy answers of the check prompts."""


def greedy_text(backend: BackendInterface, prompt: list[int], max_tokens: int) -> str:
    """The greedy continuation of ``prompt`` (token ids) in ``backend``, as text."""
    backend.add_sequence(0, SamplingParams(temperature=0.0), prompt)
    pieces: list[bytes] = []
    try:
        (sampled,) = backend.execute([SequenceWork(0, prompt, True)])
        for _ in range(max_tokens):
            if backend.is_end_of_generation(sampled.token):
                break
            pieces.append(backend.token_bytes(sampled.token))
            (sampled,) = backend.execute([SequenceWork(0, [sampled.token], True)])
    finally:
        backend.remove_sequence(0)
    return b"".join(pieces).decode("utf-8", errors="replace").strip()


def check_prompt_texts(manifest: Manifest, rows: Sequence[dict[str, Any]]) -> list[str]:
    from llmasos.toolchain.training import render

    prompts = []
    for row in rows:
        if "messages" in row:
            prompts.append(render(manifest, row["messages"][:-1], prompt=True))
        else:
            prompts.append(" ".join(str(row["text"]).split()[:24]))
    return prompts


def compare_backends(
    model: Any, tokenizer: Any, gguf: Path, prompts: Sequence[str]
) -> tuple[str, list[tuple[str, str]]]:
    """``k/n`` and the answer pairs: transformers (``model``) against llama.cpp (``gguf``)."""
    from llmasos.backends.interface import LoadSpec
    from llmasos.backends.llamacpp.backend import LlamaCppBackend
    from llmasos.toolchain.training import greedy_texts

    if not prompts:
        return "0/0", []
    torch_answers = [a.strip() for a in greedy_texts(model, tokenizer, prompts, CHECK_TOKENS)]
    # one thread: a few short answers, and llama.cpp's spinning thread pool only slows
    # down on a machine that is busy serving (the job runs at low priority)
    backend = LlamaCppBackend.load(
        LoadSpec(path=gguf, format="gguf", context_length=1024, max_sequences=1, threads=1)
    )
    try:
        llama_answers = [
            greedy_text(backend, backend.tokenize(p, add_special=False), CHECK_TOKENS)
            for p in prompts
        ]
    finally:
        backend.close()
    pairs = list(zip(torch_answers, llama_answers, strict=True))
    same = sum(a == b for a, b in pairs)
    return f"{same}/{len(pairs)}", pairs


def register_result(
    store: ModelStoreInterface,
    model: Any,
    tokenizer: Any,
    *,
    base_manifest: Manifest,
    gguf_template: Path | None,
    name: str,
    source: str,
    work_dir: Path,
    check_prompts: Sequence[dict[str, Any]] = (),
) -> Registered:
    """Write ``model`` (HF dir, and GGUF for a GGUF source) and store it as ``name``."""
    import torch

    from llmasos.toolchain.gguf_export import export_gguf

    staging = work_dir / "export"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    result = Registered()
    try:
        paths: list[Path] = []
        gguf = staging / "model.gguf"
        if gguf_template is not None:
            export_gguf(model.state_dict(), model.config, gguf_template, gguf, name=name)
            prompts = check_prompt_texts(base_manifest, check_prompts)
            result.agreement, result.answers = compare_backends(model, tokenizer, gguf, prompts)
            if result.agreement.split("/")[0] != result.agreement.split("/")[1]:
                logger.warning("llama.cpp and transformers answer differently: %s", result.answers)
        hf_dir = staging / "hf"
        model.to(torch.bfloat16).save_pretrained(hf_dir)
        tokenizer.save_pretrained(hf_dir)
        paths.append(hf_dir)
        if gguf_template is not None:
            paths.append(gguf)
        like = f"{base_manifest.name}@{base_manifest.digest.removeprefix('sha256:')}"
        current = store.add_derived(name, paths, like=like, source=source)
        versions = store.versions(name)
        result.digests = [v.digest for v in reversed(versions[: len(paths)])]
        assert result.digests[-1] == current.digest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result
