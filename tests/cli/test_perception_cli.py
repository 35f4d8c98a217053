"""``llmasos say``, ``listen``, ``ocr`` and ``run MODEL --voice`` / ``--mic`` (spoken turns).

The microphone and speaker are FFmpeg devices named by settings: here ``lavfi:amovie=FILE``
(a microphone that says what the file says) and ``wav:PATH`` (a speaker that writes a file),
through the same code as ``alsa:default``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmasos.cli.main import app, main
from llmasos.cli.root import state
from llmasos.net import free_port
from llmasos.perception.media import sniff
from tests.perception.media_fixtures import (
    espeak_wav,
    needs_espeak,
    needs_tesseract,
    needs_whisper,
    text_png,
)

runner = CliRunner()
pytestmark = [needs_espeak, needs_tesseract]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("LLMASOS_PORT", str(free_port()))  # no server answers: in-process
    monkeypatch.setenv("COLUMNS", "100")
    state.reset()
    yield home
    state.reset()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def test_say_then_listen_round_trips_through_files(tmp_path: Path) -> None:
    out = tmp_path / "hello.mp3"
    code, stdout = invoke("say", "Hello world. Good morning.", "--out", str(out))
    assert code == 0 and "wrote" in stdout
    assert sniff(out.read_bytes()) == "audio/mpeg"
    code, stdout = invoke("listen", str(out))
    assert code == 0 and stdout.strip()
    code, stdout = invoke("listen", str(out), "--model", "pocketsphinx", "--format", "json")
    transcript = json.loads(stdout)
    assert transcript["engine"] == "pocketsphinx" and transcript["segments"]
    code, stdout = invoke("listen", str(out), "--format", "srt")
    assert code == 0 and " --> " in stdout


@needs_whisper
def test_listen_uses_whisper_where_installed(tmp_path: Path) -> None:
    out = tmp_path / "weather.wav"
    out.write_bytes(espeak_wav())  # "Hello world. The weather is nice today."
    code, stdout = invoke("listen", str(out), "--format", "json")
    transcript = json.loads(stdout)
    assert code == 0 and transcript["engine"] == "faster-whisper:whisper:tiny.en"
    assert "today" in transcript["text"].lower() and transcript["segments"][0]["words"]


def test_say_writes_wav_to_a_pipe() -> None:
    result = runner.invoke(app, ["say", "Hi there.", "--voice", "en-gb"])
    assert result.exit_code == 0
    assert result.stdout_bytes[:4] == b"RIFF"


def test_say_speaks_with_a_vits_voice_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")
    from tests.perception.tiny_vits import build_tiny_vits, samples_for

    voice = build_tiny_vits(tmp_path / "voice")
    code, stdout = invoke("import", str(voice), "--name", "tiny-voice")
    assert code == 0, stdout
    out = tmp_path / "hello.wav"
    code, stdout = invoke("say", "Hello world. Goodbye.", "--model", "tiny-voice", "-o", str(out))
    assert code == 0 and "wrote" in stdout
    data = out.read_bytes()
    assert len(data) == 44 + 2 * samples_for(["Hello world.", "Goodbye."])
    # the voice_model setting makes it the voice of say (and of run --voice / --mic)
    monkeypatch.setenv("LLMASOS_VOICE_MODEL", "tiny-voice")
    state.reset()
    code, stdout = invoke("say", "Hello world.", "--speed", "2", "-o", str(out))
    assert code == 0 and len(out.read_bytes()) == 44 + 2 * samples_for(["Hello world."], 2.0)
    capsys.readouterr()  # the progress bars of building and loading the model
    with pytest.raises(SystemExit):
        main(["say", "Hello.", "--model", "tiny-voice", "--voice", "fr", "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert "a VITS model has one voice, 'eng'" in err and "\n" not in err


def test_ocr_prints_text_or_json(tmp_path: Path) -> None:
    image = tmp_path / "note.png"
    image.write_bytes(text_png(["Buy milk and bread"]))
    code, stdout = invoke("ocr", str(image))
    assert code == 0 and "milk" in stdout
    code, stdout = invoke("ocr", str(image), "--json")
    data = json.loads(stdout)
    assert data["engine"] == "tesseract" and data["words"][0]["text"] == "Buy"


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    note = tmp_path / "note.txt"
    note.write_text("not a recording")
    for args, message in (
        (["listen", str(note)], "text/plain, not audio"),
        (["listen", str(tmp_path / "missing.wav")], "no such file"),
        (["ocr", str(note)], "text/plain, not an image"),
        (["listen", str(note), "--language", "fr"], "available: en"),
        (["listen", str(note), "--model", "nope"], "unknown speech model 'nope' (one of: pocket"),
        (["listen"], "give an audio FILE or --mic"),
        (["listen", str(note), "--mic"], "give an audio FILE or --mic"),
    ):
        with pytest.raises(SystemExit) as exit_code:
            main(args)
        assert exit_code.value.code == 1
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err


def test_listen_mic_transcribes_one_turn_and_a_missing_microphone_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    said = tmp_path / "said.wav"
    said.write_bytes(espeak_wav("Hello world. Good morning."))
    monkeypatch.setenv("LLMASOS_MICROPHONE", f"lavfi:amovie={said}")
    state.reset()
    code, stdout = invoke("listen", "--mic", "--model", "pocketsphinx", "--format", "json")
    transcript = json.loads(stdout)
    assert code == 0 and transcript["engine"] == "pocketsphinx" and transcript["text"].strip()
    monkeypatch.setenv("LLMASOS_MICROPHONE", "alsa:no-such-card")
    state.reset()
    with pytest.raises(SystemExit) as exit_code:
        main(["listen", "--mic"])
    assert exit_code.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no microphone: FFmpeg could not open alsa:no-such-card" in err


@pytest.mark.model
def test_run_holds_spoken_turns_from_a_recording_and_from_the_microphone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMASOS_THREADS", "2")
    monkeypatch.setenv("LLMASOS_CONTEXT_LENGTH", "1024")
    question = tmp_path / "question.wav"
    question.write_bytes(espeak_wav("What is the capital of France?"))
    spoken = tmp_path / "spoken.wav"
    monkeypatch.setenv("LLMASOS_MICROPHONE", f"lavfi:amovie={question}")
    monkeypatch.setenv("LLMASOS_SPEAKER", f"wav:{spoken}")
    state.reset()
    for turn, answer in (
        (["--voice", str(question)], tmp_path / "question.reply.wav"),  # a file, answered in one
        (["--mic", "--turns", "1"], spoken),  # a conversation, answers on the speaker
    ):
        result = runner.invoke(app, ["run", "smollm2", *turn, "-p", "num_predict=24"])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        assert "you said:" in result.stderr and "capital" in result.stderr.lower()
        assert result.stdout.strip()  # the answer is printed too
        assert sniff(answer.read_bytes()) == "audio/wav"
        assert len(answer.read_bytes()) > 44 + 24000  # at least half a second of speech
