"""Audio devices (`llmasos.perception.microphone`), driven through FFmpeg's own inputs and
outputs: ``lavfi:amovie=FILE`` is a microphone that says what the file says, ``wav:PATH`` a
speaker that writes a file. The recording code is the same as for ``alsa:default``."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmasos.errors import InvalidRequestError
from llmasos.perception.interface import SAMPLE_RATE
from llmasos.perception.media import decode_audio, wav_header
from llmasos.perception.microphone import Device, DeviceUnavailableError, play, record
from tests.perception.media_fixtures import espeak_wav, needs_espeak, silent_wav


def _microphone(tmp_path: Path, *recordings: bytes) -> Device:
    """A device that plays ``recordings`` one after another (16 kHz WAVs)."""
    pcm = b"".join(decode_audio(r, max_seconds=60) for r in recordings)
    path = tmp_path / "said.wav"
    path.write_bytes(wav_header(SAMPLE_RATE, len(pcm)) + pcm)
    return Device("lavfi", f"amovie={path}")


@needs_espeak
def test_a_turn_ends_after_the_speaker_pauses(tmp_path: Path) -> None:
    speech = espeak_wav("What is the capital of France?")
    device = _microphone(tmp_path, speech, silent_wav(3.0), speech)
    seen: list[float] = []
    turn = record(device, silence_seconds=1.0, on_audio=seen.append)
    assert turn.heard_speech and turn.ended_by == "silence"
    spoken = len(decode_audio(speech, max_seconds=60)) / (2 * SAMPLE_RATE)
    # it ends 1 s into the quiet (espeak's own tail is quiet too), before the second question
    assert spoken - 0.5 < turn.seconds < spoken + 1.5
    assert seen and seen == sorted(seen)
    assert turn.wav()[:4] == b"RIFF" and len(turn.wav()) == 44 + len(turn.pcm)


def test_silence_is_recorded_up_to_the_limit(tmp_path: Path) -> None:
    turn = record(_microphone(tmp_path, silent_wav(5.0)), max_seconds=2.0)
    assert not turn.heard_speech and turn.ended_by == "limit"
    assert turn.seconds == pytest.approx(2.0)
    short = record(_microphone(tmp_path, silent_wav(0.5)), max_seconds=2.0)
    assert short.ended_by == "end of input" and short.seconds == pytest.approx(0.5, abs=0.05)


@needs_espeak
def test_a_speaker_plays_what_it_is_given(tmp_path: Path) -> None:
    pcm = decode_audio(espeak_wav("Paris."), max_seconds=60)
    out = tmp_path / "answer.wav"
    play(Device("wav", str(out)), pcm, SAMPLE_RATE)
    assert decode_audio(out.read_bytes(), max_seconds=60) == pcm


def test_missing_devices_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeviceUnavailableError, match=r"no microphone: .*alsa:no-such-card"):
        record(Device("alsa", "no-such-card"))
    with pytest.raises(DeviceUnavailableError, match=r"no speaker: .*alsa:no-such-card"):
        play(Device("alsa", "no-such-card"), b"\x00\x00" * 1600, SAMPLE_RATE)
    with pytest.raises(InvalidRequestError, match="FORMAT:NAME"):
        Device.parse("default", setting="microphone")
    assert Device.parse("avfoundation::0", setting="microphone") == Device("avfoundation", ":0")
