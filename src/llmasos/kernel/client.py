"""The in-process kernel client: the system-call boundary faces use.

It resolves model names through the store, acquires the model from the resource manager,
renders and tokenizes the prompt, enforces admission control (context window, queue bound,
timeouts), hands a `Request` to the model's engine loop and turns the engine's deltas into
`GenerateOutput`s on the caller's event loop. Jobs (`JobRequest`: transcription, OCR,
synthesis) run in its job lanes (`llmasos.kernel.lanes`), on the same fair-share ledger as
every model's scheduler. Nothing outside ``kernel/`` sees the scheduler.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from llmasos.backends.interface import ImagePrompt
from llmasos.config import Settings
from llmasos.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    LLMasOSError,
    QueueFullError,
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
    ResidentModel,
)
from llmasos.kernel.lanes import JobLanes
from llmasos.kernel.media import split_images
from llmasos.kernel.metrics import KernelMetrics
from llmasos.kernel.request import Request, RequestDelta
from llmasos.kernel.residency import ModelInstance, ModelManager
from llmasos.kernel.scheduler.shares import TenantShares
from llmasos.models import ModelStoreInterface, open_model_store
from llmasos.models.manifest import Manifest
from llmasos.types import OLLAMA_PARAMETER_FIELDS, ChatMessage, SamplingParams

T = TypeVar("T")


def apply_model_defaults(
    sampling: SamplingParams, manifest: Manifest, explicit: frozenset[str]
) -> SamplingParams:
    """Fill the parameters the caller did not set from the model's defaults."""
    changes: dict[str, Any] = {}
    for key, value in manifest.parameters.items():
        field = OLLAMA_PARAMETER_FIELDS.get(key)
        if field is None or field in explicit:
            continue
        if field == "stop" and sampling.structured is not None:
            # The grammar decides where structured output ends. A model's default stop
            # strings (ChatML's "<|im_end|>") can be spelled out character by character
            # inside a JSON string, when the grammar keeps the end-of-turn token out, and
            # would cut the document short.
            continue
        if field == "stop":
            value = tuple(value) if isinstance(value, list | tuple) else (str(value),)
        if field == "max_tokens" and int(value) < 0:
            value = None
        changes[field] = value
    return sampling.with_changes(**changes) if changes else sampling


_KIND_WORDS = {
    "generate": "a text model",
    "embed": "an embedding model",
    "transcribe": "a speech recognition model (POST /v1/audio/transcriptions)",
    "speak": "a text-to-speech model (POST /v1/audio/speech)",
}


class InProcessEngineClient(EngineClientInterface):
    """The kernel running inside this process (``llmasos serve``'s default)."""

    def __init__(
        self,
        settings: Settings,
        store: ModelStoreInterface | None = None,
        *,
        metrics: KernelMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.store: ModelStoreInterface = store or open_model_store(settings)
        self.metrics = metrics or KernelMetrics()
        self.shares = TenantShares()
        """The fair-share ledger of every model's scheduler and every job lane."""
        self.models = ModelManager(settings, self.metrics, self.shares)
        self.lanes = JobLanes(
            workers=settings.perception_workers,
            max_waiting=settings.perception_max_waiting,
            tokens_per_second=settings.job_tokens_per_second,
            shares=self.shares,
            metrics=self.metrics,
        )
        self._seq_ids = itertools.count(1)
        self._engines_by_request: dict[str, ModelInstance] = {}
        self._ready = True

    @property
    def metrics_registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def is_ready(self) -> bool:
        return self._ready

    async def warm_up(self, model: str | None = None) -> None:
        """Load the default model at start-up; `is_ready` is False until it is resident."""
        self._ready = False
        try:
            await self.load(model, keep_alive=None)
        finally:
            self._ready = True

    # --- generation ----------------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        return self._generate(request)

    async def _generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        resolved = self.store.resolve(request.model or self.settings.default_model)
        manifest = resolved.manifest
        if manifest.kind != "generate":
            raise UnsupportedError(
                f"{manifest.name} is {_KIND_WORDS[manifest.kind]}; it cannot generate text",
                param="model",
            )
        timeout = request.timeout or self.settings.request_timeout
        model = await self.models.acquire(resolved, request.keep_alive, timeout)
        finished = False
        try:
            assert model.engine is not None
            prompt, tokens, images = await self._encode(model, request)
            sampling = request.sampling
            if request.apply_model_defaults:
                sampling = apply_model_defaults(sampling, manifest, request.explicit)
            default_cap = self._default_cap(request, manifest)
            max_tokens = self._admit(model, tokens, sampling, images)
            capped = default_cap is not None and default_cap < max_tokens
            if capped:
                assert default_cap is not None
                max_tokens = default_cap
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[RequestDelta] = asyncio.Queue()
            kernel_request = Request(
                request_id=request.request_id,
                seq_id=next(self._seq_ids),
                prompt_tokens=tokens,
                sampling=sampling,
                max_tokens=max_tokens,
                tenant=request.tenant or "anonymous",
                priority=request.priority,
                deadline=time.monotonic() + timeout,
                emit=lambda delta: loop.call_soon_threadsafe(queue.put_nowait, delta),
                media=images.media if images is not None else None,
            )
            self._engines_by_request[request.request_id] = model
            model.engine.submit(kernel_request)
            first = True
            while not finished:
                delta = await queue.get()
                finished = delta.finished
                if delta.error is not None:
                    error = delta.error
                    if isinstance(error, LLMasOSError):
                        raise error
                    raise LLMasOSError(f"generation failed: {error}") from error
                output = self._output(request, manifest.name, delta, prompt if first else None)
                if capped and delta.finish_reason == "length" and not delta.stopped_by:
                    output.stopped_by = "default_max_tokens"
                yield output
                first = False
        finally:
            self._engines_by_request.pop(request.request_id, None)
            if not finished and model.engine is not None:
                model.engine.abort(request.request_id)
            self.models.release(model, request.keep_alive)

    def _default_cap(self, request: GenerateRequest, manifest: Manifest) -> int | None:
        """The server's ``default_max_tokens`` when neither the caller nor the model set a
        limit (an explicit "no limit", ``num_predict: -1``, counts as set); else None."""
        cap = self.settings.default_max_tokens
        if cap <= 0 or request.sampling.max_tokens is not None:
            return None
        if "max_tokens" in request.explicit:
            return None
        if request.apply_model_defaults and "num_predict" in manifest.parameters:
            return None
        return cap

    async def _encode(
        self, model: ModelInstance, request: GenerateRequest
    ) -> tuple[str, list[int], ImagePrompt | None]:
        """The rendered prompt, its tokens, and the backend's encoding of its images (None
        without images). Image placeholders count as prompt tokens."""
        prompt, images = self._render_with_images(model, request)
        if not images:
            return prompt, model.backend.tokenize(prompt, add_special=True), None
        backend = model.backend
        encoded = await asyncio.to_thread(backend.encode_images, prompt, images)
        return prompt, encoded.tokens, encoded

    def _render(self, model: ModelInstance, request: GenerateRequest) -> str:
        prompt, images = self._render_with_images(model, request)
        if images:
            raise UnsupportedError(
                "this call takes text only; send the images in a chat request", param="messages"
            )
        return prompt

    def _render_with_images(
        self, model: ModelInstance, request: GenerateRequest
    ) -> tuple[str, list[bytes]]:
        manifest = model.resolved.manifest
        if request.messages is not None:
            messages: list[ChatMessage] = list(request.messages)
        elif request.prompt is not None:
            if request.raw:
                return request.prompt, []
            messages = [{"role": "user", "content": request.prompt}]
        else:
            raise InvalidRequestError("a request needs a prompt or messages", param="messages")
        if not messages:
            raise InvalidRequestError("messages must not be empty", param="messages")
        system = request.system if request.system is not None else manifest.system
        has_system = any(m.get("role") == "system" for m in messages)
        prefix: list[ChatMessage] = []
        if system and not has_system:
            prefix.append({"role": "system", "content": system})
        prefix.extend(dict(m) for m in manifest.messages)
        messages, images = split_images(messages)
        if images and not model.backend.accepts_images:
            raise UnsupportedError(
                f"{model.name} cannot see images (it has no vision projector); send them to "
                "a vision-language model, or through the server's OCR path",
                param="messages",
            )
        return model.backend.render_chat(prefix + messages, tools=request.tools), images

    def _admit(
        self,
        model: ModelInstance,
        tokens: list[int],
        sampling: SamplingParams,
        images: ImagePrompt | None = None,
    ) -> int:
        """Context-window and queue checks; returns the output-token allowance."""
        name = model.name
        context = model.backend.context_length
        if len(tokens) >= context:
            self.metrics.rejected_requests.labels(name, "context").inc()
            seen = f" ({images.image_tokens} of them image tokens)" if images else ""
            raise ContextLengthExceededError(
                f"the prompt is {len(tokens)} tokens, but {name}'s context window is "
                f"{context} tokens{seen}",
                param="messages",
            )
        allowance = context - len(tokens)
        max_tokens = sampling.max_tokens
        if max_tokens is not None and max_tokens > allowance:
            self.metrics.rejected_requests.labels(name, "context").inc()
            raise ContextLengthExceededError(
                f"the prompt is {len(tokens)} tokens and max_tokens is {max_tokens}: together "
                f"{len(tokens) + max_tokens} tokens, more than {name}'s context window of "
                f"{context} tokens",
                param="max_tokens",
            )
        assert model.engine is not None
        _, waiting = model.engine.snapshot()
        if waiting >= self.settings.max_queue:
            self.metrics.rejected_requests.labels(name, "queue_full").inc()
            raise QueueFullError(
                f"{name} has {waiting} requests waiting (max_queue); retry later",
                retry_after=max(1.0, waiting * 0.05),
            )
        return max_tokens if max_tokens is not None else allowance

    @staticmethod
    def _output(
        request: GenerateRequest, model: str, delta: RequestDelta, prompt: str | None
    ) -> GenerateOutput:
        return GenerateOutput(
            request_id=request.request_id,
            model=model,
            text=delta.text,
            tokens=delta.tokens,
            finished=delta.finished,
            finish_reason=delta.finish_reason,
            stopped_by=delta.stopped_by,
            prompt_tokens=delta.num_prompt_tokens,
            completion_tokens=delta.num_output_tokens,
            cached_tokens=delta.num_cached_tokens,
            prompt=prompt,
            queue_seconds=delta.queue_seconds,
            prompt_seconds=delta.prompt_seconds,
            generation_seconds=delta.generation_seconds,
        )

    async def abort(self, request_id: str) -> None:
        model = self._engines_by_request.get(request_id)
        if model is not None and model.engine is not None:
            model.engine.abort(request_id)

    # --- other system calls --------------------------------------------------------------

    async def embed(self, model: str | None, texts: Sequence[str]) -> EmbedResult:
        resolved = self.store.resolve(model or self.settings.default_embedding_model)
        if resolved.manifest.kind in ("transcribe", "speak"):
            raise UnsupportedError(
                f"{resolved.manifest.name} is {_KIND_WORDS[resolved.manifest.kind]}; "
                "it cannot embed text",
                param="model",
            )
        loaded = await self.models.acquire(resolved, "", self.settings.request_timeout)
        try:

            def run() -> tuple[list[list[float]], int]:
                with loaded.embed_lock:
                    return loaded.backend.embed(list(texts))

            vectors, tokens = await asyncio.to_thread(run)
        finally:
            self.models.release(loaded)
        return EmbedResult(model=resolved.manifest.name, vectors=vectors, prompt_tokens=tokens)

    async def tokenize(self, model: str | None, text: str) -> list[int]:
        resolved = self.store.resolve(model or self.settings.default_model)
        loaded = await self.models.acquire(resolved, "", self.settings.request_timeout)
        try:
            return loaded.backend.tokenize(text)
        finally:
            self.models.release(loaded)

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        resolved = self.store.resolve(request.model or self.settings.default_model)
        if resolved.manifest.kind != "generate":
            raise UnsupportedError(
                f"{resolved.manifest.name} is {_KIND_WORDS[resolved.manifest.kind]}; "
                "it has no chat prompt",
                param="model",
            )
        loaded = await self.models.acquire(
            resolved, request.keep_alive, self.settings.request_timeout
        )
        try:
            _, tokens, _ = await self._encode(loaded, request)
            return PromptCount(loaded.name, len(tokens), loaded.backend.context_length)
        finally:
            self.models.release(loaded, request.keep_alive)

    async def score(
        self, request: GenerateRequest, continuations: Sequence[str]
    ) -> ContinuationScores:
        if not continuations or any(not c for c in continuations):
            raise InvalidRequestError("scoring needs non-empty continuations")
        resolved = self.store.resolve(request.model or self.settings.default_model)
        if resolved.manifest.kind != "generate":
            raise UnsupportedError(
                f"{resolved.manifest.name} is {_KIND_WORDS[resolved.manifest.kind]}; "
                "it cannot score text",
                param="model",
            )
        timeout = request.timeout or self.settings.request_timeout
        loaded = await self.models.acquire(resolved, request.keep_alive, timeout)
        try:
            assert loaded.engine is not None
            backend = loaded.backend
            prefix = backend.tokenize(self._render(loaded, request), add_special=True)
            options = [backend.tokenize(c, add_special=False) for c in continuations]
            longest = len(prefix) + max(len(o) for o in options)
            if longest > backend.context_length:
                raise ContextLengthExceededError(
                    f"the prompt and its longest continuation are {longest} tokens, more than "
                    f"{loaded.name}'s context window of {backend.context_length} tokens",
                    param="messages",
                )
            loop = asyncio.get_running_loop()
            future: asyncio.Future[list[list[float]]] = loop.create_future()

            def done(result: object, error: BaseException | None) -> None:
                def settle() -> None:
                    if future.done():
                        return
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(result)  # type: ignore[arg-type]

                loop.call_soon_threadsafe(settle)

            loaded.engine.call(lambda b: b.score_continuations(prefix, options), done)
            logprobs = await asyncio.wait_for(future, timeout)
            return ContinuationScores(loaded.name, logprobs, len(prefix))
        finally:
            self.models.release(loaded, request.keep_alive)

    async def run_job(self, request: JobRequest[T]) -> T:
        return await self.lanes.run(request)

    async def load(self, model: str | None, keep_alive: float | str | None = "") -> None:
        resolved = self.store.resolve(model or self.settings.default_model)
        if resolved.manifest.kind in ("transcribe", "speak"):  # the perception layer runs them
            raise UnsupportedError(
                f"{resolved.manifest.name} is {_KIND_WORDS[resolved.manifest.kind]}; "
                "the kernel does not load it",
                param="model",
            )
        loaded = await self.models.acquire(resolved, keep_alive, self.settings.request_timeout)
        self.models.release(loaded, keep_alive)

    async def unload(self, model: str) -> bool:
        return await self.models.unload(self.store.resolve(model).manifest.name)

    def background_jobs(self) -> list[BackgroundJob]:
        return [
            BackgroundJob(
                id=job.id.removeprefix("job-"),
                command=job.label,
                state=job.state,
                memory_bytes=job.charged,
                estimate_bytes=job.estimate,
                rss_bytes=job.rss,
                yields=job.yields,
            )
            for job in self.models.jobs()
        ]

    def memory_budget(self) -> int | None:
        return self.models.max_memory

    def resident_models(self) -> list[ResidentModel]:
        result = []
        for model in self.models.loaded.values():
            running, waiting = model.engine.snapshot() if model.engine else (0, 0)
            expires = model.expires_at if model.active == 0 else None
            if model.active == 0 and model.keep_alive is None:
                expires = None
            result.append(
                ResidentModel(
                    name=model.name,
                    digest=model.digest,
                    backend=model.backend_name,
                    processor=model.backend.processor,
                    size_bytes=model.size_bytes,
                    context_length=model.backend.context_length,
                    expires_at=expires,
                    running=running,
                    waiting=waiting,
                )
            )
        return result

    async def close(self) -> None:
        await self.models.close()
