"""What an inference backend (a "device driver") is.

A backend loads one model and executes *steps*: in one step it appends new tokens to several
sequences at once (a chunk of a prompt, or the single token sampled last step) and, for the
sequences that ask for it, samples the next token. The kernel's scheduler decides what goes
into each step; the backend knows nothing about requests, users, queues or HTTP.

Sequences are addressed by integer ids chosen by the kernel. A backend holds at most
`max_sequences` at once, sharing a KV pool of `kv_capacity_tokens` tokens. When a sequence
is added, the backend may find a prefix of its tokens already computed (prefix caching) and
says how many; the kernel then feeds only the rest.

Sampling state (penalty history, grammar state, RNG) lives in the backend, per sequence,
because that is where it can be done fast (llama.cpp's sampler chain, torch on the device).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llmasos.errors import ContextLengthExceededError, InvalidRequestError, UnsupportedError
from llmasos.types import ChatMessage, SamplingParams


@dataclass(frozen=True)
class LoadSpec:
    """Everything a backend needs to load a model."""

    path: Path
    """A .gguf file, or a directory of HF files (config.json, safetensors, tokenizer)."""
    format: str
    """``gguf`` or ``safetensors``."""
    context_length: int
    """Tokens of context per sequence (prompt plus generated)."""
    max_sequences: int = 8
    """How many sequences may be resident at once (the batch size)."""
    kv_capacity_tokens: int | None = None
    """Total KV cache size shared by all sequences; None means context_length * max_sequences."""
    threads: int = 0
    """CPU threads; 0 means all cores."""
    embedding: bool = False
    """Load for embeddings rather than generation."""
    chat_template: str | None = None
    """A Jinja2 chat template overriding the model's own."""
    options: dict[str, Any] = field(default_factory=dict)
    """Backend-specific options (device, dtype, cache directory ...)."""


@dataclass(frozen=True)
class SequenceWork:
    """One sequence's part of a step."""

    seq_id: int
    tokens: Sequence[int]
    """Tokens to append to the sequence's KV state (a prefill chunk, or the last sampled)."""
    sample: bool
    """Sample a next token after these tokens (false for a non-final prefill chunk)."""


@dataclass(frozen=True)
class ImagePrompt:
    """A chat prompt with images, as a backend that sees them encodes it
    (`BackendInterface.encode_images`)."""

    tokens: list[int]
    """The whole prompt, each image expanded into the placeholder tokens standing for it."""
    media: object
    """The backend's own prepared pixel inputs; given back to `add_image_sequence`."""
    image_tokens: int
    """How many of ``tokens`` stand for images."""


@dataclass(frozen=True)
class TokenLogprob:
    token: int
    logprob: float


@dataclass(frozen=True)
class SampledToken:
    """The outcome of a step for one sequence that asked to sample."""

    seq_id: int
    token: int
    logprob: float | None = None
    top_logprobs: tuple[TokenLogprob, ...] = ()


class BackendInterface(ABC):
    """A loaded model that executes batched steps. Not thread-safe: one engine loop owns it."""

    name: ClassVar[str]
    """The registry name (``llama.cpp``, ``transformers`` ...)."""

    @classmethod
    @abstractmethod
    def load(cls, spec: LoadSpec) -> BackendInterface:
        """Load the model; raise `ModelFormatError` for a file it cannot read."""

    # --- facts -------------------------------------------------------------------------

    @property
    @abstractmethod
    def context_length(self) -> int:
        """Maximum tokens (prompt plus output) in one sequence."""

    @property
    @abstractmethod
    def max_sequences(self) -> int:
        """Maximum sequences resident at once."""

    @property
    @abstractmethod
    def kv_capacity_tokens(self) -> int:
        """Total tokens the shared KV pool holds."""

    @property
    @abstractmethod
    def kv_used_tokens(self) -> int:
        """Tokens held in KV by live sequences (cached prefixes of freed ones excluded)."""

    @property
    def processor(self) -> str:
        """Where it runs: ``cpu`` or ``cuda``."""
        return "cpu"

    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes the loaded model occupies (weights plus allocated KV)."""

    # --- text --------------------------------------------------------------------------

    @abstractmethod
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Text to token ids; special-token text (``<|im_start|>``) is parsed as such."""

    @abstractmethod
    def token_bytes(self, token: int) -> bytes:
        """The bytes one token stands for (may be part of a UTF-8 character)."""

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    @abstractmethod
    def is_end_of_generation(self, token: int) -> bool:
        """True for EOS / end-of-turn tokens."""

    def is_special(self, token: int) -> bool:
        """True for control tokens (``<|im_start|>``, EOS ...), left out of generated text."""
        return self.is_end_of_generation(token)

    @abstractmethod
    def render_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> str:
        """Render messages with the model's chat template (or the override in LoadSpec)."""

    # --- images ------------------------------------------------------------------------

    @property
    def accepts_images(self) -> bool:
        """True for a vision-language model: chat messages may hold image parts."""
        return False

    def encode_images(self, prompt: str, images: Sequence[bytes]) -> ImagePrompt:
        """Tokenize ``prompt`` (rendered by `render_chat`, one image placeholder per image,
        in order) with ``images`` (encoded image files). Thread-safe: the kernel calls it off
        the engine loop."""
        raise UnsupportedError(f"the {self.name} backend does not take images")

    def add_image_sequence(
        self,
        seq_id: int,
        params: SamplingParams,
        tokens: Sequence[int],
        media: object,
        *,
        generated: Sequence[int] = (),
    ) -> int:
        """`add_sequence` for a prompt from `encode_images`: the image placeholders are fed
        the images' features when the prefill reaches them."""
        raise UnsupportedError(f"the {self.name} backend does not take images")

    # --- sequences and steps -----------------------------------------------------------

    @abstractmethod
    def add_sequence(
        self,
        seq_id: int,
        params: SamplingParams,
        tokens: Sequence[int],
        *,
        generated: Sequence[int] = (),
    ) -> int:
        """Start a sequence whose full token list will be ``tokens``.

        ``generated`` are tokens produced before a preemption: they are at the end of
        ``tokens`` and are replayed into the sampler (penalties, grammar) so sampling resumes
        where it stopped. Returns how many leading tokens are already in KV (prefix cache
        hit); the caller feeds ``tokens[returned:]`` through `execute`. Raises
        `BackendError` if no sequence slot is free.
        """

    @abstractmethod
    def execute(self, work: Sequence[SequenceWork]) -> list[SampledToken]:
        """Run one batched forward step; return a sampled token per ``sample=True`` item."""

    @abstractmethod
    def remove_sequence(self, seq_id: int) -> None:
        """Free the sequence (its KV may be kept as a prefix cache until space is needed)."""

    # --- scoring -----------------------------------------------------------------------

    def score(self, tokens: Sequence[int]) -> list[float]:
        """The natural-log probability of each of ``tokens[1:]`` given the tokens before it
        (teacher forcing, no sampling): what perplexity and evaluations measure. Needs no
        free sequence beyond one slot; leaves no sequence behind."""
        raise UnsupportedError(f"the {self.name} backend does not score tokens")

    def score_continuations(
        self, prefix: Sequence[int], continuations: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """For each continuation, the log-probability of each of its tokens following
        ``prefix`` and the continuation's earlier tokens (teacher forcing). Backends that can
        keep the prefix's state compute it once; this default scores each sequence whole."""
        prefix = list(prefix)
        return [
            self.score(prefix + list(continuation))[len(prefix) - 1 :]
            for continuation in continuations
        ]

    # --- embeddings --------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Embed texts; return the vectors and the number of input tokens."""
        raise UnsupportedError(f"the {self.name} backend does not compute embeddings")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model's memory."""


def scored_tokens(tokens: Sequence[int], context_length: int, vocab_size: int) -> list[int]:
    """``tokens`` as ints, checked for `BackendInterface.score`: at least two, within the
    context, every id in the vocabulary."""
    checked = [int(t) for t in tokens]
    if len(checked) < 2:
        raise InvalidRequestError("scoring needs at least two tokens")
    if len(checked) > context_length:
        raise ContextLengthExceededError(
            f"{len(checked)} tokens exceed the context length of {context_length}"
        )
    if any(not 0 <= t < vocab_size for t in checked):
        raise InvalidRequestError("a token id is outside the vocabulary")
    return checked
