"""The built-in engines, through the plugin registry: pocketsphinx, espeak-ng, tesseract."""

from __future__ import annotations

import asyncio

import pytest

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, UnsupportedError
from llmasos.kernel.client import InProcessEngineClient
from llmasos.perception.espeak import split_sentences
from llmasos.perception.interface import VOICE_SAMPLE_RATE
from llmasos.perception.service import PerceptionService
from llmasos.plugins import PluginRegistry, get_registry
from tests.perception.media_fixtures import (
    espeak_wav,
    needs_espeak,
    needs_tesseract,
    text_png,
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> PerceptionService:
    """The service over a real in-process kernel, whose job lanes run the engines."""
    settings = Settings(home=tmp_path_factory.mktemp("perception-home"))
    return PerceptionService(InProcessEngineClient(settings))


def test_builtin_engines_are_registered_like_plugins() -> None:
    registry = get_registry()
    assert registry.perception_engine_names("speech")[0] == "pocketsphinx"
    assert registry.perception_engine_names("voice")[0] == "espeak-ng"
    assert registry.perception_engine_names("ocr")[0] == "tesseract"
    with pytest.raises(InvalidRequestError, match="unknown perception kind"):
        PluginRegistry().register_perception_engine("smell", "nose", "x:Y")


def test_models_pick_engines_and_unknown_ones_are_listed(service: PerceptionService) -> None:
    assert service.engine("speech", "whisper-1") is service.engine("speech", "pocketsphinx")
    with pytest.raises(InvalidRequestError, match="pocketsphinx, faster-whisper, whisper-1"):
        service.engine("speech", "whisper-large-v3")


@needs_espeak
def test_pocketsphinx_transcribes_speech_into_timed_segments(service: PerceptionService) -> None:
    wav = espeak_wav("Hello world. The weather is nice today.")
    transcript = asyncio.run(service.transcribe(wav, tenant="t"))
    assert transcript.language == "en" and transcript.engine == "pocketsphinx"
    assert transcript.text.strip() and transcript.segments
    assert abs(transcript.duration - (len(wav) - 44) / (2 * 22050)) < 0.1
    previous_end = 0.0
    for segment in transcript.segments:
        assert previous_end <= segment.start < segment.end <= transcript.duration + 0.05
        assert segment.text == " ".join(w.text for w in segment.words)
        for word in segment.words:
            assert segment.start <= word.start < word.end <= segment.end + 0.05
        previous_end = segment.end
    assert transcript.text == " ".join(s.text for s in transcript.segments)


def test_unsupported_language_is_refused_listing_the_available_ones(
    service: PerceptionService,
) -> None:
    with pytest.raises(UnsupportedError, match=r"'fr' \(available: en\)"):
        asyncio.run(service.transcribe(b"not decoded", tenant="t", language="fr"))


@needs_espeak
def test_espeak_speaks_sentence_by_sentence_in_known_voices(service: PerceptionService) -> None:
    voices = {v.id for v in service.voices()}
    assert {"alloy", "nova", "en-gb", "cmn"} <= voices

    async def speak(text: str, voice: str) -> list[bytes]:
        chunks = await service.speak(text, tenant="t", voice=voice)
        return [chunk async for chunk in chunks]

    chunks = asyncio.run(speak("One sentence. Another one! 第三句。", "alloy"))
    assert len(chunks) == 3 and all(len(c) > VOICE_SAMPLE_RATE // 10 for c in chunks)
    assert asyncio.run(speak("你好，世界。", "cmn"))
    with pytest.raises(UnsupportedError, match="unknown voice 'robot'"):
        asyncio.run(speak("hi", "robot"))
    with pytest.raises(InvalidRequestError, match="speed"):
        asyncio.run(service.speak("hi", tenant="t", voice="alloy", speed=9))
    with pytest.raises(InvalidRequestError, match="empty"):
        asyncio.run(service.speak("  ", tenant="t", voice="alloy"))


def test_sentences_split_after_latin_and_cjk_marks() -> None:
    assert split_sentences("A b. C?\nD 你好。世界！") == ["A b.", "C?", "D 你好。", "世界！"]


@needs_tesseract
def test_tesseract_reads_english_with_boxes_and_confidences(service: PerceptionService) -> None:
    image = text_png(["The quick brown fox", "jumps over the lazy dog"])
    result = asyncio.run(service.read_image(image, tenant="t"))
    assert result.engine == "tesseract" and result.language == "eng"
    words = [w.text for w in result.words]
    assert "quick" in words and "lazy" in words
    assert result.text.splitlines()[0].startswith("The quick")
    assert {w.line for w in result.words} == {0, 1}
    for word in result.words:
        assert 0 <= word.left < result.width and 0 <= word.top < result.height
        assert 0 <= word.confidence <= 100
    assert result.confidence > 50


@needs_tesseract
def test_a_page_photographed_under_uneven_light_is_read_whole(service: PerceptionService) -> None:
    # scikit-image's photographed page (bench/data/scans): its left half is in shadow, which
    # tesseract's one global threshold loses unless the lighting is flattened first
    from importlib import resources

    page = (resources.files("llmasos.bench") / "data/scans/skimage-page.png").read_bytes()
    result = asyncio.run(service.read_image(page, tenant="t"))
    text = " ".join(result.text.split())
    assert "Region-based segmentation Let us first determine markers" in text
    assert "histogram of grey values" in text
    assert (result.width, result.height) == (384, 191)  # boxes in the page's own pixels
    assert all(w.left + w.width <= 384 and w.top + w.height <= 191 for w in result.words)


@needs_tesseract
def test_tesseract_reads_chinese_without_spaces_between_characters(
    service: PerceptionService,
) -> None:
    image = text_png(["今天天气很好，我们去公园散步。"], font_name="wqy-microhei.ttc", size=40)
    result = asyncio.run(service.read_image(image, tenant="t", language="zh"))
    assert result.language == "chi_sim"
    assert " " not in result.text.strip() and "天气" in result.text


@needs_tesseract
def test_ocr_refuses_what_is_not_an_image_and_unknown_languages(
    service: PerceptionService,
) -> None:
    with pytest.raises(InvalidRequestError, match="application/pdf, not an image"):
        asyncio.run(service.read_image(b"%PDF-1.4 ...", tenant="t"))
    with pytest.raises(UnsupportedError, match="available: chi_sim, eng"):
        asyncio.run(service.read_image(text_png(["x"]), tenant="t", language="klingon"))
