"""The transformers backend with a vision-language model: the tiny Idefics3 of `tiny_vlm`.

Checked against transformers itself: the first greedy token of our slot-cached step equals
the one the model's own forward pass (pixel values and all) picks, whatever way the prompt
is fed (one step, chunks, batched beside a text sequence).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llmasos.backends.interface import LoadSpec, SequenceWork  # noqa: E402
from llmasos.backends.transformers.backend import (  # noqa: E402
    TransformersBackend,
    with_content_parts,
)
from llmasos.errors import InvalidRequestError, UnsupportedError  # noqa: E402
from llmasos.types import SamplingParams  # noqa: E402
from tests.vision.tiny_vlm import IMAGE_SEQ_LEN, TOKENS_PER_IMAGE, png  # noqa: E402

GREEDY = SamplingParams(temperature=0.0)
RED, BLUE = png((230, 20, 20)), png((20, 20, 230))
QUESTION = [
    {
        "role": "user",
        "content": [{"type": "text", "text": "What is in this image?"}, {"type": "image"}],
    }
]


@pytest.fixture(scope="module")
def backend(model_dir: Path) -> Iterator[TransformersBackend]:
    spec = LoadSpec(
        path=model_dir,
        format="safetensors",
        context_length=256,
        max_sequences=4,
        threads=1,
        options={"device": "cpu", "dtype": "float32"},
    )
    loaded = TransformersBackend.load(spec)
    yield loaded
    loaded.close()


def generate(
    backend: TransformersBackend,
    seq_id: int,
    image: bytes,
    *,
    steps: int = 5,
    chunk: int | None = None,
    beside: Sequence[int] | None = None,
) -> tuple[list[int], int]:
    """Greedy tokens for QUESTION with ``image``; the prompt fed in ``chunk``-token steps
    and, with ``beside``, batched with a text sequence; also the prefix-cache hit."""
    encoded = backend.encode_images(backend.render_chat(QUESTION), [image])
    cached = backend.add_image_sequence(seq_id, GREEDY, encoded.tokens, encoded.media)
    pending = encoded.tokens[cached:]
    if beside is not None:
        backend.add_sequence(seq_id + 100, GREEDY, beside)
    size = chunk or len(pending)
    tokens: list[int] = []
    while pending:
        piece, pending = pending[:size], pending[size:]
        work = [SequenceWork(seq_id, piece, not pending)]
        if beside is not None and not tokens:
            work.append(SequenceWork(seq_id + 100, beside, True))
            beside = None
        for result in backend.execute(work):
            if result.seq_id == seq_id:
                tokens.append(result.token)
    while len(tokens) < steps:
        tokens.append(backend.execute([SequenceWork(seq_id, [tokens[-1]], True)])[0].token)
    backend.remove_sequence(seq_id)
    backend.remove_sequence(seq_id + 100)
    return tokens, cached


def test_the_model_is_recognised_as_seeing(backend: TransformersBackend) -> None:
    assert backend.accepts_images
    assert backend.render_chat(QUESTION) == (
        "<|im_start|>User: What is in this image?<image><end_of_utterance>\nAssistant:"
    )


def test_each_image_becomes_its_placeholder_tokens(backend: TransformersBackend) -> None:
    prompt = backend.render_chat(QUESTION)
    encoded = backend.encode_images(prompt, [RED])
    text_only = backend.tokenize(prompt.replace("<image>", ""))
    assert encoded.image_tokens == IMAGE_SEQ_LEN
    assert len(encoded.tokens) == len(text_only) + TOKENS_PER_IMAGE
    two = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}]}]
    both = backend.encode_images(backend.render_chat(two), [RED, BLUE])
    assert both.image_tokens == 2 * IMAGE_SEQ_LEN


def test_first_token_matches_the_models_own_forward_pass(
    backend: TransformersBackend, model_dir: Path
) -> None:
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(model_dir)

    prompt = backend.render_chat(QUESTION)
    for image in (RED, BLUE):
        picture = Image.open(io.BytesIO(image)).convert("RGB")
        inputs = processor(text=[prompt], images=[[picture]], return_tensors="pt")
        with torch.inference_mode():
            expected = int(model(**inputs).logits[0, -1].argmax())
        tokens, _ = generate(backend, 1, image, steps=1)
        assert tokens == [expected]


def test_the_image_decides_the_output_and_the_same_image_repeats_it(
    backend: TransformersBackend,
) -> None:
    red, _ = generate(backend, 1, RED)
    blue, cached = generate(backend, 2, BLUE)
    assert red != blue
    # the text before the image came from the prefix cache; the image positions did not
    prompt = backend.encode_images(backend.render_chat(QUESTION), [RED]).tokens
    assert 0 < cached == prompt.index(backend._image_token)  # type: ignore[arg-type]
    again, _ = generate(backend, 3, RED)
    assert again == red


def test_chunked_and_batched_prefill_give_the_same_tokens(backend: TransformersBackend) -> None:
    alone, _ = generate(backend, 1, RED)
    assert generate(backend, 2, RED, chunk=3)[0] == alone
    text = backend.tokenize("Assistant: a cat and a dog")
    assert generate(backend, 3, RED, chunk=7, beside=text)[0] == alone


def test_bad_images_and_text_models_are_refused(backend: TransformersBackend) -> None:
    prompt = backend.render_chat(QUESTION)
    with pytest.raises(InvalidRequestError, match="image 1 cannot be read"):
        backend.encode_images(prompt, [b"not an image at all"])
    with pytest.raises(InvalidRequestError, match=r"1 image placeholders .* for 2 images"):
        backend.encode_images(prompt, [RED, BLUE])
    text = backend.render_chat([{"role": "user", "content": "hi"}])
    with pytest.raises(InvalidRequestError, match="0 image placeholders"):
        backend.encode_images(text, [RED])


def test_text_content_becomes_parts_for_vision_templates() -> None:
    assert with_content_parts({"role": "user", "content": "hi"}) == {
        "role": "user",
        "content": [{"type": "text", "text": "hi"}],
    }
    parts = {"role": "user", "content": [{"type": "image"}]}
    assert with_content_parts(parts) is parts


def test_a_text_backend_refuses_images() -> None:
    from tests.kernel.fake_backend import FakeBackend

    backend = FakeBackend.load(LoadSpec(path=Path("fake"), format="gguf", context_length=64))
    assert not backend.accepts_images
    with pytest.raises(UnsupportedError):
        backend.encode_images("x", [RED])


def test_a_resumed_sequence_finds_images_in_its_prompt_only(backend: TransformersBackend) -> None:
    """After a preemption the kernel adds the prompt and what was generated; a generated
    token may be the placeholder id, and it is not an image position."""
    encoded = backend.encode_images(backend.render_chat(QUESTION), [RED])
    image = encoded.tokens.index(backend._image_token)  # type: ignore[arg-type]
    generated = [backend._image_token, encoded.tokens[0]]
    tokens = [*encoded.tokens, *generated]
    cached = backend.add_image_sequence(9, GREEDY, tokens, encoded.media, generated=generated)
    assert cached <= image
    result = backend.execute([SequenceWork(9, tokens[cached:], True)])
    assert [r.seq_id for r in result] == [9]
    backend.remove_sequence(9)
