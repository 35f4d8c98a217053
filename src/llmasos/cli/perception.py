"""``llmasos listen``, ``say`` and ``ocr``: speech and OCR on this machine, in-process.

They use the same `PerceptionService` and engines as the server (no server needs to run),
and their jobs run in the job lanes of an in-process kernel, as the server's do.
``llmasos run MODEL --voice FILE`` and ``--mic`` (in `llmasos.cli.run`) use `transcribe_file`,
`speak_to_file`, `record_turn` and `play_speech` from here for spoken turns; the devices are
the microphone and speaker settings (`llmasos.perception.microphone`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from llmasos.cli.output import print_json
from llmasos.cli.root import app, console, err_console, state
from llmasos.errors import InvalidRequestError
from llmasos.perception.interface import VOICE_SAMPLE_RATE, Transcript
from llmasos.perception.media import OUTPUT_FORMATS, AudioEncoder
from llmasos.perception.microphone import Device, Recording, play, record
from llmasos.perception.service import PerceptionLimits, PerceptionService
from llmasos.perception.subtitles import srt, vtt

TENANT = "cli"
T = TypeVar("T")


@contextlib.asynccontextmanager
async def _service(*, store: bool = False) -> AsyncIterator[PerceptionService]:
    """The service over an in-process kernel (closed on exit); ``store``: engines may run
    models of the store (whisper and VITS), for recognition and speech."""
    from llmasos.kernel.client import InProcessEngineClient

    settings = state.settings
    kernel = InProcessEngineClient(settings, state.store)
    try:
        yield PerceptionService(
            kernel,
            PerceptionLimits(max_audio_seconds=settings.max_audio_seconds),
            store=state.store if store else None,
            speech_model=settings.speech_model,
            voice_model=settings.voice_model,
        )
    finally:
        await kernel.close()


def _with_service(call: Callable[[PerceptionService], Awaitable[T]], *, store: bool) -> T:
    """``call(service)`` run to completion on a new event loop."""

    async def main() -> T:
        async with _service(store=store) as service:
            return await call(service)

    return asyncio.run(main())


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise InvalidRequestError(f"no such file: {path}")
    return path.read_bytes()


def transcribe_file(
    path: Path, *, language: str | None = None, model: str | None = None, task: str = "transcribe"
) -> Transcript:
    return transcribe_audio(_read(path), language=language, model=model, task=task)


def transcribe_audio(
    audio: bytes, *, language: str | None = None, model: str | None = None, task: str = "transcribe"
) -> Transcript:
    return _with_service(
        lambda service: service.transcribe(
            audio, tenant=TENANT, model=model, language=language, task=task
        ),
        store=True,
    )


def record_turn(max_seconds: float) -> Recording:
    """One spoken turn from the microphone setting's device, with a live counter."""
    device = Device.parse(state.settings.microphone, setting="microphone")
    err_console.print(
        f"listening on {device} (a pause of 1.5 s, {max_seconds:.0f} s or Ctrl-C ends it)",
        highlight=False,
        markup=False,
    )
    with err_console.status("recording 0.0 s") as status:
        recording = record(
            device,
            max_seconds=max_seconds,
            on_audio=lambda seconds: status.update(f"recording {seconds:.1f} s"),
        )
    return recording


def play_speech(text: str, *, voice: str = "alloy", speed: float = 1.0) -> None:
    """``text`` spoken on the speaker setting's device."""
    device = Device.parse(state.settings.speaker, setting="speaker")
    pcm = synthesize(text, voice=voice, speed=speed, response_format="pcm")
    play(device, pcm, VOICE_SAMPLE_RATE)


def _format_of(out: Path | None, given: str | None) -> str:
    if given:
        return given
    suffix = out.suffix.lower().lstrip(".") if out else ""
    return {"ogg": "opus", "raw": "pcm"}.get(suffix, suffix if suffix in OUTPUT_FORMATS else "wav")


def synthesize(
    text: str, *, voice: str, speed: float, response_format: str, model: str | None = None
) -> bytes:
    """``text`` spoken by ``model`` (None: the voice_model setting, else espeak-ng), as a
    whole file in ``response_format``."""

    async def collect(service: PerceptionService) -> bytes:
        encoder = AudioEncoder(response_format, VOICE_SAMPLE_RATE, streaming=False)
        chunks = await service.speak(text, tenant=TENANT, voice=voice, model=model, speed=speed)
        parts = [encoder.feed(chunk) async for chunk in chunks]
        return b"".join([*parts, encoder.finish()])

    return _with_service(collect, store=True)


def speak_to_file(text: str, out: Path, *, voice: str = "alloy", speed: float = 1.0) -> None:
    data = synthesize(text, voice=voice, speed=speed, response_format=_format_of(out, None))
    out.write_bytes(data)


@app.command(rich_help_panel="Perception")
def listen(
    file: Annotated[
        Path | None, typer.Argument(help="An audio file: wav, mp3, ogg/opus, flac, webm.")
    ] = None,
    mic: Annotated[
        bool,
        typer.Option(
            "--mic", help="Record from the microphone (the microphone setting) instead of FILE."
        ),
    ] = False,
    seconds: Annotated[
        float, typer.Option("--seconds", min=1, help="With --mic: the longest recording.")
    ] = 60.0,
    language: Annotated[
        str | None, typer.Option("--language", "-l", help="Language of the speech (en).")
    ] = None,
    output_format: Annotated[
        str,
        typer.Option("--format", "-f", help="text, json (segments and words), srt or vtt."),
    ] = "text",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="pocketsphinx, faster-whisper, or a whisper model in the store "
            "(whisper:tiny.en); default: the speech_model setting, else whisper where "
            "installed, else pocketsphinx.",
        ),
    ] = None,
    translate: Annotated[
        bool, typer.Option("--translate", help="English text from speech in another language.")
    ] = False,
) -> None:
    """Transcribe a recording or the microphone (whisper or pocketsphinx, offline)."""
    if output_format not in ("text", "json", "srt", "vtt"):
        raise InvalidRequestError(f"--format must be text, json, srt or vtt, not {output_format!r}")
    task = "translate" if translate else "transcribe"
    if mic == (file is not None):
        raise InvalidRequestError("give an audio FILE or --mic (one of them)")
    if file is not None:
        transcript = transcribe_file(file, language=language, model=model, task=task)
    else:
        recording = record_turn(seconds)
        if not recording.heard_speech:
            raise InvalidRequestError(f"heard no speech in {recording.seconds:.1f} s")
        transcript = transcribe_audio(recording.wav(), language=language, model=model, task=task)
    if output_format == "json":
        print_json(dataclasses.asdict(transcript))
    elif output_format == "srt":
        console.print(srt(transcript), end="", markup=False, highlight=False)
    elif output_format == "vtt":
        console.print(vtt(transcript), end="", markup=False, highlight=False)
    else:
        console.print(transcript.text, markup=False, highlight=False)


@app.command(rich_help_panel="Perception")
def say(
    text: Annotated[str, typer.Argument(help="What to say ('-' reads standard input).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Write the audio here (its suffix picks the format); "
            "without it, WAV goes to standard output when that is not a terminal.",
        ),
    ] = None,
    voice: Annotated[
        str,
        typer.Option(
            "--voice", "-v", help="alloy, nova ..., an espeak-ng voice (cmn), or a VITS model's."
        ),
    ] = "alloy",
    speed: Annotated[float, typer.Option("--speed", help="0.25 to 4.0.")] = 1.0,
    audio_format: Annotated[
        str | None, typer.Option("--format", help="wav, mp3, opus, flac or pcm.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="espeak-ng, or a VITS voice model in the store (facebook/mms-tts-eng); "
            "default: the voice_model setting, else espeak-ng.",
        ),
    ] = None,
) -> None:
    """Speak text (espeak-ng or a neural VITS voice from the store) into an audio file."""
    if text == "-":
        text = sys.stdin.read()
    if out is None and sys.stdout.isatty():
        raise InvalidRequestError("say writes audio: give --out FILE, or pipe it (| aplay)")
    response_format = _format_of(out, audio_format)
    data = synthesize(text, voice=voice, speed=speed, response_format=response_format, model=model)
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    out.write_bytes(data)
    console.print(f"wrote {out} ({len(data)} bytes)", highlight=False)


@app.command(rich_help_panel="Perception")
def ocr(
    image: Annotated[Path, typer.Argument(help="An image: PNG, JPEG, WebP, GIF, BMP, TIFF.")],
    language: Annotated[
        str | None,
        typer.Option("--language", "-l", help="eng (default), chi_sim, eng+chi_sim, en, zh."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Text, word boxes and confidences as JSON.")
    ] = False,
) -> None:
    """Read the printed text of an image (tesseract, offline)."""
    picture = _read(image)
    result = _with_service(
        lambda service: service.read_image(picture, tenant=TENANT, language=language),
        store=False,
    )
    if as_json:
        data = dataclasses.asdict(result)
        data["confidence"] = round(result.confidence, 2)
        print_json(data)
    else:
        console.print(result.text, markup=False, highlight=False)
