"""`LLM` and `pipeline` in-process (no server), and `LLM` over a server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import llmasos
from llmasos.errors import ModelNotFoundError
from llmasos.sdk.local import LocalKernel
from tests.sdk.conftest import Served, free_port

pytestmark = pytest.mark.model


@pytest.fixture
def no_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LLMASOS_HOME", str(tmp_path))
    monkeypatch.setenv("LLMASOS_THREADS", "2")
    monkeypatch.setenv("LLMASOS_BASE_URL", f"http://127.0.0.1:{free_port()}")
    yield tmp_path
    for kernel in list(LocalKernel._shared.values()):
        kernel.close()


def test_llm_in_process_answers_paris(no_server: Path) -> None:
    model = llmasos.LLM.from_pretrained("smollm2")
    assert model.is_local
    answer = model.generate_text("What is the capital of France?", max_length=20, temperature=0)
    assert "Paris" in answer
    pieces = list(model.stream("Say hi", max_length=4))
    assert pieces and len(pieces) <= 4
    assert len(model.embed("hello", model="all-minilm")[0]) == 384


def test_llm_works_inside_a_running_event_loop(no_server: Path) -> None:
    async def handler() -> str:
        model = llmasos.LLM.from_pretrained("smollm2")
        return model.chat([{"role": "user", "content": "Say hi"}], max_length=4)

    assert asyncio.run(handler()).strip()


def test_local_gguf_path_is_imported(no_server: Path) -> None:
    source = LocalKernel.shared().store.resolve("smollm2").path
    link = no_server / "tiny-chat.gguf"
    link.symlink_to(source)
    model = llmasos.LLM.from_pretrained(str(link))
    assert model.name.startswith("tiny-chat")
    assert model.generate_text("Say hi", max_length=3).strip()
    with pytest.raises(ModelNotFoundError):
        llmasos.LLM.from_pretrained(str(no_server / "missing.gguf"))


def test_pipelines_have_transformers_shapes(no_server: Path) -> None:
    classifier = llmasos.pipeline("text-classification", model="smollm2")
    result = classifier(
        "The match ended 3-1 after extra time.", candidate_labels=["sports", "food"]
    )
    assert set(result) == {"sequence", "labels", "scores"}
    assert sorted(result["labels"]) == ["food", "sports"]
    assert sum(result["scores"]) == pytest.approx(1, abs=1e-3)  # calibrated probabilities
    assert result["scores"] == sorted(result["scores"], reverse=True)
    generator = llmasos.pipeline("text-generation", model="smollm2")
    generated = generator("Say hi", max_new_tokens=4, return_full_text=False)
    assert list(generated[0]) == ["generated_text"]
    features = llmasos.pipeline("feature-extraction", model="all-minilm")
    assert len(features("hello")[0]) == 384


def test_llm_over_a_server(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMASOS_HOME", str(served.home))
    with llmasos.LLM.from_pretrained("smollm2", base_url=served.url) as model:
        assert not model.is_local
        answer = model.generate_text("What is the capital of France?", max_length=20, temperature=0)
        assert "Paris" in answer
        assert model.call("sentiment", "What a wonderful day!").output in (
            "positive",
            "negative",
            "neutral",
        )
