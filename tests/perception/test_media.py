"""Sniffing, decoding (every container, any rate, the limits) and encoding of audio."""

from __future__ import annotations

import time

import pytest

from llmasos.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedError
from llmasos.perception.interface import SAMPLE_RATE
from llmasos.perception.media import AudioEncoder, decode_audio, resample, sniff
from tests.perception.media_fixtures import (
    espeak_wav,
    flac_claiming,
    needs_espeak,
    reencode,
    silent_wav,
    text_png,
)


def test_sniff_names_what_files_are() -> None:
    assert sniff(b"") == "empty"
    assert sniff(b"%PDF-1.7 ...") == "application/pdf"
    assert sniff(b"hello, this is a note") == "text/plain"
    assert sniff(b'{"a": 1}') == "application/json"
    assert sniff(b"PK\x03\x04rest") == "application/zip"
    assert sniff(text_png(["x"])) == "image/png"
    assert sniff(b"OggS\x00\x02") == "audio/ogg"
    assert sniff(b"\x00\x01\x02\x03" * 10) == "application/octet-stream"


@needs_espeak
@pytest.mark.parametrize(
    ("container", "codec", "rate", "kind"),
    [
        ("wav", "pcm_s16le", 8000, "audio/wav"),
        ("wav", "pcm_s16le", 44100, "audio/wav"),
        ("mp3", "libmp3lame", 22050, "audio/mpeg"),
        ("ogg", "libopus", 48000, "audio/ogg"),
        ("flac", "flac", 32000, "audio/flac"),
        ("webm", "libopus", 48000, "audio/webm"),
    ],
)
def test_every_container_decodes_to_16k_mono_of_the_same_length(
    container: str, codec: str, rate: int, kind: str
) -> None:
    wav = espeak_wav()
    seconds = (len(wav) - 44) / (2 * 22050)
    data = reencode(wav, container, codec, rate)
    assert sniff(data) == kind
    pcm = decode_audio(data, max_seconds=60)
    assert len(pcm) % 2 == 0
    assert abs(len(pcm) / (2 * SAMPLE_RATE) - seconds) < 0.15  # codec padding only


def test_not_audio_is_refused_naming_its_type() -> None:
    with pytest.raises(InvalidRequestError, match="image/png, not audio"):
        decode_audio(text_png(["hello"]), max_seconds=60)
    with pytest.raises(InvalidRequestError, match="text/plain, not audio"):
        decode_audio(b"just some words in a text file", max_seconds=60)
    with pytest.raises(InvalidRequestError, match="not audio that can be decoded"):
        decode_audio(b"\x00\x01\x02\x03" * 100, max_seconds=60)


def test_empty_and_silent_recordings_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="empty"):
        decode_audio(b"", max_seconds=60)
    with pytest.raises(InvalidRequestError, match="0 seconds"):
        decode_audio(silent_wav(0), max_seconds=60)


def test_a_long_recording_is_refused_before_it_is_decoded() -> None:
    started = time.perf_counter()
    with pytest.raises(PayloadTooLargeError, match="7200 s; the limit is 1800 s") as caught:
        decode_audio(flac_claiming(2 * 3600), max_seconds=1800)
    assert caught.value.status_code == 413
    assert time.perf_counter() - started < 5  # structural: nothing 2 hours long was decoded


@needs_espeak
def test_a_recording_without_a_stated_duration_stops_decoding_at_the_limit() -> None:
    ogg = reencode(espeak_wav(), "ogg", "libopus", 48000)  # Ogg states no duration up front
    with pytest.raises(PayloadTooLargeError, match="the limit is 1 s"):
        decode_audio(ogg, max_seconds=1)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "flac", "pcm"])
def test_encoder_output_decodes_back_to_the_same_length(fmt: str) -> None:
    import numpy as np

    rate = 24000
    tone = (np.sin(np.arange(rate) * 2 * np.pi * 440 / rate) * 8000).astype("<i2").tobytes()
    encoder = AudioEncoder(fmt, rate, streaming=False)
    data = b"".join([encoder.feed(tone[:20000]), encoder.feed(tone[20000:]), encoder.finish()])
    if fmt == "pcm":
        assert data == tone
        return
    pcm = decode_audio(data, max_seconds=10)
    assert abs(len(pcm) / (2 * SAMPLE_RATE) - 1.0) < 0.1


def test_streaming_wav_has_an_open_ended_header_and_unknown_formats_are_named() -> None:
    encoder = AudioEncoder("wav", 24000, streaming=True)
    first = encoder.feed(b"\x00\x00" * 100)
    assert first[:4] == b"RIFF" and first[40:44] == b"\xff\xff\xff\xff"
    assert encoder.feed(b"\x00\x00") == b"\x00\x00"
    with pytest.raises(UnsupportedError, match="wav, mp3, opus, flac, pcm"):
        AudioEncoder("aiff", 24000)


def test_resample_keeps_duration() -> None:
    pcm = b"\x10\x00" * 22050
    assert len(resample(pcm, 22050, 24000)) == 2 * 24000
