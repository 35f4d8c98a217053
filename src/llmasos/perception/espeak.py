"""The embedded voice: Debian's espeak-ng, one process per sentence.

Text is cut into sentences; each is spoken by ``espeak-ng --stdout`` and its 22,050 Hz
WAV is resampled to `VOICE_SAMPLE_RATE`, so the first chunk leaves after the first
sentence, not the whole text. A request's ``voice`` is one of OpenAI's names (``alloy``,
``nova`` ...: espeak-ng voice variants, so clients' defaults work) or any espeak-ng
language voice (``en-gb``, ``cmn``, ``fr``), optionally with a variant (``en-gb+f3``).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator

from llmasos.errors import BackendError, BackendUnavailableError, UnsupportedError
from llmasos.perception.interface import VOICE_SAMPLE_RATE, TextToSpeechInterface, Voice
from llmasos.perception.media import resample

BASE_WORDS_PER_MINUTE = 175
"""espeak-ng's own default rate, which ``speed`` 1.0 keeps."""
OPENAI_VOICES = {
    "alloy": "en-us",
    "ash": "en-us+m2",
    "ballad": "en-gb+m3",
    "cedar": "en-us+m1",
    "coral": "en-us+f2",
    "echo": "en-us+m3",
    "fable": "en-gb-x-rp",
    "marin": "en-us+f1",
    "nova": "en-us+f3",
    "onyx": "en-us+m7",
    "sage": "en-us+f4",
    "shimmer": "en-us+f5",
    "verse": "en-us+m4",
}
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|(?<=[。！？；])|\n+")
_VOICE_NAME = re.compile(r"^[a-z]{2,3}(-[a-z0-9]+)*(\+[a-z0-9]+)?$", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """``text`` cut after each sentence's end mark (Latin and CJK), blanks dropped."""
    return [part.strip() for part in _SENTENCE_END.split(text) if part and part.strip()]


@functools.cache
def _program() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise BackendUnavailableError(
            "speech output needs espeak-ng: apt-get install espeak-ng (make setup does)"
        )
    return path


@functools.cache
def espeak_languages() -> tuple[tuple[str, str], ...]:
    """``(language, description)`` for every language voice espeak-ng has."""
    listing = subprocess.run(
        [_program(), "--voices"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    voices: dict[str, str] = {}
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 4:
            voices.setdefault(fields[1].lower(), fields[3].replace("_", " "))
    return tuple(sorted(voices.items()))


class EspeakEngine(TextToSpeechInterface):
    name = "espeak-ng"

    def voices(self) -> list[Voice]:
        named = [
            Voice(id=name, language=voice.split("+")[0], description=voice, engine=self.name)
            for name, voice in OPENAI_VOICES.items()
        ]
        languages = [
            Voice(id=code, language=code, description=description, engine=self.name)
            for code, description in espeak_languages()
        ]
        return named + languages

    def resolve(self, voice: str) -> str:
        """The espeak-ng voice a request's ``voice`` names; `UnsupportedError` if none."""
        wanted = voice.strip().lower()
        if wanted in OPENAI_VOICES:
            return OPENAI_VOICES[wanted]
        known = {code for code, _ in espeak_languages()}
        if _VOICE_NAME.match(wanted) and wanted.split("+")[0] in known:
            return wanted
        raise UnsupportedError(
            f"unknown voice {voice!r} for espeak-ng: use one of {', '.join(OPENAI_VOICES)} or "
            "a language voice from GET /v1/audio/voices (en-gb, cmn, fr ...)",
            param="voice",
        )

    def synthesize(self, text: str, *, voice: str, speed: float) -> Iterator[bytes]:
        espeak_voice = self.resolve(voice)
        rate = max(80, min(450, round(BASE_WORDS_PER_MINUTE * speed)))
        for sentence in split_sentences(text):
            yield self._speak(sentence, espeak_voice, rate)

    def _speak(self, sentence: str, voice: str, words_per_minute: int) -> bytes:
        result = subprocess.run(
            [_program(), "--stdout", "--stdin", "-v", voice, "-s", str(words_per_minute)],
            input=sentence.encode(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        wav = result.stdout
        at = wav.find(b"data")
        if result.returncode != 0 or wav[:4] != b"RIFF" or at < 0:
            reason = result.stderr.decode(errors="replace").strip() or "no audio"
            raise BackendError(f"espeak-ng failed: {reason}")
        rate = int.from_bytes(wav[24:28], "little")
        pcm = wav[at + 8 :]
        return resample(pcm[: len(pcm) // 2 * 2], rate, VOICE_SAMPLE_RATE)
