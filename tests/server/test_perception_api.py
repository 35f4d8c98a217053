"""Speech, voices, OCR and images in chat over real HTTP on loopback, with the real
``openai`` and ``ollama`` clients; the engines are the real ones, the chat model is the
scripted fake engine (the prompt it receives is what is checked)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.bench.speech import words_of
from llmasos.config import Settings
from llmasos.models.store import ModelStore
from llmasos.perception.media import decode_audio, sniff
from llmasos.server.app import create_app
from llmasos.storage import open_database
from tests.perception.media_fixtures import (
    espeak_wav,
    flac_claiming,
    needs_espeak,
    needs_tesseract,
    needs_whisper,
    silent_wav,
    text_png,
)
from tests.server.conftest import ServerThread
from tests.server.fake_engine import FakeEngineClient

pytestmark = [needs_espeak, needs_tesseract]


class Server:
    def __init__(self, url: str, engine: FakeEngineClient) -> None:
        self.url = url
        self.engine = engine
        self.api = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)


def _serve(home: Path, **settings: object) -> Iterator[Server]:
    config = Settings(home=home, **settings)  # type: ignore[arg-type]
    engine = FakeEngineClient()
    app = create_app(config, engine, ModelStore.open(config))
    with ServerThread(app) as url:
        server = Server(url, engine)
        yield server
        server.api.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory.mktemp("perception-home"))


@pytest.fixture(scope="module")
def fetching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory.mktemp("fetching-home"), fetch_image_urls=True)


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def test_openai_client_transcribes_espeak_speech(server: Server) -> None:
    wav = espeak_wav("Hello world. The weather is nice today.")
    result = server.api.audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", wav, "audio/wav"), language="en"
    )
    assert result.text.strip()
    verbose = server.api.audio.transcriptions.create(
        model="whisper-1",
        file=("hello.wav", wav),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.language == "english" and verbose.duration > 1
    assert verbose.text == result.text
    assert verbose.segments and verbose.segments[0].start >= 0
    assert all(s.end > s.start for s in verbose.segments)
    assert verbose.words and all(w.end > w.start for w in verbose.words)
    srt = server.api.audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", wav), response_format="srt"
    )
    assert str(srt).startswith("1\n00:00:0") and " --> " in str(srt)
    vtt = server.api.audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", wav), response_format="vtt"
    )
    assert str(vtt).startswith("WEBVTT")
    text = server.api.audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", wav), response_format="text"
    )
    assert str(text).strip() == result.text.strip()


def test_translations_answer_in_english(server: Server) -> None:
    # the openai client marks translations.create deprecated (warnings are errors here)
    response = httpx.post(
        f"{server.url}/v1/audio/translations",
        files={"file": ("hello.wav", espeak_wav("Good morning."))},
        data={"model": "whisper-1", "response_format": "verbose_json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "translate" and body["language"] == "english" and body["text"]


@needs_whisper
def test_openai_client_picks_whisper_or_pocketsphinx_by_model(server: Server) -> None:
    wav = espeak_wav("The quick brown fox jumps over the lazy dog.")
    transcribe = server.api.audio.transcriptions.create
    whisper = transcribe(
        model="whisper:tiny.en",
        file=("fox.wav", wav),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert {"quick", "fox", "lazy", "dog"} <= set(words_of(whisper.text))
    assert whisper.segments and whisper.segments[0].avg_logprob < 0
    assert whisper.words and all(w.end >= w.start for w in whisper.words)
    assert whisper.segments[-1].end <= (whisper.duration or 0) + 0.05
    default = transcribe(model="whisper-1", file=("fox.wav", wav))  # whisper where installed
    assert default.text == whisper.text
    sphinx = transcribe(model="pocketsphinx", file=("fox.wav", wav))
    assert sphinx.text != whisper.text
    vtt = transcribe(model="whisper:tiny.en", file=("fox.wav", wav), response_format="vtt")
    assert str(vtt).startswith("WEBVTT") and "fox" in str(vtt)
    refused = httpx.post(
        f"{server.url}/v1/audio/translations",
        files={"file": ("fox.wav", wav)},
        data={"model": "whisper:tiny.en", "language": "fr"},
        timeout=60,
    )
    assert refused.status_code == 400
    assert "English-only and cannot translate from 'fr'" in refused.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="smollm2:135m is a generate model"):
        transcribe(model="smollm2:135m", file=("fox.wav", wav))


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [("mp3", "audio/mpeg"), ("wav", "audio/wav"), ("opus", "audio/ogg"), ("flac", "audio/flac")],
)
def test_openai_client_speech_in_every_format_decodes_back(
    server: Server, fmt: str, kind: str
) -> None:
    response = server.api.audio.speech.create(
        model="tts-1", voice="alloy", input="Testing one two three.", response_format=fmt
    )
    data = response.read()
    assert sniff(data) == kind
    assert len(decode_audio(data, max_seconds=60)) > 16000  # more than half a second


def test_speech_pcm_streams_and_round_trips(server: Server) -> None:
    with server.api.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="nova",
        input="First sentence. Second sentence. Third sentence.",
        response_format="pcm",
        speed=1.2,
        extra_body={"stream_format": "audio"},
    ) as response:
        chunks = list(response.iter_bytes())
    pcm = b"".join(chunks)
    assert len(pcm) % 2 == 0 and len(pcm) > 24000 * 2  # over a second at 24 kHz
    wav = httpx.post(
        f"{server.url}/v1/audio/speech",
        json={"input": "Hello there.", "voice": "cmn", "response_format": "wav"},
        timeout=60,
    )
    assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
    assert int.from_bytes(wav.content[40:44], "little") == len(wav.content) - 44


def test_speech_as_server_sent_events(server: Server) -> None:
    with httpx.stream(
        "POST",
        f"{server.url}/v1/audio/speech",
        json={"input": "One. Two.", "response_format": "pcm", "stream_format": "sse"},
        timeout=60,
    ) as response:
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")
        ]
    assert [e["type"] for e in events][-1] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) > 24000


def test_voices_are_listed(server: Server) -> None:
    voices = httpx.get(f"{server.url}/v1/audio/voices", timeout=30).json()
    ids = {v["id"] for v in voices["data"]}
    assert {"alloy", "shimmer", "en-gb", "cmn"} <= ids


def _error(exc: pytest.ExceptionInfo[openai.APIStatusError]) -> dict[str, object]:
    body = exc.value.body
    assert isinstance(body, dict)
    return body.get("error", body)  # type: ignore[return-value]


def test_bad_audio_input_is_refused_with_openai_errors(server: Server) -> None:
    transcribe = server.api.audio.transcriptions.create
    with pytest.raises(openai.BadRequestError) as caught:
        transcribe(model="whisper-1", file=("photo.wav", text_png(["hi"])))
    assert "image/png, not audio" in str(_error(caught)["message"])
    with pytest.raises(openai.BadRequestError, match="empty"):
        transcribe(model="whisper-1", file=("empty.wav", b""))
    with pytest.raises(openai.BadRequestError, match="0 seconds"):
        transcribe(model="whisper-1", file=("silent.wav", silent_wav(0)))
    with pytest.raises(openai.APIStatusError) as too_long:
        transcribe(model="whisper-1", file=("long.flac", flac_claiming(2 * 3600)))
    assert too_long.value.status_code == 413
    with pytest.raises(openai.BadRequestError) as language:
        transcribe(model="whisper-1", file=("a.wav", espeak_wav("hi")), language="de")
    error = _error(language)
    assert "available: en" in str(error["message"]) and error["param"] == "language"
    with pytest.raises(openai.BadRequestError, match="unknown speech model"):
        transcribe(model="no-such-engine", file=("a.wav", espeak_wav("hi")))
    missing = httpx.post(f"{server.url}/v1/audio/transcriptions", data={"model": "x"}, timeout=30)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
    with pytest.raises(openai.BadRequestError, match="unknown voice"):
        server.api.audio.speech.create(model="tts-1", voice="robot", input="hi")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="aac is not supported"):
        server.api.audio.speech.create(
            model="tts-1", voice="alloy", input="hi", response_format="aac"
        )


def test_ocr_reads_uploads_and_data_urls(server: Server) -> None:
    png = text_png(["Invoice number 4711", "Total due 99 dollars"])
    upload = httpx.post(
        f"{server.url}/v1/ocr",
        files={"file": ("page.png", png)},
        data={"language": "en"},
        timeout=60,
    )
    assert upload.status_code == 200, upload.text
    body = upload.json()
    assert "Invoice" in body["text"] and "4711" in body["text"]
    assert body["language"] == "eng" and body["width"] > 0 and 0 < body["confidence"] <= 100
    word = body["words"][0]
    assert len(word["box"]) == 4 and word["line"] == 0
    by_url = httpx.post(f"{server.url}/v1/ocr", json={"image_url": data_url(png)}, timeout=60)
    assert by_url.status_code == 200 and by_url.json()["text"] == body["text"]


def test_ocr_bad_input(server: Server, fetching_server: Server) -> None:
    wav = httpx.post(
        f"{server.url}/v1/ocr", files={"file": ("a.png", espeak_wav("hi"))}, timeout=30
    )
    assert wav.status_code == 400 and "audio/wav, not an image" in wav.json()["error"]["message"]
    language = httpx.post(
        f"{server.url}/v1/ocr", files={"file": ("a.png", text_png(["x"]))}, data={"language": "xx"}
    )
    assert language.status_code == 400 and "available: chi_sim, eng" in language.text
    off = httpx.post(f"{server.url}/v1/ocr", json={"image_url": "http://example.com/a.png"})
    assert off.status_code == 403 and "fetching image URLs is off" in off.text
    for url in (
        f"http://127.0.0.1:{server.url.rsplit(':', 1)[1]}/health",
        "http://10.1.2.3/a.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.png",
        "http://localhost/a.png",
    ):
        refused = httpx.post(f"{fetching_server.url}/v1/ocr", json={"image_url": url})
        assert refused.status_code == 403, url
        assert "private or internal address" in refused.json()["error"]["message"]


def test_chat_with_an_image_gives_a_text_model_the_marked_ocr_text(server: Server) -> None:
    png = text_png(["Meeting at 10 am", "Room 42"])
    completion = server.api.chat.completions.create(
        model="smollm2",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "When is the meeting?"},
                    {"type": "image_url", "image_url": {"url": data_url(png)}},
                ],
            }
        ],
    )
    extra = completion.model_extra or {}
    assert extra["image_input"]["path"] == "ocr" and extra["image_input"]["images"] == 1
    prompt = server.engine.requests[-1].messages[-1]["content"]
    assert prompt.startswith("When is the meeting?\n[Image 1: you cannot see this image")
    assert "Meeting at 10 am" in prompt and prompt.endswith("[End of image 1]")
    stream = server.api.chat.completions.create(
        model="smollm2",
        stream=True,
        messages=[
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": data_url(png)}}],
            }
        ],
    )
    chunks = list(stream)
    assert all((c.model_extra or {})["image_input"]["path"] == "ocr" for c in chunks)
    with pytest.raises(openai.PermissionDeniedError, match="fetching image URLs is off"):
        server.api.chat.completions.create(
            model="smollm2",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "http://10.0.0.1/x.png"}}
                    ],
                }
            ],
        )


def test_ollama_images_are_read_for_chat_and_generate(server: Server) -> None:
    png = text_png(["Dinner at eight"])
    with ollama.Client(host=server.url) as client:
        reply = client.chat(
            model="smollm2",
            messages=[{"role": "user", "content": "What is planned?", "images": [png]}],
        )
    assert reply.message.content is not None
    content = server.engine.requests[-1].messages[-1]["content"]
    assert "Dinner at eight" in content and content.endswith("What is planned?")
    generated = httpx.post(
        f"{server.url}/api/generate",
        json={
            "model": "smollm2",
            "prompt": "Read it",
            "images": [base64.b64encode(png).decode()],
            "stream": False,
        },
        timeout=60,
    ).json()
    assert generated["image_input"]["path"] == "ocr"
    assert "Dinner at eight" in (server.engine.requests[-1].prompt or "")
    broken = httpx.post(
        f"{server.url}/api/chat",
        json={"model": "smollm2", "messages": [{"role": "user", "images": ["%%%"]}]},
    )
    assert broken.status_code == 400 and "base64" in broken.text


def test_multipart_body_size_limit_still_applies(tmp_path: Path) -> None:
    config = Settings(home=tmp_path)
    app = create_app(config, FakeEngineClient(), ModelStore.open(config), max_body_bytes=1024)
    with ServerThread(app) as url:
        response = httpx.post(
            f"{url}/v1/audio/transcriptions",
            files={"file": ("a.wav", io.BytesIO(b"\x00" * 4096))},
            data={"model": "whisper-1"},
        )
    assert response.status_code == 413


@needs_whisper
def test_a_keys_model_allow_list_applies_to_speech_models(tmp_path: Path) -> None:
    config = Settings(home=tmp_path, auth=True)
    database = open_database(config)
    UserManager(database).create("alice", role="user")
    keys = KeyManager(database)
    chat_only = keys.create("alice", "chat", models=["smollm2"]).secret
    whisper_too = keys.create("alice", "speech", models=["smollm2", "whisper:*"]).secret
    app = create_app(config, FakeEngineClient(), ModelStore.open(config), keys=keys)
    wav = espeak_wav("Good morning.")
    with ServerThread(app) as url:
        refused = openai.OpenAI(base_url=f"{url}/v1", api_key=chat_only, max_retries=0)
        with pytest.raises(openai.PermissionDeniedError, match="may not use the model 'whisper"):
            refused.audio.transcriptions.create(model="whisper:tiny.en", file=("a.wav", wav))
        with pytest.raises(openai.PermissionDeniedError, match=r"whisper:tiny\.en"):
            refused.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav))
        # pocketsphinx runs no store model: nothing to allow-list
        heard = refused.audio.transcriptions.create(model="pocketsphinx", file=("a.wav", wav))
        assert heard.text.strip()
        allowed = openai.OpenAI(base_url=f"{url}/v1", api_key=whisper_too, max_retries=0)
        text = allowed.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav)).text
        assert "morning" in text.lower()
    database.close()


@pytest.fixture(scope="module")
def voice_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose store holds the tiny VITS voice of `tiny_vits` as ``tiny-voice``."""
    pytest.importorskip("transformers")
    from tests.perception.tiny_vits import build_tiny_vits

    home = tmp_path_factory.mktemp("voice-home")
    voice = build_tiny_vits(tmp_path_factory.mktemp("tiny-vits") / "model")
    ModelStore.open(Settings(home=home)).import_path(voice, "tiny-voice")
    yield from _serve(home)


def test_a_vits_voice_from_the_store_speaks_through_the_openai_client(
    voice_server: Server,
) -> None:
    from tests.perception.tiny_vits import samples_for

    sentences = ["Hello world.", "A tiny voice speaks.", "Goodbye!"]
    text = " ".join(sentences)
    speech = voice_server.api.audio.speech.create
    wav = speech(model="tiny-voice", voice="alloy", input=text, response_format="wav").read()
    assert sniff(wav) == "audio/wav"
    assert int.from_bytes(wav[40:44], "little") == 2 * samples_for(sentences)
    heard = decode_audio(wav, max_seconds=60)  # 16 kHz again
    assert abs(len(heard) - 2 * samples_for(sentences, rate=16_000)) <= 4
    fast = speech(model="tiny-voice", voice="eng", input=text, response_format="pcm", speed=2.0)
    assert len(fast.read()) == 2 * samples_for(sentences, speed=2.0)
    longer = speech(model="tiny-voice", voice="nova", input=f"{text} {text}", response_format="pcm")
    assert len(longer.read()) == 2 * samples_for(sentences * 2)
    for fmt, kind in (("mp3", "audio/mpeg"), ("opus", "audio/ogg"), ("flac", "audio/flac")):
        data = speech(model="tiny-voice", voice="alloy", input=text, response_format=fmt).read()
        assert sniff(data) == kind and decode_audio(data, max_seconds=60)


def test_a_vits_voice_streams_a_sentence_per_event(voice_server: Server) -> None:
    from tests.perception.tiny_vits import samples_for

    sentences = ["One two.", "Three four five.", "Six."]
    with httpx.stream(
        "POST",
        f"{voice_server.url}/v1/audio/speech",
        json={
            "model": "tiny-voice",
            "input": " ".join(sentences),
            "response_format": "pcm",
            "stream_format": "sse",
        },
        timeout=60,
    ) as response:
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")
        ]
    assert [e["type"] for e in events] == ["speech.audio.delta"] * 3 + ["speech.audio.done"]
    sizes = [len(base64.b64decode(e["audio"])) for e in events[:-1]]
    assert sizes == [2 * samples_for([s]) for s in sentences]
    with voice_server.api.audio.speech.with_streaming_response.create(
        model="tiny-voice",
        voice="alloy",
        input=" ".join(sentences),
        response_format="wav",
        extra_body={"stream_format": "audio"},
    ) as streamed:
        data = b"".join(streamed.iter_bytes())
    assert data[:4] == b"RIFF" and len(data) == 44 + 2 * samples_for(sentences)


def test_a_vits_voice_is_listed_and_errors_have_openais_shape(voice_server: Server) -> None:
    listed = httpx.get(
        f"{voice_server.url}/v1/audio/voices", params={"model": "tiny-voice"}, timeout=30
    ).json()["data"]
    assert [(v["id"], v["language"], v["engine"]) for v in listed] == [
        ("eng", "eng", "tiny-voice:latest")
    ]
    shown = httpx.post(f"{voice_server.url}/api/show", json={"model": "tiny-voice"}, timeout=30)
    assert shown.json()["capabilities"] == ["speech"]
    assert shown.json()["details"]["family"] == "vits"
    every = httpx.get(f"{voice_server.url}/v1/audio/voices", timeout=30).json()["data"]
    engines = {v["engine"] for v in every}
    assert {"espeak-ng", "tiny-voice:latest"} <= engines and every[0]["engine"] == "espeak-ng"
    speech = voice_server.api.audio.speech.create
    with pytest.raises(openai.BadRequestError) as unknown:
        speech(model="no-such-voice", voice="alloy", input="hi")
    error = _error(unknown)
    assert "unknown voice model 'no-such-voice'" in str(error["message"])
    assert "tiny-voice:latest" in str(error["message"]) and error["param"] == "model"
    with pytest.raises(openai.BadRequestError) as too_long:
        speech(model="tiny-voice", voice="alloy", input="a" * 4097)
    assert "at most 4096" in str(_error(too_long)["message"])
    assert _error(too_long)["param"] == "input"
    with pytest.raises(openai.BadRequestError) as not_a_voice:
        speech(model="all-minilm:l6-v2", voice="alloy", input="hi")
    assert "all-minilm:l6-v2 is an embed model, not a voice" in str(_error(not_a_voice)["message"])
    with pytest.raises(openai.BadRequestError, match="a VITS model has one voice"):
        speech(model="tiny-voice", voice="cmn", input="hi")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="nothing to speak"):
        speech(model="tiny-voice", voice="alloy", input="42.")


def test_a_keys_model_allow_list_applies_to_voice_models(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tests.perception.tiny_vits import build_tiny_vits

    config = Settings(home=tmp_path, auth=True, voice_model="tiny-voice")
    store = ModelStore.open(config)
    store.import_path(build_tiny_vits(tmp_path / "voice"), "tiny-voice")
    database = open_database(config)
    UserManager(database).create("alice", role="user")
    keys = KeyManager(database)
    chat_only = keys.create("alice", "chat", models=["smollm2"]).secret
    voice_too = keys.create("alice", "voice", models=["smollm2", "tiny-voice"]).secret
    app = create_app(config, FakeEngineClient(), store, keys=keys)
    with ServerThread(app) as url:
        refused = openai.OpenAI(base_url=f"{url}/v1", api_key=chat_only, max_retries=0)
        with pytest.raises(openai.PermissionDeniedError, match="may not use the model 'tiny-v"):
            refused.audio.speech.create(model="tiny-voice", voice="alloy", input="Hello.")
        # tts-1 means the voice_model setting: the model that runs is what is checked
        with pytest.raises(openai.PermissionDeniedError, match="tiny-voice:latest"):
            refused.audio.speech.create(model="tts-1", voice="alloy", input="Hello.")
        # espeak-ng runs no store model: nothing to allow-list
        spoken = refused.audio.speech.create(model="espeak-ng", voice="alloy", input="Hello.")
        assert spoken.read()
        allowed = openai.OpenAI(base_url=f"{url}/v1", api_key=voice_too, max_retries=0)
        assert allowed.audio.speech.create(model="tts-1", voice="alloy", input="Hello.").read()
    database.close()


@pytest.fixture(scope="module")
def kernel_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """The API over the real in-process kernel (no model loads: OCR needs none)."""
    from llmasos.kernel.client import InProcessEngineClient

    config = Settings(home=tmp_path_factory.mktemp("kernel-home"))
    kernel = InProcessEngineClient(config)
    app = create_app(config, kernel, ModelStore.open(config))
    with ServerThread(app) as url:
        yield url, kernel


def test_ocr_runs_in_the_kernels_lane_and_metrics_show_it(
    kernel_server: tuple[str, Any],
) -> None:
    url, kernel = kernel_server
    png = text_png(["Invoice number 4711"])
    response = httpx.post(
        f"{url}/v1/ocr", files={"file": ("page.png", png)}, data={"user": "alice"}, timeout=60
    )
    assert response.status_code == 200, response.text
    assert kernel.shares["alice"] > 0  # its job time, on the models' fair-share ledger
    metrics = httpx.get(f"{url}/metrics").text
    assert 'llmasos:job_lane_jobs_total{kind="ocr",outcome="done"} 1.0' in metrics
    assert 'llmasos:job_lane_waiting{kind="ocr"} 0.0' in metrics
    assert 'llmasos:job_seconds_total{kind="ocr"}' in metrics


def test_a_full_lane_is_503_with_retry_after(kernel_server: tuple[str, Any]) -> None:
    url, kernel = kernel_server
    lane = kernel.lanes.lane("ocr")
    lane.max_waiting = 0  # every OCR job finds the waiting room full
    try:
        response = httpx.post(
            f"{url}/v1/ocr", files={"file": ("page.png", text_png(["x"]))}, timeout=60
        )
    finally:
        lane.max_waiting = kernel.settings.perception_max_waiting
    assert response.status_code == 503
    assert float(response.headers["retry-after"]) > 0
    error = response.json()["error"]
    assert error["code"] == "queue_full" and "ocr jobs are waiting" in error["message"]
