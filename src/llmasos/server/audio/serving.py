"""Turning transcripts into ``verbose_json``, and PCM chunks into the audio a
speech request asked for (whole, chunked, or as server-sent events)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from llmasos.perception.interface import VOICE_SAMPLE_RATE, Transcript
from llmasos.perception.media import AudioEncoder
from llmasos.server.audio.protocol import SegmentOut, VerboseTranscription, WordOut
from llmasos.server.streaming import sse_event

LANGUAGE_NAMES = {"en": "english", "zh": "chinese", "fr": "french", "de": "german"}


def verbose(transcript: Transcript, *, task: str, words: bool) -> dict[str, Any]:
    body = VerboseTranscription(
        task="translate" if task == "translate" else "transcribe",
        language=LANGUAGE_NAMES.get(transcript.language, transcript.language),
        duration=round(transcript.duration, 3),
        text=transcript.text,
        segments=[
            SegmentOut(
                id=s.id,
                seek=int(s.start * 100),
                start=s.start,
                end=s.end,
                text=s.text,
                avg_logprob=s.avg_logprob,
            )
            for s in transcript.segments
        ],
        words=(
            [
                WordOut(word=w.text, start=w.start, end=w.end)
                for s in transcript.segments
                for w in s.words
            ]
            if words
            else None
        ),
    )
    return body.model_dump(exclude_none=True)


def usage(transcript: Transcript) -> dict[str, Any]:
    return {"type": "duration", "seconds": round(transcript.duration + 0.499)}


async def encoded(
    chunks: AsyncIterator[bytes], response_format: str, *, streaming: bool
) -> AsyncIterator[bytes]:
    """``chunks`` (24 kHz PCM) encoded as ``response_format``, as they come."""
    encoder = AudioEncoder(response_format, VOICE_SAMPLE_RATE, streaming=streaming)
    async for chunk in chunks:
        data = encoder.feed(chunk)
        if data:
            yield data
    tail = encoder.finish()
    if tail:
        yield tail


async def speech_events(chunks: AsyncIterator[bytes], response_format: str) -> AsyncIterator[str]:
    """OpenAI's ``stream_format: sse``: ``speech.audio.delta`` events, then ``done``."""
    async for data in encoded(chunks, response_format, streaming=True):
        yield sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    yield sse_event({"type": "speech.audio.done"})
