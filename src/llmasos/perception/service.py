"""`PerceptionService`: what faces call for speech and OCR, engines and fairness included.

It picks the engine a request names through the plugin registry (an OpenAI model name
such as ``whisper-1`` or ``tts-1`` means the default engine of its kind; an engine's own
name picks that engine; anything else is refused listing the engines), keeps one
instance per engine, and runs every CPU-bound step through the `FairJobQueue` on behalf
of the request's tenant. Faces never touch an engine directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from llmasos.errors import InvalidRequestError
from llmasos.perception.interface import (
    OcrInterface,
    OcrResult,
    SpeechToTextInterface,
    TextToSpeechInterface,
    Transcript,
    Voice,
)
from llmasos.perception.jobs import FairJobQueue
from llmasos.perception.media import decode_audio
from llmasos.plugins import get_registry

OPENAI_MODELS = {
    "speech": ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"),
    "voice": ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"),
    "ocr": (),
}
MAX_SPEECH_INPUT = 4096
"""Characters of ``input`` /v1/audio/speech takes, as OpenAI's endpoint does."""


@dataclass(frozen=True)
class PerceptionLimits:
    max_audio_seconds: float = 1800.0
    workers: int = 1
    max_waiting: int = 64


class PerceptionService:
    def __init__(self, limits: PerceptionLimits | None = None) -> None:
        self.limits = limits or PerceptionLimits()
        self.jobs = FairJobQueue(self.limits.workers, self.limits.max_waiting)
        self._engines: dict[tuple[str, str], Any] = {}

    def engine(self, kind: str, model: str | None = None) -> Any:
        """The engine of ``kind`` that ``model`` names (None or an OpenAI name: default)."""
        registry = get_registry()
        names = registry.perception_engine_names(kind)
        wanted = (model or "").strip()
        if not wanted or wanted in OPENAI_MODELS.get(kind, ()):
            name = names[0] if names else None
        elif wanted in names:
            name = wanted
        else:
            accepted = [*names, *OPENAI_MODELS.get(kind, ())]
            raise InvalidRequestError(
                f"unknown {kind} model {wanted!r} (one of: {', '.join(accepted)})",
                param="model",
            )
        engine_class = registry.perception_engine(kind, name)
        key = (kind, engine_class.__name__)
        if key not in self._engines:
            self._engines[key] = engine_class()
        return self._engines[key]

    async def transcribe(
        self,
        audio: bytes,
        *,
        tenant: str,
        model: str | None = None,
        language: str | None = None,
        prompt: str | None = None,
    ) -> Transcript:
        """Decode and recognize an audio file's bytes."""
        engine: SpeechToTextInterface = self.engine("speech", model)
        engine.check_language(language)  # before decoding: a wrong language fails fast
        limit = self.limits.max_audio_seconds
        pcm = await self.jobs.run(tenant, lambda: decode_audio(audio, max_seconds=limit))
        return await self.jobs.run(
            tenant, lambda: engine.transcribe(pcm, language=language, prompt=prompt)
        )

    def voices(self, model: str | None = None) -> list[Voice]:
        engine: TextToSpeechInterface = self.engine("voice", model)
        return engine.voices()

    async def speak(
        self, text: str, *, tenant: str, voice: str, model: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[bytes]:
        """PCM chunks (24 kHz mono s16le) of ``text``, one sentence per job. The first
        chunk is made before this returns, so a bad voice or a failing engine is an error
        the caller can still answer with a status."""
        if not text.strip():
            raise InvalidRequestError("input is empty", param="input")
        if len(text) > MAX_SPEECH_INPUT:
            raise InvalidRequestError(
                f"input is {len(text)} characters; at most {MAX_SPEECH_INPUT}", param="input"
            )
        if not 0.25 <= speed <= 4.0:
            raise InvalidRequestError("speed must be between 0.25 and 4.0", param="speed")
        engine: TextToSpeechInterface = self.engine("voice", model)
        chunks = engine.synthesize(text, voice=voice, speed=speed)
        first = await self.jobs.run(tenant, lambda: next(chunks, None))
        return self._rest(tenant, first, chunks)

    async def _rest(self, tenant: str, first: bytes | None, chunks: Any) -> AsyncIterator[bytes]:
        chunk = first
        while chunk is not None:
            yield chunk
            chunk = await self.jobs.run(tenant, lambda: next(chunks, None))

    async def read_image(
        self, image: bytes, *, tenant: str, language: str | None = None, model: str | None = None
    ) -> OcrResult:
        engine: OcrInterface = self.engine("ocr", model)
        return await self.jobs.run(tenant, lambda: engine.read(image, language=language))
