"""What an uploaded file is, decoding audio to PCM, and encoding PCM for the client.

`sniff` names a file's type from its first bytes (never from the name or the client's
Content-Type). `decode_audio` turns any container PyAV's bundled ffmpeg reads (wav, mp3,
ogg/opus, flac, webm, m4a) at any sample rate into 16 kHz mono s16le, refusing a recording
longer than the limit as soon as that is known: from the container's stated duration
before decoding, else while decoding, so a 2-hour file is never decoded whole. `AudioEncoder`
turns a stream of PCM chunks into wav, pcm, mp3, opus (Ogg) or flac bytes as they come.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import Any

from llmasos.errors import (
    BackendUnavailableError,
    InvalidRequestError,
    PayloadTooLargeError,
    UnsupportedError,
)
from llmasos.perception.interface import SAMPLE_RATE

AUDIO_TYPES = ("audio/wav", "audio/mpeg", "audio/ogg", "audio/flac", "audio/webm", "audio/mp4")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff")
OUTPUT_FORMATS = ("wav", "mp3", "opus", "flac", "pcm")
MEDIA_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
}

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"\x1a\x45\xdf\xa3", "audio/webm"),
    (4, b"ftyp", "audio/mp4"),
)


def sniff(data: bytes) -> str:
    """The media type ``data`` starts like (``application/octet-stream`` when unknown)."""
    if not data:
        return "empty"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for offset, magic, kind in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return kind
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        return "audio/mpeg"  # an MPEG audio frame without an ID3 tag
    head = data[:512]
    if b"\x00" in head:
        return "application/octet-stream"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("["):
        return "application/json"
    if stripped[:5].lower() in ("<!doc", "<html"):
        return "text/html"
    return "text/plain"


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise BackendUnavailableError(
            "decoding audio needs PyAV: pip install 'llmasos[perception]'"
        ) from None
    return av


def decode_audio(data: bytes, *, max_seconds: float) -> bytes:
    """``data`` (an audio file) as 16 kHz mono s16le PCM.

    Raises `InvalidRequestError` naming the detected type for a file that is not audio or
    holds no sound, and `PayloadTooLargeError` for one longer than ``max_seconds``."""
    kind = sniff(data)
    if kind == "empty":
        raise InvalidRequestError("the audio file is empty", param="file")
    if not kind.startswith("audio/") and kind != "application/octet-stream":
        raise InvalidRequestError(
            f"the file is {kind}, not audio (send wav, mp3, ogg/opus, flac or webm)",
            param="file",
        )
    av = _av()
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError) as error:
        raise InvalidRequestError(
            f"the file is not audio that can be decoded ({kind}: {_reason(error)})", param="file"
        ) from None
    with container:
        if not container.streams.audio:
            raise InvalidRequestError(f"the file ({kind}) has no audio stream", param="file")
        stream = container.streams.audio[0]
        if container.duration is not None and container.duration / 1_000_000 > max_seconds:
            _too_long(container.duration / 1_000_000, max_seconds)
        chunks: list[bytes] = []
        size = 0
        limit = int(max_seconds * SAMPLE_RATE * 2)
        try:
            for chunk in pcm_chunks(container, stream):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    _too_long(None, max_seconds)
        except av.error.FFmpegError as error:
            raise InvalidRequestError(
                f"the audio ({kind}) could not be decoded: {_reason(error)}", param="file"
            ) from None
    pcm = b"".join(chunks)
    if len(pcm) < SAMPLE_RATE * 2 // 100:
        raise InvalidRequestError("the recording holds no sound (0 seconds)", param="file")
    return pcm


def pcm_chunks(container: Any, stream: Any) -> Iterator[bytes]:
    """``stream`` of an open PyAV ``container`` as 16 kHz mono s16le, a decoded frame at a
    time (FFmpeg's errors pass through)."""
    resampler = _av().AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            yield bytes(out.to_ndarray().tobytes())
    for out in resampler.resample(None):
        yield bytes(out.to_ndarray().tobytes())


def _too_long(seconds: float | None, max_seconds: float) -> None:
    stated = f"{seconds:.0f} s" if seconds is not None else "longer"
    raise PayloadTooLargeError(
        f"the recording is {stated}; the limit is {max_seconds:.0f} s (LLMASOS_MAX_AUDIO_SECONDS)",
        param="file",
    )


def _reason(error: Exception) -> str:
    return str(getattr(error, "strerror", None) or error).strip() or type(error).__name__


def seconds_of(pcm: bytes, rate: int = SAMPLE_RATE) -> float:
    return len(pcm) / (2 * rate)


def wav_header(rate: int, data_bytes: int | None = None) -> bytes:
    """A 44-byte PCM WAV header; ``None`` marks a stream of unknown length (0xFFFFFFFF)."""
    size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", size)
    )


class _Sink:
    """A write-only (so unseekable) file for PyAV's muxer; `take` empties it."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


_CODECS = {"mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus"), "flac": ("flac", "flac")}


class AudioEncoder:
    """PCM chunks at ``rate`` in, ``response_format`` bytes out, incrementally.

    ``wav`` streams a header of unknown length (as OpenAI's stream does) when
    ``streaming``, else the whole file with exact sizes (`finish` returns it)."""

    def __init__(self, response_format: str, rate: int, *, streaming: bool = True) -> None:
        if response_format not in OUTPUT_FORMATS:
            raise UnsupportedError(
                f"response_format {response_format!r} is not supported "
                f"(one of: {', '.join(OUTPUT_FORMATS)})",
                param="response_format",
            )
        self.format = response_format
        self.rate = rate
        self.streaming = streaming
        self._held: list[bytes] = []
        self._started = False
        self._container: Any = None
        if response_format in _CODECS:
            av = _av()
            container_format, codec = _CODECS[response_format]
            self._sink = _Sink()
            self._container = av.open(self._sink, mode="w", format=container_format)
            self._stream = self._container.add_stream(codec, rate=rate)
            self._stream.layout = "mono"
            self._pts = 0

    def feed(self, pcm: bytes) -> bytes:
        """Encoded bytes ready after ``pcm`` (may be empty while the codec fills a frame)."""
        if self.format == "pcm":
            return pcm
        if self.format == "wav":
            if not self.streaming:
                self._held.append(pcm)
                return b""
            head = b"" if self._started else wav_header(self.rate)
            self._started = True
            return head + pcm
        return self._encode(pcm)

    def finish(self) -> bytes:
        """The bytes that end the file."""
        if self.format == "wav" and not self.streaming:
            data = b"".join(self._held)
            return wav_header(self.rate, len(data)) + data
        if self.format == "wav" and not self._started:
            return wav_header(self.rate, 0)
        if self._container is None:
            return b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()

    def _encode(self, pcm: bytes) -> bytes:
        import numpy as np

        av = _av()
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        if not samples.size:
            return b""
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += samples.shape[1]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """Mono s16le PCM from one sample rate to another (linear interpolation)."""
    if from_rate == to_rate or not pcm:
        return pcm
    import numpy as np

    source = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    count = round(len(source) * to_rate / from_rate)
    positions = np.linspace(0, len(source) - 1, num=count, dtype=np.float64)
    result = np.interp(positions, np.arange(len(source)), source)
    return bytes(np.clip(np.round(result), -32768, 32767).astype("<i2").tobytes())
