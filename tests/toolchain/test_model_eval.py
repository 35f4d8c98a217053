"""`llmasos eval MODEL`: perplexity on both backends, generation metrics, history, bad input.

The embedded SmolLM2 (Q4_1) is made into an F16 GGUF by llama.cpp's quantizer once per
module: those F16 weights are what both backends load for the agreement check (llama.cpp
reads the F16 file; transformers de-quantizes the same file to float32, ~30 s on two cores,
the one slow step here). Texts are one paragraph and windows 128 tokens to stay short.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmasos.backends.interface import LoadSpec
from llmasos.backends.llamacpp.backend import LlamaCppBackend
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, ModelNotFoundError
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.store import ModelStore
from llmasos.toolchain.datasets import DatasetRegistry
from llmasos.toolchain.model_eval import (
    History,
    evaluate_model,
    load_eval_data,
    plot_history,
    score_answers,
    version_order,
)
from llmasos.toolchain.perplexity import perplexity, public_domain_text
from llmasos.toolchain.quantize import quantize_gguf

SMOLLM2 = package_path(BUILTINS[0])
pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(SMOLLM2 is None, reason="the embedded model package is missing"),
]
PARAGRAPH = "\n\n".join(public_domain_text().split("\n\n")[:3])  # ~150 tokens


@pytest.fixture(scope="module")
def f16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert SMOLLM2 is not None
    path = tmp_path_factory.mktemp("f16") / "smollm2-f16.gguf"
    quantize_gguf(SMOLLM2, path, "F16", threads=2)
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eval-home")


@pytest.fixture(scope="module")
def store(home: Path) -> ModelStore:
    return ModelStore.open(Settings(home=home))


@pytest.fixture(scope="module")
def registry(home: Path) -> DatasetRegistry:
    return DatasetRegistry(home / "datasets")


def test_both_backends_agree_on_the_same_weights(f16: Path, home: Path) -> None:
    from llmasos.backends.transformers.backend import TransformersBackend

    spec = LoadSpec(path=f16, format="gguf", context_length=256, max_sequences=1, threads=2)
    llama = LlamaCppBackend.load(spec)
    try:
        by_llama = perplexity(llama, PARAGRAPH, window=128)
        llama_tokens = llama.tokenize(PARAGRAPH)
    finally:
        llama.close()
    torch_spec = LoadSpec(
        path=f16, format="gguf", context_length=256, max_sequences=1, threads=2,
        options={"cache_dir": str(home / "cache" / "f16"), "dtype": "float32"},
    )  # fmt: skip
    torch_backend = TransformersBackend.load(torch_spec)
    try:
        assert torch_backend.tokenize(PARAGRAPH) == llama_tokens  # same tokens, no BOS added
        by_torch = perplexity(torch_backend, PARAGRAPH, window=128)
    finally:
        torch_backend.close()
    assert by_llama.tokens == by_torch.tokens == len(llama_tokens) - 1 > 128  # two windows of 128
    assert by_llama.bytes == by_torch.bytes > 0
    # measured: 0.06 % apart on the whole text; the issue asks for 1 %
    assert by_torch.value == pytest.approx(by_llama.value, rel=0.01)
    assert by_torch.byte_value == pytest.approx(by_llama.byte_value, rel=0.01)
    assert 1 < by_llama.byte_value < by_llama.value


def test_perplexity_and_answers_are_recorded_per_version(
    store: ModelStore, registry: DatasetRegistry, home: Path, tmp_path: Path
) -> None:
    name = store.manifest("smollm2").name
    text = tmp_path / "paragraph.txt"
    text.write_text(PARAGRAPH)
    report = evaluate_model(
        store, registry, "smollm2", "perplexity", home=home, data=str(text), window=128,
        threads=2,
    )  # fmt: skip
    assert report.summary().startswith("perplexity ") and 1 < report.value < 100
    assert report.details["tokenizer"].startswith("llama.cpp") and not report.details["bos_added"]
    assert report.version == store.manifest("smollm2").digest and report.model == name
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        json.dumps({"question": "What is the capital of France?", "answer": "Paris"}) + "\n"
    )
    answered = evaluate_model(
        store, registry, "smollm2", "rouge", home=home, data=str(qa), max_tokens=12,
        threads=2,
    )  # fmt: skip
    assert answered.items == 1 and "Paris" in answered.predictions[0]["answer"]
    assert 0 < answered.value <= 100  # the answer is a sentence naming Paris
    history = History(home)
    history.record(report)
    history.record(answered)
    entries = history.entries(name)
    assert [(e["task"], e["version"]) for e in entries] == [
        ("perplexity", report.version),
        ("rouge", report.version),
    ]
    assert "predictions" not in entries[0]
    order = version_order(store, name, entries)
    assert order == [report.version]
    plot_history(entries, order, tmp_path / "history.png")
    assert (tmp_path / "history.png").read_bytes()[:4] == b"\x89PNG"


def test_scores_are_the_shared_metrics() -> None:
    assert score_answers("exact-match", ["The Paris."], ["paris"]) == 100.0
    assert score_answers("accuracy", ["Billing\nbecause"], ["billing"]) == 100.0
    assert score_answers("accuracy", ["It is billing"], ["billing"]) == 0.0
    assert score_answers("bleu", ["the cat sat on the mat"], ["the cat sat on the mat"]) > 99


def test_bad_data_says_what_it_expected(registry: DatasetRegistry, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"foo": 1, "bar": 2}\n')
    with pytest.raises(InvalidRequestError, match=r"has columns foo, bar; --task bleu expects"):
        load_eval_data(registry, str(wrong), "bleu")
    plain = tmp_path / "plain.txt"
    plain.write_text("some text")
    with pytest.raises(InvalidRequestError, match="only --task perplexity reads"):
        load_eval_data(registry, str(plain), "accuracy")
    with pytest.raises(InvalidRequestError, match="no dataset or file named 'nothing-here'"):
        load_eval_data(registry, "nothing-here", "perplexity")
    with pytest.raises(InvalidRequestError, match="needs --data"):
        load_eval_data(registry, None, "chrf")
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "just a text"}\n')
    with pytest.raises(InvalidRequestError, match="has columns text; --task rouge expects"):
        load_eval_data(registry, str(texts), "rouge")
    assert load_eval_data(registry, str(texts), "perplexity").items[0].text == "just a text"


def test_an_unknown_model_or_task_is_one_line(
    store: ModelStore, registry: DatasetRegistry, home: Path
) -> None:
    with pytest.raises(InvalidRequestError, match="tasks: perplexity, bleu"):
        evaluate_model(store, registry, "smollm2", "wer", home=home)
    with pytest.raises(InvalidRequestError, match="backends: llamacpp, transformers"):
        evaluate_model(store, registry, "smollm2", "perplexity", home=home, backend="vllm")
    with pytest.raises(ModelNotFoundError):
        evaluate_model(store, registry, "no-such-model", "perplexity", home=home)
