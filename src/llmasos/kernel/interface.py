"""The kernel's system-call interface: what faces (server, CLI, SDK) may ask of it.

Faces build a `GenerateRequest`, call `EngineClientInterface.generate`, and iterate the
`GenerateOutput` deltas it yields. Closing the iterator early (a client disconnects) aborts
the request, and its sequence is freed at the next engine step. Errors arrive as
`LLMasOSError` subclasses raised from the iterator or the call.

Work that is not a token step (transcription, OCR, speech synthesis) is a `JobRequest`
handed to `EngineClientInterface.run_job`: the kernel runs its callable off the event loop
in the job lane of its kind, fairly between tenants and on the same fair-share counters as
the models' token steps. The callable is opaque to the kernel.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from llmasos.types import ChatMessage, SamplingParams

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


T = TypeVar("T")


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass
class JobRequest(Generic[T]):
    """A unit of CPU-bound work that is not a token step, on behalf of a tenant."""

    kind: str
    """The lane it waits in: ``transcribe``, ``ocr`` or ``speak`` today; a new kind needs no
    change to the kernel (a lane opens for it on first use)."""
    work: Callable[[], T]
    """Run once, in a worker thread; its result (or what it raises) is `run_job`'s."""
    tenant: str = "anonymous"
    """Who this is for; its run time counts against the tenant's fair share."""
    priority: int = 0
    """Lower runs earlier among the same tenant's waiting jobs (vLLM's convention)."""
    cost_seconds: float = 0.0
    """The caller's estimate of the run time: charged to the tenant when the job starts (so a
    tenant with a long job running does not also win the next worker) and corrected to the
    measured time when it ends."""


@dataclass
class GenerateRequest:
    """One generation: a raw prompt or chat messages, for one model, on behalf of a tenant."""

    model: str | None = None
    """Store name (``smollm2``, ``ns/name:tag``); None means the default model."""
    prompt: str | None = None
    """Raw text prompt (completions). Exactly one of prompt/messages is set."""
    messages: Sequence[ChatMessage] | None = None
    """Chat messages, rendered with the model's chat template by the kernel."""
    tools: Sequence[dict[str, Any]] | None = None
    """OpenAI tool definitions, passed to the chat template."""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    apply_model_defaults: bool = True
    """Fill sampling parameters the caller did not set from the model's manifest."""
    explicit: frozenset[str] = frozenset()
    """Names of the `SamplingParams` fields the caller set; the others take model defaults."""
    system: str | None = None
    """A system prompt overriding the model's default (Ollama's ``system``)."""
    raw: bool = False
    """For prompts: do not apply the chat template (Ollama's ``raw``)."""
    priority: int = 0
    """Lower runs earlier under the priority policy (vLLM's convention)."""
    tenant: str = "anonymous"
    """Who this is for: a user or app id; fair share is computed between tenants."""
    keep_alive: float | str | None = ""
    """Seconds to keep the model loaded after this request; '' means the default."""
    timeout: float | None = None
    """Seconds before the request is aborted; None means the configured default."""
    request_id: str = field(default_factory=new_request_id)


@dataclass(frozen=True)
class TokenInfo:
    """One generated token with its log-probability and top alternatives (when asked)."""

    token_id: int
    text: str
    logprob: float | None = None
    top_logprobs: tuple[tuple[str, float], ...] = ()


@dataclass
class GenerateOutput:
    """A delta of one request's output. The last one has ``finished=True``."""

    request_id: str
    model: str
    text: str = ""
    """New text since the previous output (stop strings already removed)."""
    tokens: list[TokenInfo] = field(default_factory=list)
    finished: bool = False
    finish_reason: str | None = None
    """OpenAI's: ``stop``, ``length``, ``abort`` (cancelled), ``error``."""
    stopped_by: str | None = None
    """What cut the output short when ``finish_reason`` is ``length`` and the caller set no
    limit: ``repetition_guard`` (the reply looped) or ``default_max_tokens`` (the server's
    cap for requests that set none)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens served from the prefix cache."""
    prompt: str | None = None
    """The rendered prompt (first output only)."""
    queue_seconds: float = 0.0
    prompt_seconds: float = 0.0
    """Time from admission to the first token."""
    generation_seconds: float = 0.0
    load_seconds: float = 0.0


@dataclass(frozen=True)
class EmbedResult:
    model: str
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(frozen=True)
class PromptCount:
    """What a request's prompt costs: exact tokens, counted with the model's tokenizer."""

    model: str
    prompt_tokens: int
    """Tokens of the rendered prompt (chat template, system prompt and tools included)."""
    context_length: int
    """The model's context window as loaded."""


@dataclass(frozen=True)
class ContinuationScores:
    """How likely each continuation is after a prompt (teacher forcing, nothing sampled)."""

    model: str
    logprobs: list[list[float]]
    """Per continuation, the natural-log probability of each of its tokens."""
    prompt_tokens: int

    @property
    def totals(self) -> list[float]:
        """Per continuation, the log-probability of the whole continuation."""
        return [sum(values) for values in self.logprobs]


@dataclass(frozen=True)
class ResidentModel:
    """A loaded model, as ``llmasos ps`` / ``/api/ps`` show it."""

    name: str
    digest: str
    backend: str
    processor: str
    size_bytes: int
    context_length: int
    expires_at: float | None
    """Unix time it unloads when idle; None means never."""
    running: int
    waiting: int


@dataclass(frozen=True)
class BackgroundJob:
    """A toolchain job in the resource manager's memory ledger (``llmasos.kernel.ledger``),
    as ``llmasos ps`` / ``/api/ps`` show it beside the loaded models."""

    id: str
    command: str
    state: str
    """``running``, ``waiting`` (for memory, not started yet) or ``yielded`` (stopped to
    give its memory to serving; runs again when it fits)."""
    memory_bytes: int
    """What it counts for against the budget now (0 unless running)."""
    estimate_bytes: int
    rss_bytes: int
    yields: int


@dataclass(frozen=True)
class RemoteModel:
    """A model served by another OpenAI-compatible endpoint (``llmasos remote add``), as
    model lists show it."""

    name: str
    """The name clients use here."""
    url: str
    """The endpoint's base URL."""
    upstream_model: str
    """The model name the endpoint knows it by."""


class EngineClientInterface(ABC):
    """The kernel as faces see it. Implementations: in-process, over Ray (the cluster),
    and in front of either, remote providers (`llmasos.distributed.remote`)."""

    @abstractmethod
    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        """Submit a request; iterate its output deltas. Raises `QueueFullError`,
        `ModelNotFoundError`, `ContextLengthExceededError` ... before the first delta."""

    @abstractmethod
    async def abort(self, request_id: str) -> None:
        """Cancel a request; its iterator ends with ``finish_reason="abort"``."""

    @abstractmethod
    async def embed(self, model: str | None, texts: Sequence[str]) -> EmbedResult:
        """Embed texts with an embedding model (default: the configured one)."""

    @abstractmethod
    async def tokenize(self, model: str | None, text: str) -> list[int]:
        """Tokenize text with the model's tokenizer (loading the model if needed)."""

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        """Render and tokenize ``request``'s prompt exactly as `generate` would, without
        running it (loading the model if needed)."""
        from llmasos.errors import UnsupportedError

        raise UnsupportedError("this kernel cannot count prompt tokens")

    async def score(
        self, request: GenerateRequest, continuations: Sequence[str]
    ) -> ContinuationScores:
        """The log-probability of each continuation's tokens right after ``request``'s
        rendered prompt (the start of the model's reply): how classifiers rank labels."""
        from llmasos.errors import UnsupportedError

        raise UnsupportedError("this kernel cannot score continuations")

    @abstractmethod
    async def run_job(self, request: JobRequest[T]) -> T:
        """Run ``request.work`` in the lane of ``request.kind``, fairly between tenants, and
        return its result (or raise what it raised). Raises `QueueFullError` (503) when the
        lane's waiting room is full. Cancelling the caller takes a waiting job out of the
        lane; a running one finishes in its thread and is charged."""

    @abstractmethod
    async def load(self, model: str | None, keep_alive: float | str | None = "") -> None:
        """Load a model now (``llmasos load``, Ollama's empty request)."""

    @abstractmethod
    async def unload(self, model: str) -> bool:
        """Unload a model; False if it was not loaded."""

    @abstractmethod
    def resident_models(self) -> list[ResidentModel]:
        """Models loaded now."""

    def remote_models(self) -> list[RemoteModel]:
        """Models this client serves from remote providers (the kernel itself: none)."""
        return []

    def background_jobs(self) -> list[BackgroundJob]:
        """Toolchain jobs sharing this kernel's memory budget (none where it keeps none)."""
        return []

    def memory_budget(self) -> int | None:
        """The resource manager's memory budget in bytes, None where it keeps none."""
        return None

    @property
    def metrics_registry(self) -> CollectorRegistry | None:
        """The Prometheus registry holding the kernel's metrics (served at ``/metrics``)."""
        return None

    def is_ready(self) -> bool:
        """False while the default model is still loading at start-up (``/health`` 503)."""
        return True

    @abstractmethod
    async def close(self) -> None:
        """Stop every engine loop and unload every model."""
