"""``llmasos prune`` and ``llmasos distill``: smaller models, measured before and after.

`prune` either removes ``layers`` whole decoder blocks (structured: the blocks whose output
differs least from their input on the public-domain text, by cosine similarity of the hidden
states, never the first or the last) or zeroes the ``sparsity`` fraction of smallest-magnitude
weights of every decoder matrix (unstructured: the file and dense llama.cpp kernels do not
get smaller or faster; it is a step towards sparse kernels or a later distillation).
`distill` trains a student on a dataset's train split against a teacher's token
distributions: ``T² · KL(teacher_T ‖ student_T)`` at temperature ``T``, mixed with the plain
next-token loss by ``alpha``, over the tokens the dataset trains on (plain torch: the loss
is a few lines, and TRL's trainers would bring their own loop, logging and dependency tree
for it). Teacher and student must share a tokenizer.

Both measure token-level perplexity on the shipped public-domain text before and after
(`perplexity.torch_perplexity`: in torch, the same tokens and windows as on a backend), and
register the result like a fine-tune (`registering.register_result`: HF and GGUF versions,
one store change).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmasos.errors import InvalidRequestError
from llmasos.models import ModelStoreInterface
from llmasos.toolchain.datasets import DatasetRegistry
from llmasos.toolchain.finetune import Progress, TrainEvent
from llmasos.toolchain.perplexity import public_domain_text, torch_perplexity
from llmasos.toolchain.registering import register_result
from llmasos.toolchain.training import (
    IGNORE,
    batches,
    build_examples,
    collate,
    load_trainable,
    lower_priority,
    peak_memory_bytes,
)

PRUNED_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class CompressReport:
    model: str
    source: str
    """The model pruned, or the student distilled."""
    how: str
    """``layers N``, ``sparsity S`` or ``distill from TEACHER``."""
    parameters_before: int = 0
    parameters_after: int = 0
    nonzero_after: int = 0
    perplexity_before: float = 0.0
    perplexity_after: float = 0.0
    """Token-level, on the shipped public-domain text, in torch (float32)."""
    gguf_perplexity_after: float = 0.0
    """The same, of the registered GGUF in llama.cpp (0 without a GGUF)."""
    removed_layers: list[int] = field(default_factory=list)
    seconds: float = 0.0
    peak_memory_bytes: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    gguf_agreement: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def layer_redundancy(model: Any, tokenizer: Any, text: str) -> list[float]:
    """Per decoder block: the cosine similarity of its output to its input hidden states."""
    import torch

    ids = tokenizer.encode(text, add_special_tokens=False)[:512]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    similarity = []
    for before, after in itertools.pairwise(hidden):
        cosine = torch.nn.functional.cosine_similarity(before[0], after[0], dim=-1)
        similarity.append(float(cosine.mean()))
    return similarity[: model.config.num_hidden_layers]


def remove_layers(model: Any, count: int, redundancy: list[float]) -> list[int]:
    """Drop the ``count`` most redundant blocks (not the first or last); their indexes."""
    import torch

    layers = model.model.layers
    total = len(layers)
    if not 0 < count <= total - 2:
        raise InvalidRequestError(f"--layers takes 1 to {total - 2} for a {total}-layer model")
    candidates = sorted(range(1, total - 1), key=lambda i: -redundancy[i])
    removed = sorted(candidates[:count])
    kept = [layer for i, layer in enumerate(layers) if i not in removed]
    for index, layer in enumerate(kept):
        layer.self_attn.layer_idx = index
    model.model.layers = torch.nn.ModuleList(kept)
    model.config.num_hidden_layers = len(kept)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[: len(kept)]
    return removed


def zero_smallest(model: Any, sparsity: float) -> None:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights of each decoder matrix."""
    import torch

    if not 0 < sparsity < 1:
        raise InvalidRequestError("--sparsity is a fraction between 0 and 1, e.g. 0.3")
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in PRUNED_MODULES:
                weight = module.weight
                k = int(weight.numel() * sparsity)
                if k:
                    threshold = weight.abs().flatten().kthvalue(k).values
                    weight.mul_(weight.abs() > threshold)


def _served_perplexity(store: ModelStoreInterface, name: str, agreement: str) -> float:
    """llama.cpp's perplexity of the GGUF just registered as ``name`` (0.0 without one)."""
    import torch

    from llmasos.toolchain.quantize import llama_perplexity

    if not agreement:
        return 0.0
    return llama_perplexity(store.resolve(name).path, torch.get_num_threads())


def _register(
    store: ModelStoreInterface,
    report: CompressReport,
    model: Any,
    tokenizer: Any,
    source: Any,
    home: Path,
    started: float,
    progress: Progress,
    *,
    kind: str,
    provenance: str,
) -> CompressReport:
    """Write the changed ``model`` as a new model named ``report.model``, measure it as served."""
    name = report.model
    progress(TrainEvent("register", message=f"writing and registering {name}"))
    short = source.manifest.digest.removeprefix("sha256:")[:12]
    registered = register_result(
        store,
        model,
        tokenizer,
        base_manifest=source.manifest,
        gguf_template=source.gguf_template,
        name=name,
        source=provenance,
        work_dir=home / "toolchain" / "work" / f"{kind}-{short}",
    )
    report.versions, report.gguf_agreement = registered.digests, registered.agreement
    report.gguf_perplexity_after = _served_perplexity(store, name, registered.agreement)
    report.seconds = round(time.perf_counter() - started, 1)
    return report


def _count(model: Any) -> tuple[int, int]:
    params = [p for _, p in model.named_parameters()]
    return sum(p.numel() for p in params), sum(int((p != 0).sum()) for p in params)


def prune(
    store: ModelStoreInterface,
    source: str,
    *,
    name: str,
    home: Path,
    layers: int = 0,
    sparsity: float = 0.0,
    dequantize: bool = False,
    threads: int = 0,
    progress: Progress = lambda event: None,
) -> CompressReport:
    """Prune ``source`` (``layers`` blocks or ``sparsity``) and register it as ``name``."""
    if bool(layers) == bool(sparsity):
        raise InvalidRequestError("give one of --layers N or --sparsity S")
    if sparsity and not 0 < sparsity < 1:
        raise InvalidRequestError("--sparsity is a fraction between 0 and 1, e.g. 0.3")
    lower_priority(threads)
    started = time.perf_counter()
    progress(TrainEvent("load", message=f"loading {source}"))
    trainable = load_trainable(
        store, source, dequantize=dequantize, cache_root=home / "cache" / "transformers"
    )
    model, tokenizer = trainable.model, trainable.tokenizer
    text = public_domain_text()
    how = f"layers {layers}" if layers else f"sparsity {sparsity}"
    report = CompressReport(model=name, source=trainable.manifest.name, how=how)
    report.parameters_before = _count(model)[0]
    progress(TrainEvent("measure", message="perplexity before"))
    report.perplexity_before = torch_perplexity(model, tokenizer, text).value
    progress(TrainEvent("prune", message=f"pruning: {how}"))
    if layers:
        report.removed_layers = remove_layers(
            model, layers, layer_redundancy(model, tokenizer, text)
        )
    else:
        zero_smallest(model, sparsity)
    report.parameters_after, report.nonzero_after = _count(model)
    progress(TrainEvent("measure", message="perplexity after"))
    report.perplexity_after = torch_perplexity(model, tokenizer, text).value
    report.peak_memory_bytes = peak_memory_bytes()
    digest = trainable.manifest.digest
    return _register(
        store, report, model, tokenizer, trainable, home, started, progress,
        kind="prune", provenance=f"prune:{how.replace(' ', '=')}:{digest}",
    )  # fmt: skip


def distill(
    store: ModelStoreInterface,
    registry: DatasetRegistry,
    teacher: str,
    student: str,
    dataset: str,
    *,
    name: str,
    home: Path,
    epochs: int = 1,
    lr: float = 5e-5,
    temperature: float = 2.0,
    alpha: float = 0.5,
    batch_size: int = 8,
    max_length: int = 512,
    max_steps: int = 0,
    dequantize: bool = False,
    threads: int = 0,
    seed: int = 0,
    progress: Progress = lambda event: None,
) -> CompressReport:
    """Train ``student`` towards ``teacher``'s distributions on ``dataset``; register it."""
    import torch
    import torch.nn.functional as functional

    if temperature <= 0 or not 0 <= alpha <= 1 or epochs < 1:
        raise InvalidRequestError("--temperature > 0, --alpha in [0, 1], --epochs >= 1")
    data = registry.get(dataset)
    lower_priority(threads)
    started = time.perf_counter()
    cache = home / "cache" / "transformers"
    progress(TrainEvent("load", message=f"loading {teacher} and {student}"))
    teacher_model = load_trainable(store, teacher, dequantize=dequantize, cache_root=cache)
    student_model = load_trainable(store, student, dequantize=dequantize, cache_root=cache)
    if teacher_model.tokenizer.get_vocab() != student_model.tokenizer.get_vocab():
        raise InvalidRequestError(
            f"{teacher} and {student} have different tokenizers; distillation on token "
            "distributions needs the same one"
        )
    model, tokenizer = student_model.model, student_model.tokenizer
    teacher_net = teacher_model.model.eval()
    for parameter in teacher_net.parameters():
        parameter.requires_grad_(False)
    text = public_domain_text()
    report = CompressReport(
        model=name, source=student_model.manifest.name, how=f"distill from {teacher}"
    )
    report.parameters_before = report.parameters_after = _count(model)[0]
    report.perplexity_before = torch_perplexity(model, tokenizer, text).value
    rows = registry.rows(dataset, "train")
    train = build_examples(rows, student_model.manifest, tokenizer, max_length)
    embeddings = model.get_input_embeddings().weight
    parameters = [p for p in model.parameters() if p is not embeddings]
    for parameter in model.parameters():
        parameter.requires_grad_(parameter is not embeddings)
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    pad = int(tokenizer.pad_token_id)
    total = len(batches(train, batch_size, seed)) * epochs
    step = 0
    for epoch in range(epochs):
        model.train()
        running, seen = 0.0, 0
        for batch in batches(train, batch_size, seed + epoch):
            inputs = collate(batch, pad)
            targets = inputs["labels"][:, 1:]
            keep = targets != IGNORE
            with torch.no_grad():
                teacher_logits = teacher_net(
                    input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
                ).logits[:, :-1][keep]
            student_logits = model(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            ).logits[:, :-1][keep]
            kl = functional.kl_div(
                functional.log_softmax(student_logits / temperature, -1),
                functional.log_softmax(teacher_logits / temperature, -1),
                log_target=True,
                reduction="batchmean",
            ) * (temperature**2)
            hard = functional.cross_entropy(student_logits, targets[keep])
            loss = alpha * kl + (1 - alpha) * hard
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running += float(loss.detach())
            seen += 1
            progress(TrainEvent("train", epoch + 1, step, total, loss=float(loss.detach())))
            if max_steps and step >= max_steps:
                break
        report.history.append({"epoch": epoch + 1, "train_loss": running / max(1, seen)})
        if max_steps and step >= max_steps:
            break
    progress(TrainEvent("measure", message="perplexity after"))
    report.perplexity_after = torch_perplexity(model, tokenizer, text).value
    report.nonzero_after = _count(model)[1]
    report.peak_memory_bytes = peak_memory_bytes()
    del teacher_net, teacher_model
    digest = student_model.manifest.digest
    return _register(
        store, report, model, tokenizer, student_model, home, started, progress,
        kind="distill", provenance=f"distill:{teacher}:{digest}:{data.digest}",
    )  # fmt: skip
