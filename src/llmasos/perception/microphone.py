"""Audio devices: record a spoken turn from a microphone, play an answer on a speaker.

A device is named ``FORMAT:NAME`` in FFmpeg's device terms, opened through PyAV (the same
FFmpeg that decodes uploads): ``alsa:default`` (the setting's default on Linux),
``pulse:default``, ``avfoundation::0`` on macOS, ``dshow:audio=Microphone`` on Windows.
FFmpeg's other inputs plug in the same way, which is how the tests drive it without a sound
card: ``lavfi:amovie=question.wav`` is a "microphone" that says what the file says.

`record` reads the device as 16 kHz mono PCM and stops at whichever comes first: the speaker
has been quiet for ``silence_seconds`` after speaking (an energy threshold over 30 ms
windows, the simplest voice-activity detector that works for one close microphone), the
``max_seconds`` limit, the end of the input, or Ctrl-C (what was heard is kept). `play`
writes PCM to an output device (``alsa:default``) or, for ``wav:PATH``, to a file.
A device that cannot be opened is one `DeviceUnavailableError` naming it and FFmpeg's reason.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmasos.errors import BackendUnavailableError, InvalidRequestError
from llmasos.perception.interface import SAMPLE_RATE
from llmasos.perception.media import _av, _reason, pcm_chunks, wav_header

WINDOW_SECONDS = 0.03
"""The voice-activity detector's window."""
SPEECH_LEVEL = 0.02
"""RMS level (of full scale) above which a window counts as speech."""
MIN_SPEECH_SECONDS = 0.15
"""Speech must last this long before trailing silence can end the recording."""


class DeviceUnavailableError(BackendUnavailableError):
    """An audio device that does not exist here or cannot be opened."""


@dataclass(frozen=True)
class Device:
    """``FORMAT:NAME``: an FFmpeg device (or input) format and what it opens."""

    format: str
    name: str

    @classmethod
    def parse(cls, spec: str, *, setting: str) -> Device:
        fmt, sep, name = spec.partition(":")
        if not sep or not fmt or not name:
            raise InvalidRequestError(
                f"an audio device is FORMAT:NAME (alsa:default, pulse:default), not {spec!r} "
                f"(the {setting} setting)"
            )
        return cls(fmt, name)

    def __str__(self) -> str:
        return f"{self.format}:{self.name}"


@dataclass
class Recording:
    pcm: bytes
    """16 kHz mono s16le."""
    heard_speech: bool
    ended_by: str
    """silence, limit, end of input or interrupted."""

    @property
    def seconds(self) -> float:
        return len(self.pcm) / (2 * SAMPLE_RATE)

    def wav(self) -> bytes:
        return wav_header(SAMPLE_RATE, len(self.pcm)) + self.pcm


class _Detector:
    """Speech, then ``silence_seconds`` of quiet: the end of a turn."""

    def __init__(self, silence_seconds: float) -> None:
        self.window = int(SAMPLE_RATE * WINDOW_SECONDS)
        self.pending = array.array("h")
        self.speech = 0
        self.quiet = 0
        self.silence_windows = max(1, round(silence_seconds / WINDOW_SECONDS))
        self.min_speech = max(1, round(MIN_SPEECH_SECONDS / WINDOW_SECONDS))

    @property
    def heard(self) -> bool:
        return self.speech >= self.min_speech

    def add(self, pcm: bytes) -> bool:
        """Feed samples; True once the turn has ended."""
        self.pending.frombytes(pcm)
        while len(self.pending) >= self.window:
            window = self.pending[: self.window]
            del self.pending[: self.window]
            level = math.sqrt(sum(s * s for s in window) / len(window)) / 32768
            if level >= SPEECH_LEVEL:
                self.speech += 1
                self.quiet = 0
            elif self.heard:
                self.quiet += 1
                if self.quiet >= self.silence_windows:
                    return True
        return False


def _open(device: Device, mode: str, **options: Any) -> Any:
    av = _av()
    try:
        return av.open(device.name, mode=mode, format=device.format, **options)
    except (av.error.FFmpegError, ValueError, OSError) as error:
        kind = "microphone" if mode == "r" else "speaker"
        raise DeviceUnavailableError(
            f"no {kind}: FFmpeg could not open {device} ({_reason(error)}); name another "
            f"device as FORMAT:NAME with the {kind} setting (LLMASOS_{kind.upper()})"
        ) from None


def record(
    device: Device,
    *,
    max_seconds: float = 60.0,
    silence_seconds: float = 1.5,
    on_audio: Callable[[float], None] | None = None,
) -> Recording:
    """One spoken turn from ``device`` (see the module docstring for when it stops);
    ``on_audio`` gets the seconds recorded so far, for a progress display."""
    av = _av()
    container = _open(device, "r")
    chunks: list[bytes] = []
    size = 0
    limit = int(max_seconds * SAMPLE_RATE) * 2
    detector = _Detector(silence_seconds)
    ended_by = "end of input"
    try:
        with container:
            if not container.streams.audio:
                raise DeviceUnavailableError(f"{device} has no audio input")
            try:
                for chunk in pcm_chunks(container, container.streams.audio[0]):
                    chunks.append(chunk)
                    size += len(chunk)
                    if on_audio is not None:
                        on_audio(size / (2 * SAMPLE_RATE))
                    if detector.add(chunk):
                        ended_by = "silence"
                        break
                    if size >= limit:
                        ended_by = "limit"
                        break
            except av.error.FFmpegError as error:
                raise DeviceUnavailableError(
                    f"recording from {device} failed: {_reason(error)}"
                ) from None
    except KeyboardInterrupt:
        ended_by = "interrupted"
    pcm = b"".join(chunks)[:limit]
    return Recording(pcm=pcm, heard_speech=detector.heard, ended_by=ended_by)


def play(device: Device, pcm: bytes, rate: int) -> None:
    """Mono s16le ``pcm`` at ``rate`` to ``device``: a speaker, or ``wav:PATH`` (a file)."""
    av = _av()
    container = _open(device, "w")
    try:
        with container:
            stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
            frame.planes[0].update(pcm[: len(pcm) // 2 * 2])
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    except av.error.FFmpegError as error:
        raise DeviceUnavailableError(
            f"no speaker: FFmpeg could not play on {device} ({_reason(error)}); name another "
            "device as FORMAT:NAME with the speaker setting (LLMASOS_SPEAKER)"
        ) from None
