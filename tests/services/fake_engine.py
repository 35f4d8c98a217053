"""A word-level fake kernel for the service runner's logic (no model).

One word is one token; a prompt plus ``max_tokens`` over ``context`` tokens raises
`ContextLengthExceededError` as the real kernel does. The "model" replies with the first
``reply_words`` words of the last user message, or ``json_reply`` under a JSON schema.
Scoring: a continuation costs -1 per word, -4 for its last, plus 1.5 for each time the last
user message contains it (the label a text names is the likeliest; a prompt that lists every
label once favours none).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

from llmasos.errors import ContextLengthExceededError
from llmasos.kernel.interface import (
    ContinuationScores,
    EmbedResult,
    EngineClientInterface,
    GenerateOutput,
    GenerateRequest,
    JobRequest,
    ResidentModel,
)
from llmasos.kernel.lanes import JobLanes

T = TypeVar("T")


class WordEngine(EngineClientInterface):
    def __init__(self, context: int = 100, reply_words: int = 3, json_reply: str = '"a"') -> None:
        self.lanes = JobLanes(workers=1, max_waiting=64, tokens_per_second=0.0)
        self.context = context
        self.reply_words = reply_words
        self.json_reply = json_reply
        self.requests: list[GenerateRequest] = []

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        return self._generate(request)

    async def _generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        messages = list(request.messages or [])
        prompt = sum(len(str(m["content"]).split()) for m in messages) + 8
        if prompt + (request.sampling.max_tokens or 0) > self.context:
            raise ContextLengthExceededError("too long", param="messages")
        self.requests.append(request)
        if request.sampling.structured is not None:
            text = self.json_reply
        else:
            words = str(messages[-1]["content"]).split()
            text = " ".join(words[-self.reply_words :])
        yield GenerateOutput(
            request_id=request.request_id,
            model="fake:latest",
            text=text,
            finished=True,
            finish_reason="stop",
            prompt_tokens=prompt,
            completion_tokens=len(text.split()),
        )

    async def score(
        self, request: GenerateRequest, continuations: Sequence[str]
    ) -> ContinuationScores:
        self.requests.append(request)
        last = str(list(request.messages or [])[-1]["content"]).lower()
        values = [
            [-1.0] * (len(c.split()) - 1) + [-4.0 + 1.5 * last.count(c.lower())]
            for c in continuations
        ]
        return ContinuationScores("fake:latest", values, len(last.split()))

    async def abort(self, request_id: str) -> None:
        return None

    async def embed(self, model: str | None, texts: Sequence[str]) -> EmbedResult:
        return EmbedResult(model="fake", vectors=[[0.0] for _ in texts], prompt_tokens=0)

    async def tokenize(self, model: str | None, text: str) -> list[int]:
        return list(range(len(text.split())))

    async def run_job(self, request: JobRequest[T]) -> T:
        return await self.lanes.run(request)

    async def load(self, model: str | None, keep_alive: float | str | None = "") -> None:
        return None

    async def unload(self, model: str) -> bool:
        return False

    def resident_models(self) -> list[ResidentModel]:
        return [ResidentModel("fake:latest", "d", "fake", "cpu", 0, self.context, None, 0, 0)]

    async def close(self) -> None:
        return None
