"""What a speech, voice or OCR engine is, and the typed results it returns.

An engine is a class registered under a kind (``speech``, ``voice``, ``ocr``) and a name.
Engines are synchronous and CPU-bound: `PerceptionService` runs them as kernel jobs (the
kernel's job lanes) so they never block the server's event loop and tenants share the CPU
fairly. Engines
raise `llmasos.errors` exceptions (`UnsupportedError` for a language or voice they lack,
naming the ones they have; `BackendUnavailableError` when their program is not installed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

from llmasos.errors import UnsupportedError

SAMPLE_RATE = 16_000
"""Recognizers receive 16 kHz mono signed 16-bit little-endian PCM."""
VOICE_SAMPLE_RATE = 24_000
"""Synthesized speech leaves at 24 kHz mono s16le (OpenAI's ``pcm`` format)."""


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    """Seconds from the start of the recording."""


@dataclass(frozen=True)
class Segment:
    """One stretch of speech between pauses, as the transcript's segments show it."""

    id: int
    start: float
    end: float
    text: str
    avg_logprob: float = 0.0
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration: float
    """Seconds of audio that were recognized."""
    segments: tuple[Segment, ...] = ()
    engine: str = ""


class SpeechToTextInterface(ABC):
    """Turns 16 kHz mono PCM into text."""

    name: str = ""
    translates: bool = False
    """Whether the engine turns speech in another language into English text (task
    ``translate``). One that does not can still "translate" English speech: it recognizes it."""

    @abstractmethod
    def languages(self) -> list[str]:
        """ISO-639-1 codes this engine recognizes (``en``)."""

    def check_language(self, language: str | None, *, task: str = "transcribe") -> str:
        """The language code to recognize ``language`` as (None: the engine's first);
        `UnsupportedError` listing the available ones when the engine lacks it."""
        available = self.languages()
        code = (language or available[0]).strip().lower().replace("_", "-").split("-")[0]
        if code not in available:
            cannot = " and cannot translate" if task == "translate" and not self.translates else ""
            raise UnsupportedError(
                f"{self.name} does not recognize {language!r}{cannot} "
                f"(available: {', '.join(available)})",
                param="language",
            )
        return code

    @abstractmethod
    def transcribe(
        self, pcm: bytes, *, language: str | None, prompt: str | None, task: str = "transcribe"
    ) -> Transcript:
        """Recognize ``pcm`` (`SAMPLE_RATE`, mono, s16le). ``language`` None means the
        engine's default; one it lacks raises `UnsupportedError` listing `languages()`.
        ``task`` ``translate`` gives English text where the engine `translates`."""


@dataclass(frozen=True)
class Voice:
    id: str
    """What a request's ``voice`` names (``alloy``, ``en-gb``, ``cmn``)."""
    language: str
    description: str = ""
    engine: str = ""


class TextToSpeechInterface(ABC):
    """Turns text into `VOICE_SAMPLE_RATE` mono PCM, a chunk at a time."""

    name: str = ""

    @abstractmethod
    def voices(self) -> list[Voice]:
        """The voices a request may name."""

    @abstractmethod
    def synthesize(self, text: str, *, voice: str, speed: float) -> Iterator[bytes]:
        """PCM chunks of ``text`` spoken by ``voice`` (an id from `voices()`; an unknown
        one raises `UnsupportedError`) at ``speed`` (1.0 is normal, 0.25 to 4.0). The
        first chunk comes as soon as the first sentence is spoken."""


@dataclass(frozen=True)
class OcrWord:
    text: str
    left: int
    top: int
    width: int
    height: int
    confidence: float
    """0 to 100, as tesseract reports it."""
    line: int = 0
    """Index of the line the word is on, counted over the whole page."""


@dataclass(frozen=True)
class OcrResult:
    text: str
    language: str
    width: int
    height: int
    words: tuple[OcrWord, ...] = field(default_factory=tuple)
    engine: str = ""

    @property
    def confidence(self) -> float:
        """Mean word confidence (0 to 100); 0 when no word was read."""
        if not self.words:
            return 0.0
        return sum(w.confidence for w in self.words) / len(self.words)


class OcrInterface(ABC):
    """Reads the printed text of an image."""

    name: str = ""

    @abstractmethod
    def languages(self) -> list[str]:
        """Language codes this engine reads (tesseract's: ``eng``, ``chi_sim``)."""

    @abstractmethod
    def read(self, image: bytes, *, language: str | None) -> OcrResult:
        """The text, word boxes and confidences of an image file's bytes (PNG, JPEG ...)."""
