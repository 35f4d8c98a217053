"""`RemoteEngineClient`: remote providers as models, in front of the server's own kernel.

Requests for a name registered with ``llmasos remote add`` go to that endpoint; everything
else goes to the wrapped client (the in-process kernel or the cluster client), unchanged.
Because the faces only see `EngineClientInterface`, a remote model gets every route
(chat, completions, responses, Ollama chat and generate, streaming or not) and everything
the faces do around the kernel — authentication, quotas, usage metering — with no route of
its own.

Each remote has a concurrency limit (``--max-concurrency``); requests beyond it wait in a
fair queue (the cluster router's `FairQueue`: one virtual token counter per tenant, the
least-served backlogged tenant goes next), so one tenant's flood cannot hold every slot of
a remote. Usage is the remote's own ``usage`` figures; a remote that sends none is counted
here: one token per streamed text event (servers stream a token per event) and about four
characters per prompt token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from llmasos.config import Settings
from llmasos.distributed.remote.registry import RemoteProvider, RemoteRegistry
from llmasos.distributed.remote.upstream import (
    ToolCallCollector,
    UpstreamClient,
    UpstreamRequest,
    upstream_request,
)
from llmasos.distributed.router import ClusterRouter, ReplicaState
from llmasos.errors import (
    LLMasOSError,
    RemoteProviderError,
    RequestTimeoutError,
    UnsupportedError,
)
from llmasos.kernel.interface import (
    BackgroundJob,
    ContinuationScores,
    EmbedResult,
    EngineClientInterface,
    GenerateOutput,
    GenerateRequest,
    JobRequest,
    PromptCount,
    RemoteModel,
    ResidentModel,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

T = TypeVar("T")

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
"""The estimate for prompt tokens when a remote reports no usage."""


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def prompt_text(request: GenerateRequest) -> str:
    """The text a request's prompt is made of (messages' contents, or the prompt)."""
    if request.messages is None:
        return request.prompt or ""
    parts = [request.system or ""]
    for message in request.messages:
        content = message.get("content")
        parts.append(content if isinstance(content, str) else str(content or ""))
    return "\n".join(parts)


class RemoteMetrics:
    """Per-remote request outcomes and waiting requests, in the kernel's registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = registry = registry or CollectorRegistry()
        self.requests = Counter(
            "llmasos:remote_requests",
            "Requests sent to remote providers, by outcome (ok, or the error code).",
            ["model_name", "outcome"],
            registry=registry,
        )
        self.waiting = Gauge(
            "llmasos:remote_waiting",
            "Requests waiting in a remote's fair queue for one of its concurrency slots.",
            ["model_name"],
            registry=registry,
        )


class RemoteEngineClient(EngineClientInterface):
    """Remote providers as models; every other request goes to ``inner``."""

    def __init__(
        self,
        settings: Settings,
        inner: EngineClientInterface,
        registry: RemoteRegistry | None = None,
        *,
        upstream: UpstreamClient | None = None,
    ) -> None:
        self.settings = settings
        self.inner = inner
        self.registry = registry or RemoteRegistry.for_settings(settings, keep_last_good=True)
        self.upstream = upstream or UpstreamClient()
        self.router = ClusterRouter(max_queue=settings.max_queue)
        self.metrics = RemoteMetrics(inner.metrics_registry)
        self._limits: dict[str, RemoteProvider] = {}
        self._aborted: set[str] = set()
        self._running: set[str] = set()

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """The wrapped kernel's registry, with the remotes' metrics added to it."""
        return self.metrics.registry

    def is_ready(self) -> bool:
        return self.inner.is_ready()

    async def warm_up(self, model: str | None = None) -> None:
        """Load the default model in the wrapped kernel, unless it is a remote."""
        if self.registry.get(model or self.settings.default_model) is not None:
            return
        warm_up = getattr(self.inner, "warm_up", None)
        if warm_up is not None:
            await warm_up(model)
        else:
            await self.inner.load(model, keep_alive=None)

    def remote(self, model: str | None) -> RemoteProvider | None:
        """The remote provider serving ``model`` (None means the default model), if any."""
        return self.registry.get(model or self.settings.default_model)

    def remote_models(self) -> list[RemoteModel]:
        return [RemoteModel(p.name, p.url, p.model) for p in self.registry.list()]

    def _slot(self, provider: RemoteProvider) -> None:
        """Keep the router's one 'replica' per remote at the registered concurrency."""
        if self._limits.get(provider.name) != provider:
            self._limits[provider.name] = provider
            self.router.set_replicas(
                provider.name, [ReplicaState(provider.url, capacity=provider.max_concurrency)]
            )

    # --- generation ----------------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        provider = self.remote(request.model)
        if provider is None:
            return self.inner.generate(request)
        return self._generate(provider, request)

    async def _generate(
        self, provider: RemoteProvider, request: GenerateRequest
    ) -> AsyncIterator[GenerateOutput]:
        call = upstream_request(provider, request)  # refuse what cannot go upstream first
        name = provider.name
        tenant = request.tenant or "anonymous"
        timeout = request.timeout or self.settings.request_timeout
        self._slot(provider)
        self.metrics.waiting.labels(name).inc()
        try:
            async with asyncio.timeout(timeout):
                replica = await self.router.acquire(name, tenant)
        except TimeoutError as error:
            raise RequestTimeoutError(
                f"the request waited {timeout:g} s for a slot of remote {name!r}"
            ) from error
        finally:
            self.metrics.waiting.labels(name).dec()
        assert replica is not None  # a remote's one slot set is always healthy
        started = time.monotonic()
        outcome = "ok"
        self._running.add(request.request_id)
        stream = self._stream(provider, request, call, tenant, started + timeout)
        try:
            async for output in stream:
                yield output
        except LLMasOSError as error:
            outcome = error.code or "error"
            logger.warning("remote %s: %s", name, error.message)
            raise
        finally:
            await stream.aclose()  # now, not at garbage collection: frees the connection
            self.metrics.requests.labels(name, outcome).inc()
            self._running.discard(request.request_id)
            self._aborted.discard(request.request_id)
            self.router.release(name, replica)

    async def _stream(
        self,
        provider: RemoteProvider,
        request: GenerateRequest,
        call: UpstreamRequest,
        tenant: str,
        deadline: float,
    ) -> AsyncGenerator[GenerateOutput, None]:
        """The remote's deltas as kernel outputs, then a final one with the usage (which a
        remote sends after its last text). The remote's silence is bounded by its
        ``timeout`` (httpx's read timeout), the whole reply by the request's deadline."""
        name = provider.name
        started = time.monotonic()
        events = 0
        usage: tuple[int, int, int] | None = None
        finish: str | None = None
        first_token_at: float | None = None
        tool_calls = ToolCallCollector()
        stream = self.upstream.stream(provider, call)
        try:
            async for delta in stream:
                if delta.usage is not None:
                    usage = delta.usage
                tool_calls.add(delta.tool_calls)
                if delta.text:
                    events += 1
                    first_token_at = first_token_at or time.monotonic()
                    self.router.charge(name, tenant, 0, 1)
                finish = finish or delta.finish_reason
                if time.monotonic() > deadline:
                    raise RequestTimeoutError(
                        f"remote {name!r} did not finish within the request's timeout"
                    )
                if request.request_id in self._aborted:
                    finish = "abort"
                    break
                if delta.text or delta.tokens:
                    yield GenerateOutput(
                        request_id=request.request_id,
                        model=name,
                        text=delta.text,
                        tokens=delta.tokens,
                    )
        finally:
            await stream.aclose()
        final = GenerateOutput(
            request_id=request.request_id,
            model=name,
            text=tool_calls.text(call.tool_format),
            finished=True,
            finish_reason=finish or "stop",
        )
        if usage is not None:
            final.prompt_tokens, final.completion_tokens, final.cached_tokens = usage
        else:
            final.prompt_tokens = estimate_tokens(prompt_text(request))
            final.completion_tokens = events
        self.router.charge(name, tenant, final.prompt_tokens, 0)
        now = time.monotonic()
        final.prompt_seconds = (first_token_at or now) - started
        final.generation_seconds = now - (first_token_at or now)
        yield final

    async def abort(self, request_id: str) -> None:
        if request_id in self._running:
            self._aborted.add(request_id)
            return
        await self.inner.abort(request_id)

    # --- other system calls --------------------------------------------------------------

    async def embed(self, model: str | None, texts: Sequence[str]) -> EmbedResult:
        provider = self.registry.get(model) if model else None
        if provider is None:
            return await self.inner.embed(model, texts)
        vectors, tokens = await self.upstream.embed(provider, list(texts))
        if len(vectors) != len(texts):
            raise RemoteProviderError(
                f"remote {provider.name!r} returned {len(vectors)} embeddings for "
                f"{len(texts)} inputs",
                code="remote_bad_response",
            )
        tokens = tokens or sum(estimate_tokens(t) for t in texts)
        return EmbedResult(model=provider.name, vectors=vectors, prompt_tokens=tokens)

    async def tokenize(self, model: str | None, text: str) -> list[int]:
        provider = self.remote(model)
        if provider is None:
            return await self.inner.tokenize(model, text)
        raise UnsupportedError(
            f"remote {provider.name!r} does not expose its tokenizer", param="model"
        )

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        provider = self.remote(request.model)
        if provider is None:
            return await self.inner.count_prompt(request)
        return PromptCount(
            provider.name, estimate_tokens(prompt_text(request)), provider.context_length
        )

    async def score(
        self, request: GenerateRequest, continuations: Sequence[str]
    ) -> ContinuationScores:
        provider = self.remote(request.model)
        if provider is None:
            return await self.inner.score(request, continuations)
        raise UnsupportedError(
            f"remote {provider.name!r} cannot score continuations (the OpenAI API has no "
            "teacher-forced scoring)",
            param="model",
        )

    async def run_job(self, request: JobRequest[T]) -> T:
        """Jobs run in the wrapped kernel's lanes: a remote provider serves models only."""
        return await self.inner.run_job(request)

    async def load(self, model: str | None, keep_alive: float | str | None = "") -> None:
        if self.remote(model) is None:
            await self.inner.load(model, keep_alive)

    async def unload(self, model: str) -> bool:
        if self.remote(model) is not None:
            return False
        return await self.inner.unload(model)

    def background_jobs(self) -> list[BackgroundJob]:
        return self.inner.background_jobs()

    def memory_budget(self) -> int | None:
        return self.inner.memory_budget()

    def resident_models(self) -> list[ResidentModel]:
        return self.inner.resident_models()

    async def close(self) -> None:
        await self.upstream.close()
        await self.inner.close()
