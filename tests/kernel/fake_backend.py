"""A deterministic toy backend for scheduler and engine tests, plugged in through the registry.

Tokens are small integers; "text" is one letter per token. The next token is a pure function
of the sequence's tokens so far, so batched and one-at-a-time runs must agree exactly.
Token 0 is end-of-generation, and is produced when the sequence's length hits ``stop_at``.
With ``loop_period=p`` it generates the letters ``a, b, ...`` cyclically with period ``p``
(a reply that loops, for the repetition guard).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmasos.backends.interface import (
    BackendInterface,
    LoadSpec,
    SampledToken,
    SequenceWork,
)
from llmasos.errors import BackendError
from llmasos.types import ChatMessage, SamplingParams

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


class FakeBackend(BackendInterface):
    name = "fake"

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.sequences: dict[int, list[int]] = {}
        self.cache: list[list[int]] = []
        self.steps: list[list[tuple[int, int, bool]]] = []
        self.stop_at: int | None = spec.options.get("stop_at")
        self.loop_period: int | None = spec.options.get("loop_period")
        self.closed = False

    @classmethod
    def load(cls, spec: LoadSpec) -> FakeBackend:
        return cls(spec)

    @property
    def context_length(self) -> int:
        return self.spec.context_length

    @property
    def max_sequences(self) -> int:
        return self.spec.max_sequences

    @property
    def kv_capacity_tokens(self) -> int:
        return self.spec.kv_capacity_tokens or self.spec.context_length * self.spec.max_sequences

    @property
    def kv_used_tokens(self) -> int:
        return sum(len(t) for t in self.sequences.values())

    def memory_bytes(self) -> int:
        return 1000

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return [1 + (ord(c) % 26) for c in text]

    def token_bytes(self, token: int) -> bytes:
        return b"" if token == 0 else ALPHABET[(token - 1) % 26].encode()

    def is_end_of_generation(self, token: int) -> bool:
        return token == 0

    def render_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        return "".join(str(m["content"]) for m in messages)

    def add_sequence(
        self,
        seq_id: int,
        params: SamplingParams,
        tokens: Sequence[int],
        *,
        generated: Sequence[int] = (),
    ) -> int:
        if len(self.sequences) >= self.max_sequences:
            raise BackendError("no free sequence slot")
        best = max((self._common(c, tokens) for c in self.cache), default=0)
        reused = min(best, len(tokens) - 1)
        self.sequences[seq_id] = list(tokens[:reused])
        return reused

    @staticmethod
    def _common(a: Sequence[int], b: Sequence[int]) -> int:
        n = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            n += 1
        return n

    def next_token(self, tokens: Sequence[int]) -> int:
        if self.stop_at is not None and len(tokens) >= self.stop_at:
            return 0
        if self.loop_period is not None:
            return 1 + len(tokens) % self.loop_period
        return 1 + (sum(tokens) * 7 + len(tokens)) % 26

    def execute(self, work: Sequence[SequenceWork]) -> list[SampledToken]:
        self.steps.append([(w.seq_id, len(w.tokens), w.sample) for w in work])
        results = []
        for item in work:
            seq = self.sequences[item.seq_id]
            seq.extend(item.tokens)
            if self.kv_used_tokens > self.kv_capacity_tokens:
                raise BackendError("KV cache overflow")
            if item.sample:
                results.append(SampledToken(item.seq_id, self.next_token(seq), logprob=-0.5))
        return results

    def remove_sequence(self, seq_id: int) -> None:
        tokens = self.sequences.pop(seq_id)
        self.cache.append(tokens)
        self.cache = self.cache[-4:]

    def close(self) -> None:
        self.closed = True
