"""What fine-tuning, pruning and distillation share: a store model in torch, examples, metrics.

- `load_trainable` loads a store model into torch through the transformers backend's loader.
  A GGUF in a quantized format is refused unless the caller consents to de-quantizing it
  (``dequantize=True``): training then starts from the de-quantized weights, and the result
  cannot be better than that source (a warning says so).
- `hf_directory` gives a store model as a Hugging Face directory (config, safetensors,
  tokenizer) for programs that read only that, such as vLLM (``bench serve --peer vllm``):
  the model's own directory, or the float32 de-quantization of its GGUF that
  `load_trainable` caches (made here if it is not cached yet).
- `build_examples` turns a prepared dataset's rows into token ids and labels the way the
  model is served: chat and classification rows rendered with the model's chat template
  (its default system prompt included), only the last assistant turn trained on; completion
  rows trained on every token.
- `mean_loss` (validation loss and perplexity), `classification_accuracy` (greedy answers
  compared with the labels) and `greedy_texts` measure a model.
- `lower_priority` makes a job a background citizen: niceness 10 and a bounded number of
  torch threads, so serving on the same machine is not starved.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmasos.errors import InvalidRequestError, ModelFormatError
from llmasos.models import ModelStoreInterface
from llmasos.models.manifest import Manifest, ResolvedModel

logger = logging.getLogger(__name__)

FLOAT_GGUF = ("F32", "F16", "BF16")
IGNORE = -100


def background_niceness() -> None:
    """Niceness 10 at least: a toolchain job does not starve serving on the same machine."""
    try:
        current = os.nice(0)
        if current < 10:
            os.nice(10 - current)
    except OSError:
        pass


def lower_priority(threads: int = 0) -> int:
    """Run this process at niceness >= 10 with ``threads`` torch threads (0: half the CPUs)."""
    import torch

    background_niceness()
    count = threads or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(count)
    return count


@dataclass
class TrainableModel:
    manifest: Manifest
    resolved: ResolvedModel
    model: Any
    tokenizer: Any
    dequantized: bool
    """True when the weights were de-quantized from a quantized GGUF."""

    @property
    def gguf_template(self) -> Path | None:
        return self.resolved.path if self.manifest.format == "gguf" else None


def check_trainable(manifest: Manifest, dequantize: bool) -> bool:
    """Whether ``manifest`` must be de-quantized; `InvalidRequestError` if not consented."""
    if manifest.kind != "generate":
        raise ModelFormatError(
            f"{manifest.name} is an embedding model; only generation models train"
        )
    if manifest.format not in ("gguf", "safetensors"):
        raise ModelFormatError(f"{manifest.name} is {manifest.format}; need gguf or safetensors")
    quantization = (manifest.quantization or "").upper()
    if manifest.format != "gguf" or quantization in FLOAT_GGUF:
        return False
    if not dequantize:
        raise InvalidRequestError(
            f"{manifest.name} is a {quantization or 'quantized'} GGUF: training needs float "
            "weights. Pass --dequantize to train on its de-quantized weights (the result "
            f"cannot be better than the {quantization} source), or import the original "
            "weights (`llmasos pull HF_REPO`) and train those",
            param="dequantize",
        )
    logger.warning(
        "de-quantizing %s (%s): the result cannot be better than this source",
        manifest.name,
        quantization,
    )
    return True


def load_trainable(
    store: ModelStoreInterface, name: str, *, dequantize: bool, cache_root: Path
) -> TrainableModel:
    """``name`` from the store as a float32 torch model on the CPU, ready to train."""
    from llmasos.backends.interface import LoadSpec
    from llmasos.backends.transformers.loading import load_causal_lm

    manifest = store.manifest(name)
    dequantized = check_trainable(manifest, dequantize)
    resolved = store.resolve(name)
    spec = LoadSpec(
        path=resolved.path,
        format=manifest.format,
        context_length=manifest.context_length or 2048,
        options={
            "cache_dir": str(cache_root / manifest.short_id),
            "dtype": "float32",
            "device": "cpu",
        },
    )
    loaded = load_causal_lm(spec)
    tokenizer = loaded.tokenizer
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return TrainableModel(manifest, resolved, loaded.model, tokenizer, dequantized)


def hf_directory(store: ModelStoreInterface, name: str, *, cache_root: Path) -> Path:
    """``name`` as a Hugging Face model directory; a GGUF is de-quantized into ``cache_root``.

    The directory is the one `load_trainable` writes and reads (``cache_root/SHORT_ID``), so
    fine-tuning and a benchmark peer share one conversion; it is float32 whatever the source.
    """
    manifest = store.manifest(name)
    resolved = store.resolve(name)
    if manifest.format == "safetensors":
        return Path(resolved.path)
    from llmasos.backends.transformers.loading import cache_is_complete  # torch, when needed

    directory = cache_root / manifest.short_id
    if not cache_is_complete(directory):
        trainable = load_trainable(store, name, dequantize=True, cache_root=cache_root)
        del trainable
        if not cache_is_complete(directory):
            raise ModelFormatError(
                f"could not write the de-quantized {manifest.name} to {directory} "
                "(see the warning above)"
            )
    return directory


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]
    """``IGNORE`` where the token is not trained on (the prompt)."""
    row: dict[str, Any]


def render(manifest: Manifest, messages: Sequence[dict[str, str]], *, prompt: bool) -> str:
    from llmasos.chat_template import render_chat_template

    if not manifest.chat_template:
        raise ModelFormatError(f"{manifest.name} has no chat template to render chat rows with")
    messages = list(messages)
    if manifest.system and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": manifest.system})
    return render_chat_template(
        manifest.chat_template,
        messages,
        add_generation_prompt=prompt,
    )


def build_examples(
    rows: Sequence[dict[str, Any]], manifest: Manifest, tokenizer: Any, max_length: int
) -> list[Example]:
    """Token ids and labels of each row, cut to ``max_length`` tokens."""
    examples = []
    for row in rows:
        if "messages" in row:
            messages = row["messages"]
            if not messages or messages[-1]["role"] != "assistant":
                continue
            prompt_ids = tokenizer.encode(
                render(manifest, messages[:-1], prompt=True), add_special_tokens=False
            )
            ids = tokenizer.encode(
                render(manifest, messages, prompt=False), add_special_tokens=False
            )
            labels = [IGNORE] * len(prompt_ids) + ids[len(prompt_ids) :]
        else:
            ids = tokenizer.encode(row["text"], add_special_tokens=False)
            if tokenizer.bos_token_id is not None:
                ids = [tokenizer.bos_token_id, *ids]
            labels = list(ids)
            labels[0] = IGNORE
        ids, labels = ids[:max_length], labels[:max_length]
        if any(label != IGNORE for label in labels[1:]):
            examples.append(Example(ids, labels, row))
    if not examples:
        raise InvalidRequestError(
            f"no row fits in {max_length} tokens with something to train on; raise --max-length"
        )
    return examples


def batches(examples: Sequence[Example], size: int, seed: int) -> list[list[Example]]:
    """``examples`` shuffled with ``seed`` in batches of ``size`` (the same for one seed)."""
    order = list(examples)
    random.Random(seed).shuffle(order)
    return [order[i : i + size] for i in range(0, len(order), size)]


def collate(batch: Sequence[Example], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, example in enumerate(batch):
        n = len(example.input_ids)
        ids[i, :n] = torch.tensor(example.input_ids)
        labels[i, :n] = torch.tensor(example.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def token_losses(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """(summed next-token NLL over the labelled tokens, their count) of one batch."""
    import torch.nn.functional as functional

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    flat = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    loss = functional.cross_entropy(flat, targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum())


def mean_loss(model: Any, examples: Sequence[Example], pad_id: int, batch_size: int = 8) -> float:
    """Mean per-token NLL of ``examples`` (nats); ``exp`` of it is their perplexity."""
    import torch

    total = 0.0
    count = 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            loss, n = token_losses(model, collate(examples[start : start + batch_size], pad_id))
            total += float(loss)
            count += n
    return total / max(1, count)


def perplexity_of(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def greedy_texts(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """Greedy continuations of ``prompts`` (chat prompts already rendered)."""
    import torch

    model.eval()
    tokenizer.padding_side = "left"
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        encoded = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        for row in output[:, encoded["input_ids"].shape[1] :]:
            answers.append(tokenizer.decode(row, skip_special_tokens=True))
    return answers


def normalize_answer(text: str) -> str:
    first = text.strip().split("\n", 1)[0] if text.strip() else ""
    return first.strip().strip(".!\"'` ").casefold()


def classification_accuracy(
    model: Any, tokenizer: Any, manifest: Manifest, rows: Sequence[dict[str, Any]]
) -> tuple[float, list[str]]:
    """Share of ``rows`` whose greedy answer is the label; and the answers."""
    prompts = [render(manifest, row["messages"][:-1], prompt=True) for row in rows]
    longest = max((len(tokenizer.encode(str(r["label"]))) for r in rows), default=1)
    answers = greedy_texts(model, tokenizer, prompts, max_new_tokens=longest + 2)
    right = sum(
        normalize_answer(a) == str(r["label"]).casefold()
        for a, r in zip(answers, rows, strict=True)
    )
    return right / max(1, len(rows)), answers


def iter_params(model: Any) -> Iterator[tuple[str, Any]]:
    return ((n, p) for n, p in model.named_parameters() if p.requires_grad)


def peak_memory_bytes() -> int:
    """This process's peak resident memory so far."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
