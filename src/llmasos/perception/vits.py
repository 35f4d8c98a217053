"""Neural voices: transformers' VITS on a model from the store (Meta's MMS-TTS and others).

A VITS model is a store model of kind ``speak`` and family ``vits`` (``llmasos pull
facebook/mms-tts-eng``, or ``llmasos import DIR`` of a transformers VITS directory).
`PerceptionService` builds one engine per model with its directory; the weights and the
tokenizer load on the first job (in the job's thread, never on the event loop) and stay
loaded. Text is cut into sentences as espeak-ng's is, and each sentence is one forward pass:
the first chunk leaves after the first sentence. The model speaks at its own sampling rate
(16 kHz for MMS-TTS), resampled to `VOICE_SAMPLE_RATE`; ``speed`` is VITS's
``speaking_rate`` (its predicted durations are divided by it).

A VITS model has one voice: it is listed under the language its tokenizer names (``eng``)
and a request may name it so or by any of OpenAI's voice names, so clients' defaults work.
Speech is sampled (VITS draws noise for the spectrogram, and MMS-TTS for the durations too),
so two requests for the same text sound alike but are not the same bytes.
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmasos.errors import BackendUnavailableError, InvalidRequestError, UnsupportedError
from llmasos.perception.espeak import OPENAI_VOICES, split_sentences
from llmasos.perception.interface import VOICE_SAMPLE_RATE, TextToSpeechInterface, Voice
from llmasos.perception.media import resample

ENGINE = "vits"
MAX_PIECE_CHARACTERS = 400
"""A sentence longer than this is spoken in pieces cut at spaces: one forward pass holds
memory in proportion to its text, and a job should not hold the worker for long."""
UNKNOWN_LANGUAGE = "default"
"""The voice's id when the tokenizer names no language."""
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _torch_and_transformers() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError:
        raise BackendUnavailableError(
            "VITS voices need torch and transformers: pip install 'llmasos[transformers]'"
        ) from None
    return torch, transformers


def pieces(text: str, limit: int = MAX_PIECE_CHARACTERS) -> list[str]:
    """``text`` as sentences, any sentence over ``limit`` characters cut at its last space
    before the limit (or at the limit, for a run with no space)."""
    result: list[str] = []
    for sentence in split_sentences(text):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit + 1)
            cut = cut if cut > 0 else limit
            result.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            result.append(sentence)
    return result


class VitsEngine(TextToSpeechInterface):
    """One VITS model of the store, run by transformers on the CPU."""

    model_format = "safetensors"
    """`PerceptionService` gives engines with a ``model_format`` a store model of that format
    (and, with a ``model_family``, of that family: transformers text models are safetensors too)."""
    model_family = "vits"

    def __init__(self, path: Path, model: str) -> None:
        self.path = Path(path)
        self.name = model
        config = self._json("tokenizer_config.json")
        language = config.get("language")
        self.language = language if isinstance(language, str) and language else UNKNOWN_LANGUAGE
        self.romanizes = bool(config.get("is_uroman"))
        self.phonemizes = bool(config.get("phonemize", True))  # VitsTokenizer's default
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _json(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.path / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def voices(self) -> list[Voice]:
        return [
            Voice(
                id=self.language,
                language=self.language,
                description=f"the voice of {self.name} (VITS); OpenAI's voice names "
                f"({', '.join(OPENAI_VOICES)}) speak with it too",
                engine=self.name,
            )
        ]

    def check_voice(self, voice: str) -> None:
        wanted = voice.strip().lower()
        if wanted != self.language.lower() and wanted not in OPENAI_VOICES:
            raise UnsupportedError(
                f"unknown voice {voice!r} for {self.name}: a VITS model has one voice, "
                f"{self.language!r}; OpenAI's names ({', '.join(OPENAI_VOICES)}) speak with it",
                param="voice",
            )

    def _loaded(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                _, transformers = _torch_and_transformers()
                if self.phonemizes and importlib.util.find_spec("phonemizer") is None:
                    raise BackendUnavailableError(
                        f"{self.name} reads phonemes, not letters: pip install phonemizer "
                        "(it runs espeak-ng) to use it"
                    )
                self._tokenizer = transformers.VitsTokenizer.from_pretrained(
                    str(self.path), local_files_only=True
                )
                self._model = transformers.VitsModel.from_pretrained(
                    str(self.path), local_files_only=True
                ).eval()
            return self._model, self._tokenizer

    def synthesize(self, text: str, *, voice: str, speed: float) -> Iterator[bytes]:
        self.check_voice(voice)
        if self.romanizes and _NON_ASCII.search(text) and not importlib.util.find_spec("uroman"):
            raise UnsupportedError(
                f"{self.name} speaks romanized text (its tokenizer says is_uroman): "
                "write the input in Latin letters, or pip install uroman to romanize it",
                param="input",
            )
        spoken = False
        for piece in pieces(text):
            pcm = self._speak(piece, speed)
            if pcm:
                spoken = True
                yield pcm
        if not spoken:
            raise InvalidRequestError(
                f"{self.name} found nothing to speak in the input: none of its characters is "
                "in the model's alphabet (a VITS model reads its own language's letters)",
                param="input",
            )

    def _speak(self, text: str, speed: float) -> bytes:
        """One piece as 24 kHz PCM; empty when none of its characters is in the vocabulary."""
        torch, _ = _torch_and_transformers()
        model, tokenizer = self._loaded()
        prepared, _ = tokenizer.prepare_for_tokenization(text)
        if not prepared.strip():
            return b""
        inputs = tokenizer(text, return_tensors="pt")
        # a multi-speaker checkpoint speaks as its first speaker: one voice per model
        speaker = 0 if model.config.num_speakers > 1 else None
        with torch.inference_mode():
            waveform = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                speaker_id=speaker,
                speaking_rate=speed,
            ).waveform[0]
        samples = (waveform.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16)
        pcm = samples.numpy().astype("<i2").tobytes()
        return resample(pcm, int(model.config.sampling_rate), VOICE_SAMPLE_RATE)
