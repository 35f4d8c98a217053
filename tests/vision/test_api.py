"""Images in chat over real HTTP on loopback: the tiny Idefics3 of `tiny_vlm` imported into
the store from its directory, served by the real kernel and transformers backend, asked
through the real ``openai`` and ``ollama`` clients; beside it the embedded text model reads
the same kind of request by OCR. What is checked is the path each request took (the
response's ``image_input``), that the image reached the vision model (other image, other
answer; same image, same answer) and the errors for bad images."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from llmasos.config import Settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.models.store import ModelStore
from llmasos.perception.images import MAX_IMAGE_BYTES, MAX_IMAGES
from llmasos.server.app import create_app
from tests.perception.media_fixtures import needs_tesseract, silent_wav, text_png
from tests.server.conftest import ServerThread
from tests.vision.tiny_vlm import IMAGE_SEQ_LEN, TOKENS_PER_IMAGE, png

pytest.importorskip("transformers")

RED, BLUE = png((230, 20, 20)), png((20, 20, 230))
QUESTION = "What is in this image?"


@pytest.fixture(scope="module")
def url(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = Settings(home=tmp_path_factory.mktemp("vision-home"), threads=1)
    store = ModelStore.open(settings)
    store.import_path(model_dir, "tiny-vlm")
    # the same weights with a context too short for three images
    store.create("tiny-vlm-short", "FROM tiny-vlm\nPARAMETER num_ctx 32\n", base_dir=model_dir)
    engine = InProcessEngineClient(settings, store)
    # a body limit above the per-image limit, so that the image's own limit answers
    app = create_app(settings, engine, store, max_body_bytes=2 * MAX_IMAGE_BYTES)
    try:
        with ServerThread(app) as address:
            yield address
    finally:
        asyncio.run(engine.close())


def data_url(image: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(image).decode()


def user_message(*images: bytes, text: str = QUESTION) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": data_url(i)}} for i in images]
    return {"role": "user", "content": parts}


def ask(api: openai.OpenAI, model: str, *images: bytes, **options: Any) -> Any:
    return api.chat.completions.create(
        model=model,
        messages=[user_message(*images)],  # type: ignore[list-item]
        temperature=0,
        max_tokens=8,
        **options,
    )


def image_input(response: Any) -> dict[str, Any]:
    extra: dict[str, Any] = response.model_extra or {}
    return extra["image_input"]  # type: ignore[no-any-return]


def test_the_imported_model_says_it_sees(url: str) -> None:
    shown = httpx.post(f"{url}/api/show", json={"model": "tiny-vlm"}, timeout=30).json()
    assert shown["capabilities"] == ["completion", "tools", "vision"]
    short = httpx.post(f"{url}/api/show", json={"model": "tiny-vlm-short"}, timeout=30).json()
    assert "vision" in short["capabilities"]
    text = httpx.post(f"{url}/api/show", json={"model": "smollm2"}, timeout=30).json()
    assert "vision" not in text["capabilities"]


def test_openai_client_a_vision_model_sees_the_image(api: openai.OpenAI) -> None:
    red = ask(api, "tiny-vlm", RED)
    assert image_input(red) == {"path": "vision", "images": 1, "sizes": ["40x30"]}
    blue = ask(api, "tiny-vlm", BLUE)
    assert blue.choices[0].message.content != red.choices[0].message.content
    again = ask(api, "tiny-vlm", RED)
    assert again.choices[0].message.content == red.choices[0].message.content
    both = ask(api, "tiny-vlm", RED, BLUE)
    assert image_input(both)["images"] == 2
    assert both.usage.prompt_tokens == red.usage.prompt_tokens + TOKENS_PER_IMAGE


def test_openai_client_stream_says_vision_on_every_chunk(api: openai.OpenAI) -> None:
    whole = ask(api, "tiny-vlm", BLUE)
    chunks = list(ask(api, "tiny-vlm", BLUE, stream=True))
    assert chunks and all(image_input(c)["path"] == "vision" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content


def test_ollama_chat_and_generate_take_the_vision_path(url: str) -> None:
    with ollama.Client(host=url) as client:
        reply = client.chat(
            model="tiny-vlm",
            messages=[{"role": "user", "content": QUESTION, "images": [RED]}],
            options={"temperature": 0, "num_predict": 4},
        )
    assert reply.message.content is not None and reply.done
    body = {
        "model": "tiny-vlm",
        "messages": [
            {"role": "user", "content": QUESTION, "images": [base64.b64encode(RED).decode()]}
        ],
        "options": {"temperature": 0, "num_predict": 4},
    }
    with httpx.stream("POST", f"{url}/api/chat", json=body, timeout=60) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[0]["image_input"] == {"path": "vision", "images": 1, "sizes": ["40x30"]}
    assert lines[-1]["done"] and "image_input" not in lines[-1]
    generated = httpx.post(
        f"{url}/api/generate",
        json={
            "model": "tiny-vlm",
            "prompt": QUESTION,
            "images": [base64.b64encode(BLUE).decode()],
            "stream": False,
            "options": {"temperature": 0, "num_predict": 4},
        },
        timeout=60,
    ).json()
    assert generated["image_input"]["path"] == "vision" and generated["done"]


@needs_tesseract
def test_a_text_model_on_the_same_server_reads_the_ocr_text(api: openai.OpenAI) -> None:
    page = text_png(["Meeting at 10 am"])
    completion = ask(api, "smollm2", page)
    report = image_input(completion)
    assert report["path"] == "ocr" and report["engine"] == "tesseract"
    assert report["images"] == 1 and report["characters"][0] > 0


def error_of(caught: pytest.ExceptionInfo[openai.APIStatusError]) -> dict[str, Any]:
    body = caught.value.body
    assert isinstance(body, dict)
    return body.get("error", body)  # type: ignore[no-any-return]


def test_bad_images_are_refused_with_openai_errors(api: openai.OpenAI, url: str) -> None:
    with pytest.raises(openai.BadRequestError) as not_image:
        ask(api, "tiny-vlm", silent_wav(0.1))
    error = error_of(not_image)
    assert "the file is audio/wav, not an image" in error["message"]
    assert error["param"] == "messages[0].content[1]"
    with pytest.raises(openai.BadRequestError) as too_many:
        ask(api, "tiny-vlm", *[RED] * (MAX_IMAGES + 1))
    assert f"{MAX_IMAGES + 1} images; at most {MAX_IMAGES}" in error_of(too_many)["message"]
    with pytest.raises(openai.APIStatusError) as too_large:
        ask(api, "tiny-vlm", RED + b"\0" * MAX_IMAGE_BYTES)
    assert too_large.value.status_code == 413
    assert error_of(too_large)["param"] == "messages[0].content[1]"
    with pytest.raises(openai.BadRequestError) as too_long:
        ask(api, "tiny-vlm-short", RED, BLUE, RED)
    error = error_of(too_long)
    assert error["code"] == "context_length_exceeded"
    assert f"({3 * IMAGE_SEQ_LEN} of them image tokens)" in error["message"]
    raw = httpx.post(
        f"{url}/api/generate",
        json={
            "model": "tiny-vlm",
            "prompt": "x",
            "raw": True,
            "stream": False,
            "images": [base64.b64encode(RED).decode()],
        },
        timeout=30,
    )
    assert raw.status_code == 400 and "raw prompts cannot carry images" in raw.json()["error"]
    broken = httpx.post(
        f"{url}/api/chat",
        json={"model": "tiny-vlm", "messages": [{"role": "user", "images": ["%%%"]}]},
        timeout=30,
    )
    assert broken.status_code == 400 and "base64" in broken.text
