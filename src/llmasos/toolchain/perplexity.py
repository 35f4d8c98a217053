"""Token-level perplexity of a model over a text, from a backend's logits.

``perplexity = exp(mean negative log-likelihood)`` of every token of the text after the
first, each predicted from the tokens before it (teacher forcing, `BackendInterface.score`).
A text longer than the window is scored in windows that overlap by half, and each token is
counted once: the first window counts all its tokens, each later one only its second half,
so every token but the first window's is predicted from at least half a window of context.
`public_domain_text` is the text LLMasOS ships for this: the Gettysburg Address and the
opening of the US Declaration of Independence, both in the public domain (famous, so a model
may know them: it suits comparing two formats of one model, not ranking models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

from llmasos.backends.interface import BackendInterface
from llmasos.errors import InvalidRequestError


@dataclass(frozen=True)
class Perplexity:
    tokens: int
    """Tokens scored (the text's tokens but the first)."""
    negative_log_likelihood: float
    """Summed over the scored tokens, in nats."""

    @property
    def value(self) -> float:
        return math.exp(self.negative_log_likelihood / self.tokens)


def public_domain_text() -> str:
    return (resources.files("llmasos.toolchain") / "data" / "public_domain.txt").read_text()


def perplexity(backend: BackendInterface, text: str, *, window: int | None = None) -> Perplexity:
    """The perplexity of ``text`` under the model loaded in ``backend``."""
    tokens = backend.tokenize(text, add_special=True)
    if len(tokens) < 2:
        raise InvalidRequestError("the text is too short to measure a perplexity")
    window = min(window or backend.context_length, backend.context_length)
    if window < 2:
        raise InvalidRequestError("the scoring window must hold at least two tokens")
    stride = max(1, window // 2)
    total = 0.0
    counted = 0
    begin = 0
    while True:
        end = min(begin + window, len(tokens))
        scores = backend.score(tokens[begin:end])  # scores[i] is token begin + i + 1
        for logprob in scores[counted - begin :]:  # from the first token not yet counted
            total -= logprob
            counted += 1
        if end == len(tokens):
            break
        begin += stride
    return Perplexity(tokens=counted, negative_log_likelihood=total)
