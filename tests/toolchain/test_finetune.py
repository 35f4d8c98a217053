"""Fine-tuning and pruning the real embedded model, on a tiny dataset, end to end.

One store and home per module (the de-quantized weights are cached there once). LoRA runs a
few steps: interrupted after its first checkpoint (nothing registered), then resumed by the
same call and registered as a GGUF llama.cpp serves plus an HF version. Pruning two layers
re-measures perplexity and registers the smaller model the same way.
"""

from __future__ import annotations

import functools
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmasos.backends.interface import LoadSpec
from llmasos.backends.llamacpp.backend import LlamaCppBackend
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, ModelNotFoundError
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.gguf_info import read_gguf
from llmasos.models.store import ModelStore
from llmasos.toolchain.compress import prune
from llmasos.toolchain.dataprep import prepare_dataset
from llmasos.toolchain.datasets import DatasetRegistry
from llmasos.toolchain.finetune import FinetuneConfig, TrainEvent, finetune
from llmasos.toolchain.registering import greedy_text

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(package_path(BUILTINS[0]) is None, reason="the embedded model is missing"),
]

ROWS = [
    ("The parcel never arrived", "shipping"),
    ("I was billed twice", "billing"),
    ("My package is lost", "shipping"),
    ("Refund my last invoice", "billing"),
    ("The courier broke the box", "shipping"),
    ("The card was charged again", "billing"),
    ("Where is my delivery", "shipping"),
    ("Wrong amount on the bill", "billing"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("toolchain-home")


@pytest.fixture(scope="module")
def store(home: Path) -> ModelStore:
    return ModelStore.open(Settings(home=home))


@pytest.fixture(scope="module")
def registry(
    home: Path, store: ModelStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DatasetRegistry]:
    source = tmp_path_factory.mktemp("data") / "tiny.jsonl"
    splits = ["train"] * 4 + ["validation"] * 2 + ["test"] * 2
    source.write_text(
        "".join(
            json.dumps({"text": t, "label": label, "split": s}) + "\n"
            for (t, label), s in zip(ROWS, splits, strict=True)
        )
    )
    datasets = DatasetRegistry(home / "datasets")
    prepare_dataset(datasets, store, source, task="classification", name="tiny")
    yield datasets


def test_lora_on_a_quantized_gguf_needs_consent(
    store: ModelStore, registry: DatasetRegistry, home: Path
) -> None:
    with pytest.raises(InvalidRequestError, match="--dequantize"):
        finetune(store, registry, "smollm2", "tiny", name="nope", home=home)
    with pytest.raises(ModelNotFoundError):
        store.manifest("nope")


def test_lora_interrupted_resumes_and_registers_a_served_model(
    store: ModelStore, registry: DatasetRegistry, home: Path
) -> None:
    config = FinetuneConfig(epochs=1, batch_size=2, max_length=96, rank=4)

    def interrupt(event: TrainEvent) -> None:  # a real Ctrl-C (or a job's yield) mid-run
        if event.phase == "train" and event.step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    run = functools.partial(
        finetune, store, registry, "smollm2", "tiny", name="tiny-ft", home=home, config=config,
        dequantize=True, threads=2, checkpoint_every=0,
    )  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        run(progress=interrupt)
    with pytest.raises(ModelNotFoundError):
        store.manifest("tiny-ft")  # a cancelled job registers nothing
    report = run()  # no periodic checkpoints: the one written at the interruption resumes it
    assert report.resumed_from_step == 1 and report.steps == 2 and report.epochs_run == 1
    assert report.metric == "accuracy" and 0 <= report.before <= 1 and 0 <= report.after <= 1
    assert report.dequantized and report.tokens_per_second > 0 and report.peak_memory_bytes > 0
    assert len(report.history) == 1 and report.history[0]["validation_loss"] > 0
    run_dir = Path(report.run_dir)
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert json.loads((run_dir / "report.json").read_text())["run_id"] == report.run_id
    versions = store.versions("tiny-ft")
    assert [v.format for v in versions] == ["gguf", "safetensors"]
    assert [v.digest for v in reversed(versions)] == report.versions
    current = versions[0]
    assert current.source and current.source.startswith("finetune:lora:")
    assert current.chat_template == store.manifest("smollm2").chat_template
    assert report.gguf_agreement.endswith("/2")
    resolved = store.resolve("tiny-ft")
    assert read_gguf(resolved.path).quantization == "F16"
    backend = LlamaCppBackend.load(
        LoadSpec(path=resolved.path, format="gguf", context_length=256, max_sequences=1)
    )
    try:
        prompt = backend.tokenize(
            backend.render_chat([{"role": "user", "content": "Hello"}]), add_special=False
        )
        assert greedy_text(backend, prompt, 4)
    finally:
        backend.close()


def test_prune_layers_is_measured_and_registered(store: ModelStore, home: Path) -> None:
    report = prune(store, "smollm2", name="small", home=home, layers=2, dequantize=True, threads=2)
    assert len(report.removed_layers) == 2 and 0 not in report.removed_layers
    assert report.parameters_after < report.parameters_before
    assert report.perplexity_before > 1 and report.perplexity_after > 1
    # the F16 GGUF llama.cpp serves scores the text as the float32 weights did (same tokens,
    # no BOS forced on either side: 0.1 % apart, docs/benchmarks.md), while a wrong export
    # (tensor names, query/key row order) is off by orders of magnitude
    assert report.gguf_perplexity_after == pytest.approx(report.perplexity_after, rel=0.01)
    gguf = store.resolve("small").path
    facts = read_gguf(gguf)
    assert facts.quantization == "F16"
    base_blocks = read_gguf(store.resolve("smollm2").path).parameter_count
    assert facts.parameter_count is not None and base_blocks is not None
    assert facts.parameter_count < base_blocks
    with pytest.raises(InvalidRequestError, match="--layers takes 1 to"):
        prune(store, "smollm2", name="x", home=home, layers=99, dequantize=True)
