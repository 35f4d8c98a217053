"""The embedded recognizer: CMU pocketsphinx with the US English models its wheel ships.

The recording is split at pauses by pocketsphinx's voice-activity segmenter; each stretch
of speech is decoded as one utterance and becomes a `Segment` with its time span, words
and mean log-probability. A decoder takes most of a second to load, so decoders are kept
in a pool and reused (one per concurrent job). ``prompt`` cannot steer an n-gram decoder
and is ignored; so is ``temperature`` (decoding is deterministic). It recognizes English only,
so a translation is a transcription of English speech.
"""

from __future__ import annotations

import io
import math
import queue
from typing import Any

from llmasos.errors import BackendUnavailableError
from llmasos.perception.interface import (
    SAMPLE_RATE,
    Segment,
    SpeechToTextInterface,
    Transcript,
    Word,
)

FRAMES_PER_SECOND = 100
_FILLERS = ("<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "++", "+")


def _word(token: str) -> str:
    """``don't(2)`` (an alternate pronunciation) as ``don't``."""
    return token.split("(", 1)[0]


class PocketSphinxEngine(SpeechToTextInterface):
    name = "pocketsphinx"

    def __init__(self) -> None:
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def languages(self) -> list[str]:
        return ["en"]

    def _decoder(self) -> Any:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise BackendUnavailableError(
                "speech recognition needs pocketsphinx: pip install 'llmasos[perception]'"
            ) from None
        return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")

    def transcribe(
        self, pcm: bytes, *, language: str | None, prompt: str | None, task: str = "transcribe"
    ) -> Transcript:
        language = self.check_language(language, task=task)
        from pocketsphinx import Segmenter

        decoder = self._decoder()
        try:
            segments = [
                segment
                for index, speech in enumerate(
                    Segmenter(sample_rate=SAMPLE_RATE).segment(io.BytesIO(pcm))
                )
                if (segment := self._utterance(decoder, index, speech)) is not None
            ]
        finally:
            self._pool.put(decoder)
        segments = [
            Segment(i, s.start, s.end, s.text, s.avg_logprob, s.words)
            for i, s in enumerate(segments)
        ]
        return Transcript(
            text=" ".join(s.text for s in segments),
            language=language,
            duration=len(pcm) / (2 * SAMPLE_RATE),
            segments=tuple(segments),
            engine=self.name,
        )

    @staticmethod
    def _utterance(decoder: Any, index: int, speech: Any) -> Segment | None:
        decoder.start_utt()
        decoder.process_raw(speech.pcm, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        if hypothesis is None or not hypothesis.hypstr.strip():
            return None
        start = float(speech.start_time)
        words = tuple(
            Word(
                _word(s.word),
                round(start + s.start_frame / FRAMES_PER_SECOND, 2),
                round(start + (s.end_frame + 1) / FRAMES_PER_SECOND, 2),
            )
            for s in decoder.seg()
            if s.word not in _FILLERS and not s.word.startswith("[")
        )
        frames = max(1, decoder.n_frames())
        probability = float(hypothesis.prob)  # the utterance's posterior, already a probability
        avg_logprob = math.log(probability) / frames if probability > 0 else 0.0
        return Segment(
            id=index,
            start=round(start, 2),
            end=round(float(speech.end_time), 2),
            text=" ".join(w.text for w in words),
            avg_logprob=round(avg_logprob, 4),
            words=words,
        )
