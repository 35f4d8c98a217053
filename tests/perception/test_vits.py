"""A transformers VITS voice (MMS-TTS's architecture) gets into the store with ``llmasos
import`` or ``pull`` as a model of kind ``speak``, and `PerceptionService` speaks with it
when a request names it: audio whose length follows the text and the speed, a sentence per
chunk. The voice is the tiny random-weight one of `tiny_vits`."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmasos.cli.root import state
from llmasos.errors import (
    BackendUnavailableError,
    InvalidRequestError,
    ModelFormatError,
    UnsupportedError,
)
from llmasos.kernel.client import InProcessEngineClient
from llmasos.models import builtin
from llmasos.perception.service import PerceptionService
from llmasos.perception.vits import VitsEngine, pieces
from tests.cli.invoke import run as invoke
from tests.perception.media_fixtures import needs_espeak
from tests.perception.tiny_vits import LANGUAGE, build_tiny_vits, samples_for

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def voice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vits(tmp_path_factory.mktemp("tiny-vits") / "model")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(builtin, "package_path", lambda b: None)  # no built-ins: faster
    state.reset()
    yield home
    state.reset()


def run(*args: str) -> str:
    code, out = invoke(*args, stream="output")
    assert code == 0, out
    return out


def kernel() -> InProcessEngineClient:
    """A real in-process kernel on the CLI's settings and store; its lanes run the voices."""
    return InProcessEngineClient(state.settings, state.store)


def speak(service: PerceptionService, text: str, **options: object) -> list[bytes]:
    async def collect() -> list[bytes]:
        chunks = await service.speak(text, tenant="t", **options)  # type: ignore[arg-type]
        return [chunk async for chunk in chunks]

    return asyncio.run(collect())


def test_import_records_a_voice(voice_dir: Path) -> None:
    assert "imported 'tiny-voice:latest'" in run("import", str(voice_dir), "--name", "tiny-voice")
    manifest = json.loads(run("show", "tiny-voice", "--json"))
    assert (manifest["kind"], manifest["family"], manifest["format"]) == (
        "speak",
        "vits",
        "safetensors",
    )
    assert {"vocab.json", "tokenizer_config.json", "model.safetensors"} <= {
        f["path"] for f in manifest["files"]
    }
    assert "safetensors (speak)" in run("show", "tiny-voice")


def test_a_vits_directory_without_its_vocabulary_is_refused(
    voice_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "no-vocab"
    broken.mkdir()
    for path in voice_dir.iterdir():
        if path.name != "vocab.json":
            (broken / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ModelFormatError, match=r"VITS model without its tokenizer's vocab\.json"):
        state.store.import_path(broken, "broken")


def test_pull_of_an_mms_tts_repo(voice_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``llmasos pull facebook/mms-tts-…`` from a hub served on loopback, laid out as Meta's
    MMS-TTS repos are (safetensors and pickled weights, a README): the pickle and the README
    stay behind, and the voice speaks from the store."""
    from tests.models.test_pull import FakeHub, served

    files = {p.name: p.read_bytes() for p in voice_dir.iterdir()}
    repo = {**files, "pytorch_model.bin": b"pickle", "README.md": b"MMS"}
    with served(FakeHub(repos={"facebook/mms-tts-tiny": repo}), monkeypatch):
        assert "pulled 'facebook/mms-tts-tiny:latest'" in run("pull", "facebook/mms-tts-tiny")
    manifest = state.store.manifest("facebook/mms-tts-tiny")
    assert manifest.kind == "speak" and {f.path for f in manifest.files} == set(files)
    service = PerceptionService(kernel(), store=state.store)
    sentence = "Hello world."
    pcm = b"".join(speak(service, sentence, voice="alloy", model="facebook/mms-tts-tiny"))
    assert len(pcm) == 2 * samples_for([sentence])


def test_the_service_speaks_sentence_by_sentence_at_the_speed_asked(voice_dir: Path) -> None:
    state.store.import_path(voice_dir, "tiny-voice")
    service = PerceptionService(kernel(), store=state.store)
    sentences = ["Hello world.", "This is a tiny voice.", "Goodbye!"]
    text = " ".join(sentences)
    chunks = speak(service, text, voice="alloy", model="tiny-voice")
    assert [len(c) for c in chunks] == [2 * samples_for([s]) for s in sentences]
    fast = b"".join(speak(service, text, voice="eng", model="tiny-voice", speed=2.0))
    slow = b"".join(speak(service, text, voice="nova", model="tiny-voice", speed=0.5))
    assert len(fast) == 2 * samples_for(sentences, speed=2.0)
    assert len(slow) == 2 * samples_for(sentences, speed=0.5)
    assert len(slow) > len(b"".join(chunks)) > len(fast)
    # the engine by its name runs the first VITS model in the store
    assert b"".join(speak(service, "Hello world.", voice="alloy", model="vits")) != b""
    # the voice_model setting makes it the default (tts-1)
    configured = PerceptionService(kernel(), store=state.store, voice_model="tiny-voice")
    assert len(b"".join(speak(configured, "Hello.", voice="alloy", model="tts-1"))) == (
        2 * samples_for(["Hello."])
    )


@needs_espeak  # espeak-ng's voices are listed too
def test_voices_and_errors(voice_dir: Path) -> None:
    state.store.import_path(voice_dir, "tiny-voice")
    service = PerceptionService(kernel(), store=state.store)
    (voice,) = service.voices("tiny-voice")
    assert (voice.id, voice.language, voice.engine) == (LANGUAGE, LANGUAGE, "tiny-voice:latest")
    assert voice in service.voices(None)  # beside espeak-ng's, which come first
    with pytest.raises(UnsupportedError, match="a VITS model has one voice, 'eng'"):
        speak(service, "Hello.", voice="en-gb", model="tiny-voice")
    with pytest.raises(InvalidRequestError, match="nothing to speak") as nothing:
        speak(service, "123 456.", voice="alloy", model="tiny-voice")
    assert nothing.value.param == "input"
    with pytest.raises(InvalidRequestError, match="tiny-voice:latest is a speak model, not a spe"):
        asyncio.run(service.transcribe(b"", tenant="t", model="tiny-voice"))
    with pytest.raises(InvalidRequestError, match=r"unknown voice model 'nope' .*tiny-voice"):
        speak(service, "Hello.", voice="alloy", model="nope")


def test_long_sentences_are_spoken_in_pieces() -> None:
    words = " ".join(["word"] * 200)  # 999 characters, no sentence end
    cut = pieces(f"Short one. {words}", limit=400)
    assert cut[0] == "Short one." and all(len(p) <= 400 for p in cut)
    assert " ".join(cut[1:]) == words
    assert pieces("x" * 900, limit=400) == ["x" * 400, "x" * 400, "x" * 100]


def test_a_model_that_reads_phonemes_needs_phonemizer(voice_dir: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("phonemizer") is not None:
        pytest.skip("phonemizer is installed: the model would load")
    phonemes = tmp_path / "phonemes"
    phonemes.mkdir()
    for path in voice_dir.iterdir():
        (phonemes / path.name).write_bytes(path.read_bytes())
    config_path = phonemes / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["phonemize"] = True
    config_path.write_text(json.dumps(config), encoding="utf-8")
    engine = VitsEngine(phonemes, "phonemes")
    with pytest.raises(BackendUnavailableError, match=r"reads phonemes.*pip install phonemizer"):
        next(engine.synthesize("Hello.", voice="alloy", speed=1.0))


def test_text_system_calls_refuse_a_voice_by_name(voice_dir: Path) -> None:
    from llmasos.kernel.client import InProcessEngineClient
    from llmasos.kernel.interface import GenerateRequest

    state.store.import_path(voice_dir, "tiny-voice")
    engine = InProcessEngineClient(state.settings, state.store)

    async def refused() -> None:
        try:
            with pytest.raises(UnsupportedError, match="tiny-voice:latest is a text-to-speech"):
                async for _ in engine.generate(GenerateRequest(model="tiny-voice", prompt="hi")):
                    pass
            with pytest.raises(UnsupportedError, match=r"text-to-speech model .* cannot embed"):
                await engine.embed("tiny-voice", ["hi"])
            with pytest.raises(UnsupportedError, match="the kernel does not load it"):
                await engine.load("tiny-voice")
        finally:
            await engine.close()

    asyncio.run(refused())
