"""``POST /v1/audio/transcriptions``, ``/v1/audio/translations``, ``/v1/audio/speech``,
``GET /v1/audio/voices``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from llmasos.errors import UnsupportedError
from llmasos.perception.media import MEDIA_TYPES
from llmasos.perception.service import PerceptionService
from llmasos.perception.subtitles import srt, vtt
from llmasos.server.audio.protocol import SpeechRequest, TranscriptionForm, VoiceList, VoiceOut
from llmasos.server.audio.serving import encoded, speech_events, usage, verbose
from llmasos.server.context import current_principal, tenant_for
from llmasos.server.streaming import StreamingBody
from llmasos.server.uploads import read_upload

UPLOAD_DOC = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string"},
                        "language": {"type": "string"},
                        "prompt": {"type": "string"},
                        "response_format": {"type": "string"},
                        "temperature": {"type": "number"},
                    },
                }
            }
        },
        "required": True,
    }
}


def audio_router(perception: PerceptionService) -> APIRouter:
    router = APIRouter(tags=["audio"])

    async def transcribe(request: Request, task: str) -> Response:
        audio, form = await read_upload(request, TranscriptionForm)
        principal = current_principal()  # the auth layer does not read multipart bodies
        transcript = await perception.transcribe(
            audio,
            tenant=tenant_for(form.user),
            model=form.model,
            # translations answer in English: whisper's translate task where the model has
            # it; an English-only engine recognizes English speech and refuses other languages
            language=form.language,
            prompt=form.prompt,
            task=task,
            allow=None if principal is None else lambda name: principal.require(model=name),
        )
        kind = form.response_format
        if kind == "text":
            return PlainTextResponse(transcript.text + "\n")
        if kind == "srt":
            return PlainTextResponse(srt(transcript), media_type="application/x-subrip")
        if kind == "vtt":
            return PlainTextResponse(vtt(transcript), media_type="text/vtt")
        if kind == "verbose_json":
            words = "word" in form.timestamp_granularities
            return JSONResponse(verbose(transcript, task=task, words=words))
        return JSONResponse({"text": transcript.text, "usage": usage(transcript)})

    @router.post("/v1/audio/transcriptions", summary="Transcribe audio", openapi_extra=UPLOAD_DOC)
    async def create_transcription(request: Request) -> Response:
        return await transcribe(request, "transcribe")

    @router.post(
        "/v1/audio/translations",
        summary="Translate audio into English text",
        openapi_extra=UPLOAD_DOC,
    )
    async def create_translation(request: Request) -> Response:
        return await transcribe(request, "translate")

    @router.post(
        "/v1/audio/speech",
        summary="Speak text",
        response_class=Response,
        responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}},
    )
    async def create_speech(body: SpeechRequest) -> Response:
        if body.response_format == "aac":
            raise UnsupportedError(
                "response_format aac is not supported (one of: mp3, opus, flac, wav, pcm)",
                param="response_format",
            )
        principal = current_principal()  # perception models are checked here, not by auth
        chunks = await perception.speak(
            body.input,
            tenant=tenant_for(body.user),
            voice=body.voice,
            model=body.model,
            speed=body.speed,
            allow=None if principal is None else lambda name: principal.require(model=name),
        )
        media_type = MEDIA_TYPES[body.response_format]
        if body.stream_format == "sse":
            events = speech_events(chunks, body.response_format)
            return StreamingBody(events, media_type="text/event-stream")
        if body.stream_format == "audio":
            stream = encoded(chunks, body.response_format, streaming=True)
            return StreamingBody(stream, media_type=media_type)
        data = b"".join(
            [part async for part in encoded(chunks, body.response_format, streaming=False)]
        )
        return Response(data, media_type=media_type)

    @router.get("/v1/audio/voices", response_model=VoiceList, summary="List the voices")
    async def list_voices(model: str | None = None) -> VoiceList:
        voices = await asyncio.to_thread(perception.voices, model)  # reads the store
        return VoiceList(
            data=[
                VoiceOut(id=v.id, language=v.language, description=v.description, engine=v.engine)
                for v in voices
            ]
        )

    return router
