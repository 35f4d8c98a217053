"""``llmasos finetune``: LoRA (PEFT) or full fine-tuning of a store model on a prepared dataset.

`finetune` trains in float32 on the CPU (plain torch loop, AdamW, gradient clipping), at low
priority (`lower_priority`). Every ``checkpoint_every`` steps and at every epoch's end it
writes a checkpoint (trainable weights, optimizer, position, history) into the run's
directory ``$LLMASOS_HOME/toolchain/runs/<run id>/``, atomically (a failed write, e.g. a full
disk, leaves the previous checkpoint usable). The run id is a hash of the base model's digest,
the dataset's digest and the hyperparameters, so running the same command again resumes where
an interrupted run stopped (``restart=True`` starts over). Each epoch ends with the loss on the
validation split; the best epoch's weights are kept and training stops after ``patience``
epochs without improvement.

The test split is measured before and after (classification: accuracy of greedy answers;
otherwise perplexity). The result is merged (LoRA into the base weights), written as an HF
directory and, for a GGUF base, as an F16 GGUF (`gguf_export`) whose greedy answers are
compared with transformers', and both are registered in one store change as versions of the
new name (the GGUF current, so ``llmasos run NAME`` serves it with llama.cpp). The adapter
stays in the run directory. Nothing is registered unless every step succeeded: a cancelled
run leaves its checkpoint and no model. A SIGINT during training (Ctrl-C, `llmasos jobs
cancel`, a background job yielding its memory to serving) takes effect at the end of the
step it arrives in, after a checkpoint of that step (`interrupt_between_steps`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from llmasos.errors import InvalidRequestError, StorageError
from llmasos.models import ModelStoreInterface
from llmasos.toolchain.datasets import DatasetRegistry
from llmasos.toolchain.registering import register_result
from llmasos.toolchain.training import (
    batches,
    build_examples,
    check_trainable,
    classification_accuracy,
    collate,
    load_trainable,
    lower_priority,
    mean_loss,
    peak_memory_bytes,
    perplexity_of,
    token_losses,
)

Method = Literal["lora", "full"]


@dataclass(frozen=True)
class FinetuneConfig:
    method: Method = "lora"
    epochs: int = 3
    lr: float = 0.0
    """0: 2e-4 for LoRA, 2e-5 for full fine-tuning."""
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    batch_size: int = 8
    max_length: int = 512
    patience: int = 2
    seed: int = 0

    @property
    def learning_rate(self) -> float:
        return self.lr or (2e-4 if self.method == "lora" else 2e-5)

    def check(self) -> None:
        if self.method not in ("lora", "full"):
            raise InvalidRequestError(f"--method {self.method!r} is not lora or full")
        if self.epochs < 1 or self.batch_size < 1 or self.rank < 1 or self.max_length < 8:
            raise InvalidRequestError("epochs, batch size and rank must be >= 1, max length >= 8")
        if not 0 <= self.dropout < 1 or self.lr < 0:
            raise InvalidRequestError("dropout is in [0, 1) and the learning rate >= 0")


@dataclass
class TrainEvent:
    """What a progress callback sees: ``phase`` changes, then one event per step."""

    phase: str
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    message: str = ""


Progress = Callable[[TrainEvent], None]


@dataclass
class FinetuneReport:
    model: str
    base: str
    dataset: str
    run_id: str
    run_dir: str
    config: dict[str, Any]
    metric: str
    """``accuracy`` (classification) or ``perplexity`` (on the test split)."""
    before: float = 0.0
    after: float = 0.0
    epochs_run: int = 0
    best_epoch: int = 0
    stopped_early: bool = False
    resumed_from_step: int = 0
    steps: int = 0
    train_tokens: int = 0
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0
    peak_memory_bytes: int = 0
    trainable_parameters: int = 0
    dequantized: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: epoch, train_loss, validation_loss."""
    versions: list[str] = field(default_factory=list)
    """Digests registered, the current (GGUF when there is one) last."""
    gguf_agreement: str = ""
    """``k/n`` prompts whose greedy answers were the same in llama.cpp and transformers."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_id(base_digest: str, dataset_digest: str, config: FinetuneConfig) -> str:
    key = json.dumps([base_digest, dataset_digest, asdict(config)], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _save_atomic(payload: Any, path: Path) -> None:
    import torch

    partial = path.with_name(f".{path.name}.partial")
    try:
        torch.save(payload, partial)
        os.replace(partial, path)
    except (OSError, RuntimeError) as error:
        partial.unlink(missing_ok=True)
        raise StorageError(
            f"could not write {path.name} ({error}); the last checkpoint in {path.parent} "
            "stays usable: free some space and run the same command to resume"
        ) from None


def _trainable_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@contextlib.contextmanager
def interrupt_between_steps() -> Iterator[threading.Event]:
    """Defer the first SIGINT to the end of the training step it arrives in (the event is
    set; the loop checkpoints and raises KeyboardInterrupt), so an interrupted run resumes
    from the step it was on, not from its last periodic checkpoint. A second SIGINT
    interrupts at once. Outside the main thread (no signal handlers there) nothing changes."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def defer(signum: int, frame: Any) -> None:
        interrupted.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, defer)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def finetune(
    store: ModelStoreInterface,
    registry: DatasetRegistry,
    base: str,
    dataset: str,
    *,
    name: str,
    home: Path,
    config: FinetuneConfig = FinetuneConfig(),
    dequantize: bool = False,
    restart: bool = False,
    threads: int = 0,
    checkpoint_every: int = 50,
    max_steps: int = 0,
    progress: Progress = lambda event: None,
) -> FinetuneReport:
    """Fine-tune ``base`` on ``dataset`` and register the result as ``name``."""
    import torch

    config.check()
    data = registry.get(dataset)
    manifest = store.manifest(base)
    check_trainable(manifest, dequantize)  # before anything slow
    lower_priority(threads)
    identifier = run_id(manifest.digest, data.digest, config)
    run_dir = home / "toolchain" / "runs" / identifier
    if restart:
        shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    progress(TrainEvent("load", message=f"loading {manifest.name}"))
    trainable = load_trainable(
        store, base, dequantize=dequantize, cache_root=home / "cache" / "transformers"
    )
    model, tokenizer = trainable.model, trainable.tokenizer
    pad = int(tokenizer.pad_token_id)
    rows = {s: registry.rows(dataset, s) for s in ("train", "validation", "test")}
    train = build_examples(rows["train"], manifest, tokenizer, config.max_length)
    validation = build_examples(rows["validation"], manifest, tokenizer, config.max_length)
    test = build_examples(rows["test"], manifest, tokenizer, config.max_length)
    classification = data.task == "classification"
    report = FinetuneReport(
        model=name,
        base=manifest.name,
        dataset=f"{data.name}@{data.short_id}",
        run_id=identifier,
        run_dir=str(run_dir),
        config=asdict(config),
        metric="accuracy" if classification else "perplexity",
        dequantized=trainable.dequantized,
    )

    def measure() -> float:
        if classification:
            return classification_accuracy(model, tokenizer, manifest, [e.row for e in test])[0]
        return perplexity_of(mean_loss(model, test, pad, config.batch_size))

    checkpoint_path = run_dir / "checkpoint.pt"
    state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": []}
    saved = torch.load(checkpoint_path, weights_only=False) if checkpoint_path.is_file() else None
    if saved is not None:
        report.before = saved["before"]
    else:
        progress(TrainEvent("measure", message=f"test {report.metric} of {manifest.name}"))
        report.before = measure()

    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=config.rank,
                lora_alpha=config.alpha,
                lora_dropout=config.dropout,
                target_modules=list(config.targets),
                task_type="CAUSAL_LM",
            ),
        )
    else:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    parameters = [p for p in model.parameters() if p.requires_grad]
    report.trainable_parameters = sum(p.numel() for p in parameters)
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.0)
    best: dict[str, Any] = {"loss": float("inf"), "epoch": 0, "bad_epochs": 0}
    if saved is not None:
        model.load_state_dict(saved["weights"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        best = saved["best"]
        report.resumed_from_step = state["global_step"]

    def checkpoint() -> None:
        _save_atomic(
            {
                "weights": _trainable_state(model),
                "optimizer": optimizer.state_dict(),
                "state": state,
                "best": best,
                "before": report.before,
            },
            checkpoint_path,
        )

    per_epoch = len(batches(train, config.batch_size, config.seed))
    total = per_epoch * config.epochs
    started = time.perf_counter()
    tokens = 0
    steps_now = 0
    stop = False
    with interrupt_between_steps() as interrupted:
        while state["epoch"] < config.epochs and not stop:
            epoch = state["epoch"]
            model.train()
            epoch_loss, epoch_count = 0.0, 0
            for index, batch in enumerate(batches(train, config.batch_size, config.seed + epoch)):
                if index < state["step_in_epoch"]:
                    continue
                inputs = collate(batch, pad)
                loss_sum, count = token_losses(model, inputs)
                loss = loss_sum / max(1, count)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                tokens += int(inputs["attention_mask"].sum())
                epoch_loss += float(loss_sum.detach())
                epoch_count += count
                state["step_in_epoch"] = index + 1
                state["global_step"] += 1
                steps_now += 1
                if checkpoint_every and state["global_step"] % checkpoint_every == 0:
                    checkpoint()
                progress(
                    TrainEvent(
                        "train", epoch + 1, state["global_step"], total, loss=float(loss.detach())
                    )
                )
                if interrupted.is_set():  # Ctrl-C, `jobs cancel`, a yield: stop at a whole step
                    checkpoint()
                    raise KeyboardInterrupt
                if max_steps and steps_now >= max_steps:
                    stop = True
                    break
            progress(TrainEvent("validate", epoch + 1, state["global_step"], total))
            validation_loss = mean_loss(model, validation, pad, config.batch_size)
            state["history"].append(
                {
                    "epoch": epoch + 1,
                    "train_loss": epoch_loss / max(1, epoch_count),
                    "validation_loss": validation_loss,
                }
            )
            if validation_loss < best["loss"]:
                best.update(loss=validation_loss, epoch=epoch + 1, bad_epochs=0)
                _save_atomic(_trainable_state(model), run_dir / "best.pt")
            else:
                best["bad_epochs"] += 1
            state["epoch"] = epoch + 1
            state["step_in_epoch"] = 0
            if best["bad_epochs"] >= config.patience and state["epoch"] < config.epochs:
                report.stopped_early = True
                stop = True
            checkpoint()
    report.train_seconds = round(time.perf_counter() - started, 2)
    report.train_tokens = tokens
    report.tokens_per_second = round(tokens / max(1e-9, report.train_seconds), 1)
    report.steps = state["global_step"]
    report.epochs_run = state["epoch"]
    report.history = state["history"]
    report.best_epoch = best["epoch"]
    if (run_dir / "best.pt").is_file():
        model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True), strict=False)
    progress(TrainEvent("measure", message=f"test {report.metric} after training"))
    report.after = measure()
    report.peak_memory_bytes = peak_memory_bytes()
    if config.method == "lora":
        model.save_pretrained(run_dir / "adapter")
        model = model.merge_and_unload()
    progress(TrainEvent("register", message=f"writing and registering {name}"))
    registered = register_result(
        store,
        model,
        tokenizer,
        base_manifest=manifest,
        gguf_template=trainable.gguf_template,
        name=name,
        source=f"finetune:{config.method}:{manifest.digest}:{data.digest}:run {identifier}",
        work_dir=run_dir,
        check_prompts=[e.row for e in test[:3]],
    )
    report.versions = registered.digests
    report.gguf_agreement = registered.agreement
    (run_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
    plot_history(report.history, run_dir / "report.png", title=f"{name}: loss per epoch")
    return report


def plot_history(history: list[dict[str, float]], path: Path, *, title: str) -> bool:
    """Train and validation loss per epoch as a PNG (False without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    axes.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    axes.plot(epochs, [h["validation_loss"] for h in history], marker="o", label="validation")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss (nats/token)")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
