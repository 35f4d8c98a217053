"""Perplexity of a model over a text, token-level and byte-level, from teacher-forced scores.

``perplexity = exp(mean negative log-likelihood)`` of every token of the text after the
first, each predicted from the tokens before it (teacher forcing: `BackendInterface.score`,
implemented by the llama.cpp and the transformers backends; `torch_score` for a torch model
in memory). The text is tokenized the way the model's own tokenizer says (``add_special``:
a BOS only where the model's tokenizer adds one; the embedded SmolLM2's GGUF says it does
not, and forcing one in front costs 14.7 nats on the first word, see
docs/design/toolchain.md). A text longer than the window is scored in windows that overlap
by half, and each token is counted once: the first window counts all its tokens, each later
one only its second half, so every token but the first window's is predicted from at least
half a window of context.

Byte-level perplexity ``exp(NLL / bytes)`` divides the same log-likelihood by the UTF-8
bytes of the scored tokens instead of their count, so models with different tokenizers
compare (a tokenizer with longer tokens has a higher token-level perplexity for the same
model quality); ``bits_per_byte`` is the same in bits. `public_domain_text` is the text
LLMasOS ships for this: the Gettysburg Address and the opening of the US Declaration of
Independence, both in the public domain (famous, so a model may know them: it suits
comparing two formats of one model, not ranking models).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from llmasos.backends.interface import BackendInterface
from llmasos.errors import InvalidRequestError

Scorer = Callable[[Sequence[int]], list[float]]
"""``tokens -> log-probabilities of tokens[1:]`` (natural log), as `BackendInterface.score`."""


@dataclass(frozen=True)
class Perplexity:
    tokens: int
    """Tokens scored (the text's tokens but the first)."""
    negative_log_likelihood: float
    """Summed over the scored tokens, in nats."""
    bytes: int = 0
    """UTF-8 bytes of the scored tokens (0 when not counted)."""
    window: int = 0
    """Tokens per scoring window."""

    @property
    def value(self) -> float:
        return math.exp(self.negative_log_likelihood / self.tokens)

    @property
    def byte_value(self) -> float:
        """``exp(NLL / bytes)``: comparable across tokenizers."""
        return math.exp(self.negative_log_likelihood / self.bytes) if self.bytes else math.nan

    @property
    def bits_per_byte(self) -> float:
        return self.negative_log_likelihood / self.bytes / math.log(2) if self.bytes else math.nan

    def __add__(self, other: Perplexity) -> Perplexity:
        """Two texts (rows of a dataset) scored together: the sums add."""
        return Perplexity(
            self.tokens + other.tokens,
            self.negative_log_likelihood + other.negative_log_likelihood,
            self.bytes + other.bytes,
            max(self.window, other.window),
        )


def public_domain_text() -> str:
    return (resources.files("llmasos.toolchain") / "data" / "public_domain.txt").read_text()


def windowed(
    score: Scorer,
    tokens: Sequence[int],
    window: int,
    token_bytes: Callable[[int], bytes] | None = None,
) -> Perplexity:
    """Score ``tokens`` in half-overlapping windows of ``window``, each token counted once."""
    if len(tokens) < 2:
        raise InvalidRequestError("the text is too short to measure a perplexity")
    if window < 2:
        raise InvalidRequestError("the scoring window must hold at least two tokens")
    stride = max(1, window // 2)
    total = 0.0
    counted = 0
    size = 0
    begin = 0
    while True:
        end = min(begin + window, len(tokens))
        scores = score(tokens[begin:end])  # scores[i] is token begin + i + 1
        for logprob in scores[counted - begin :]:  # from the first token not yet counted
            total -= logprob
            counted += 1
            if token_bytes is not None:
                size += len(token_bytes(tokens[counted]))
        if end == len(tokens):
            break
        begin += stride
    return Perplexity(tokens=counted, negative_log_likelihood=total, bytes=size, window=window)


def perplexity(backend: BackendInterface, text: str, *, window: int | None = None) -> Perplexity:
    """The perplexity of ``text`` under the model loaded in ``backend``."""
    tokens = backend.tokenize(text, add_special=True)
    window = min(window or backend.context_length, backend.context_length)
    return windowed(backend.score, tokens, window, backend.token_bytes)


def torch_score(model: Any, tokens: Sequence[int]) -> list[float]:
    """Teacher-forced log-probabilities of ``tokens[1:]`` under a torch causal LM."""
    import torch
    import torch.nn.functional as functional

    device = next(model.parameters()).device
    with torch.no_grad():
        ids = torch.tensor([list(tokens)], device=device)
        logprobs = functional.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        return [float(v) for v in logprobs.gather(1, ids[0, 1:, None])[:, 0].tolist()]


def torch_perplexity(model: Any, tokenizer: Any, text: str, window: int = 1024) -> Perplexity:
    """`perplexity` for a torch model in memory and its HF tokenizer (same tokens, windows)."""
    tokens = tokenizer.encode(text, add_special_tokens=True)
    model.eval()
    return windowed(lambda chunk: torch_score(model, chunk), tokens, window)
