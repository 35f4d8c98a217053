"""Request and response models of the audio endpoints.

Transcriptions arrive as multipart forms (``file`` plus fields), read into
`TranscriptionForm`; speech requests are JSON (`SpeechRequest`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmasos.server.openai.common import OpenAIModel

TranscriptFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]


class TranscriptionForm(OpenAIModel):
    model: str = Field("whisper-1", description="whisper-1 (the default engine) or an engine name.")
    language: str | None = Field(None, description="ISO-639-1 code of the speech (en).")
    prompt: str | None = Field(None, description="Accepted; pocketsphinx cannot use it.")
    response_format: TranscriptFormat = "json"
    temperature: float = Field(0.0, ge=0, le=1, description="Accepted; decoding is deterministic.")
    timestamp_granularities: list[Literal["word", "segment"]] = Field(
        default_factory=lambda: list[Literal["word", "segment"]](["segment"])
    )
    user: str | None = None


class SpeechRequest(OpenAIModel):
    model: str = Field(
        "tts-1",
        description="tts-1 (the default voice engine), an engine name (espeak-ng), or a VITS "
        "voice model in the store (facebook/mms-tts-eng).",
    )
    input: str = Field(..., description="The text to speak, at most 4,096 characters.")
    voice: str = Field(
        "alloy",
        description="An OpenAI voice name, an espeak-ng voice, or a VITS model's one voice "
        "(GET /v1/audio/voices).",
    )
    response_format: Literal["mp3", "opus", "flac", "wav", "pcm", "aac"] = "mp3"
    speed: float = Field(1.0, description="0.25 to 4.0.")
    instructions: str | None = Field(None, description="Accepted; espeak-ng cannot use it.")
    stream_format: Literal["audio", "sse"] | None = Field(
        None,
        description="audio: chunked audio as each sentence is spoken; sse: speech.audio.delta "
        "events; omitted: the whole file at once.",
    )
    user: str | None = None


class WordOut(OpenAIModel):
    word: str
    start: float
    end: float


class SegmentOut(OpenAIModel):
    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


class VerboseTranscription(OpenAIModel):
    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: list[SegmentOut]
    words: list[WordOut] | None = None


class VoiceOut(OpenAIModel):
    id: str
    language: str
    description: str
    engine: str


class VoiceList(OpenAIModel):
    object: Literal["list"] = "list"
    data: list[VoiceOut]
