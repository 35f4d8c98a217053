"""The resource manager: which models are resident, and for how long.

Models load on first use and stay for their ``keep_alive`` after the last request (default
5 minutes; 0 unloads when the request ends; negative keeps forever), within
``max_loaded_models`` and a memory budget. A model that does not fit evicts idle models,
least recently used first; then asks background toolchain jobs to yield their memory (newest
first, through the `ledger`, which also holds what the jobs use); if every resident model is
busy, the request waits until one becomes idle (or its timeout passes). Loading runs in a
worker thread, once per model, however many requests ask for it at the same moment.

The same ledger is how jobs see serving: the manager publishes its budget, its models' bytes
and a load in progress there, and a job starts or resumes only when it fits beside them.
The memory-pressure rule (`_relieve_pressure`, checked by the keep-alive reaper) asks the
newest job to yield whenever models and jobs together exceed the budget while a model is
loaded, e.g. a job grown past its estimate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field

from llmasos.backends.interface import BackendInterface, LoadSpec
from llmasos.config import Settings, parse_duration, parse_size
from llmasos.errors import QueueFullError, UnsupportedError
from llmasos.kernel.engine import Engine
from llmasos.kernel.ledger import MemoryHolder, MemoryLedger
from llmasos.kernel.metrics import KernelMetrics
from llmasos.kernel.scheduler.shares import TenantShares
from llmasos.models.manifest import ResolvedModel
from llmasos.plugins import get_registry

logger = logging.getLogger(__name__)

FOREVER = None
PRESSURE_CHECK_SECONDS = 2.0
_MANAGERS = itertools.count(1)


@dataclass
class ModelInstance:
    """One loaded model: its backend, and its engine loop when it generates (what
    `ResidentModel` in the kernel interface reports about it)."""

    name: str
    resolved: ResolvedModel
    backend_name: str
    backend: BackendInterface
    engine: Engine | None
    size_bytes: int
    keep_alive: float | None
    expires_at: float | None = None
    last_used: float = field(default_factory=time.monotonic)
    active: int = 0
    embed_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def digest(self) -> str:
        return self.resolved.manifest.digest


def total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def choose_backend(settings: Settings, model_format: str) -> str:
    registry = get_registry()
    candidates = registry.backends_for_format(model_format)
    if settings.backend != "auto" and settings.backend in candidates:
        return settings.backend
    if not candidates:
        raise UnsupportedError(f"no installed backend loads models of format {model_format!r}")
    return candidates[0]


class ModelManager:
    def __init__(
        self, settings: Settings, metrics: KernelMetrics, shares: TenantShares | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.shares = shares or TenantShares()
        """The kernel's fair-share ledger, handed to every engine's scheduling policy."""
        self.loaded: dict[str, ModelInstance] = {}
        self._loading: dict[str, asyncio.Future[ModelInstance]] = {}
        self._changed = asyncio.Condition()
        budget = settings.max_memory
        self.max_memory = parse_size(budget) if budget else int(total_memory_bytes() * 0.75)
        self._reaper: asyncio.Task[None] | None = None
        self.ledger = MemoryLedger(settings.home / "run" / "memory")
        self._holder = MemoryHolder(
            id=f"server-{os.getpid()}-{next(_MANAGERS)}",
            kind="server",
            pid=os.getpid(),
            label=f"{settings.host}:{settings.port}",
            budget=self.max_memory,
        )
        self._yield_asked: set[str] = set()
        self._reserved: dict[str, int] = {}
        """Bytes set aside for models being loaded, by name (published as ``loading``)."""
        self._wanted: dict[str, int] = {}
        """Bytes of loads waiting for room, by name (published as ``wanted``)."""

    # --- acquire / release ---------------------------------------------------------------

    async def acquire(
        self, resolved: ResolvedModel, keep_alive: float | str | None, timeout: float
    ) -> ModelInstance:
        """The loaded model, loading it if needed; counts the caller as active."""
        self._ensure_reaper()
        name = resolved.manifest.name
        deadline = time.monotonic() + timeout
        while True:
            model = self.loaded.get(name)
            if model is not None and model.digest == resolved.manifest.digest:
                model.active += 1
                model.last_used = time.monotonic()
                model.expires_at = None
                if keep_alive != "":
                    model.keep_alive = self._keep_alive(keep_alive)
                return model
            if model is not None:  # a newer version was written under this name
                await self._unload(model, "replaced")
            pending = self._loading.get(name)
            if pending is None:
                future: asyncio.Future[ModelInstance] = asyncio.get_running_loop().create_future()
                self._loading[name] = future
                try:
                    loaded = await self._load(resolved, keep_alive, deadline)
                except BaseException as error:
                    future.set_exception(error)
                    future.exception()  # mark retrieved
                    raise
                finally:
                    self._loading.pop(name, None)
                future.set_result(loaded)
                loaded.active += 1
                return loaded
            await asyncio.shield(pending)

    def release(self, model: ModelInstance, keep_alive: float | str | None = "") -> None:
        """The caller is done; start the model's keep-alive clock when it goes idle."""
        model.active = max(0, model.active - 1)
        model.last_used = time.monotonic()
        if keep_alive != "":
            model.keep_alive = self._keep_alive(keep_alive)
        if model.active == 0:
            if model.keep_alive == 0:
                asyncio.get_running_loop().create_task(self._unload(model, "keep_alive"))
            elif model.keep_alive is not None:
                model.expires_at = time.time() + model.keep_alive
        asyncio.get_running_loop().create_task(self._notify())

    def _keep_alive(self, value: float | str | None) -> float | None:
        if value == "":
            return self.settings.keep_alive_seconds
        if value is None:
            return FOREVER
        return parse_duration(value)

    # --- loading and eviction ------------------------------------------------------------

    def _estimate(self, resolved: ResolvedModel) -> int:
        manifest = resolved.manifest
        kv = self.settings.kv_cache_tokens * 64 * 1024 if manifest.kind == "generate" else 0
        return manifest.size + kv

    def _publish(self) -> None:
        """Write this manager's models and reservation into the ledger."""
        self._holder.models = {m.name: m.size_bytes for m in self.loaded.values()}
        self._holder.loading = sum(self._reserved.values())
        self._holder.wanted = sum(self._wanted.values())
        with contextlib.suppress(OSError):
            self.ledger.put(self._holder)

    def jobs(self) -> list[MemoryHolder]:
        """The background jobs in the ledger (running, waiting for memory, yielded)."""
        try:
            return self.ledger.jobs()
        except OSError:
            return []

    def _ask_jobs_to_yield(self, shortfall: int) -> list[MemoryHolder]:
        """Ask running jobs, newest first, to yield until ``shortfall`` bytes are covered
        (counting those already asked); the jobs still holding memory that were asked."""
        running = [j for j in self.ledger.jobs() if j.state == "running" and j.charged]
        pending = [j for j in running if j.id in self._yield_asked]
        covered = sum(j.charged for j in pending)
        for job in reversed(running):
            if covered >= shortfall:
                break
            if job.id in self._yield_asked:
                continue
            logger.info("asking job %s to yield %d bytes to serving", job.id, job.charged)
            self.ledger.request_yield(job.id)
            self._yield_asked.add(job.id)
            pending.append(job)
            covered += job.charged
        self._yield_asked &= {j.id for j in running}
        return pending

    async def _make_room(self, needed: int, deadline: float, name: str = "") -> None:
        try:
            await self._wait_for_room(needed, deadline, name)
        finally:
            if self._wanted.pop(name, None) is not None:
                self._publish()

    async def _wait_for_room(self, needed: int, deadline: float, name: str) -> None:
        while True:
            used = sum(m.size_bytes for m in self.loaded.values()) + sum(self._reserved.values())
            count_ok = len(self.loaded) < self.settings.max_loaded_models
            with self.ledger.locked():
                jobs = self.ledger.charged(besides=self._holder.id)
                nothing_else = not self.loaded and jobs == 0
                fits = used + jobs + needed <= self.max_memory or nothing_else
                if count_ok and fits:
                    self._wanted.pop(name, None)
                    self._reserved[name] = needed
                    self._publish()
                    return
                if name not in self._wanted:  # jobs wait behind this load from now on
                    self._wanted[name] = needed
                    self._publish()
            idle = [m for m in self.loaded.values() if m.active == 0]
            if idle:
                victim = min(idle, key=lambda m: m.last_used)
                await self._unload(victim, "memory")
                continue
            asked: list[MemoryHolder] = []
            if count_ok and jobs:
                asked = self._ask_jobs_to_yield(used + jobs + needed - self.max_memory)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if asked:
                    raise QueueFullError(
                        f"waiting for background job(s) {', '.join(j.id for j in asked)} to "
                        "yield memory; retry later",
                        retry_after=5,
                    )
                raise QueueFullError(
                    "every resident model is busy and the memory budget is full; retry later",
                    retry_after=5,
                )
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 1.0))

    async def _load(
        self, resolved: ResolvedModel, keep_alive: float | str | None, deadline: float
    ) -> ModelInstance:
        manifest = resolved.manifest
        await self._make_room(self._estimate(resolved), deadline, manifest.name)
        try:
            backend_name = choose_backend(self.settings, manifest.format)
            backend_cls = get_registry().backend(backend_name)
            spec = self.load_spec(resolved)
            started = time.monotonic()
            backend = await asyncio.to_thread(backend_cls.load, spec)
        except BaseException:
            self._reserved.pop(manifest.name, None)
            self._publish()
            raise
        logger.info(
            "loaded %s with %s in %.2fs", manifest.name, backend_name, time.monotonic() - started
        )
        engine = None
        if manifest.kind == "generate":
            engine = Engine(
                manifest.name,
                backend,
                policy=self.settings.scheduler_policy,
                max_batch_tokens=self.settings.max_batch_tokens,
                max_prefill_while_decoding=self.settings.max_prefill_while_decoding,
                metrics=self.metrics,
                shares=self.shares,
            )
        model = ModelInstance(
            name=manifest.name,
            resolved=resolved,
            backend_name=backend_name,
            backend=backend,
            engine=engine,
            size_bytes=backend.memory_bytes(),
            keep_alive=self._keep_alive(keep_alive),
        )
        self.loaded[manifest.name] = model
        self._reserved.pop(manifest.name, None)
        self._publish()
        self.metrics.model_loads.labels(manifest.name).inc()
        self.metrics.resident_memory.labels(manifest.name).set(model.size_bytes)
        return model

    def load_spec(self, resolved: ResolvedModel) -> LoadSpec:
        manifest = resolved.manifest
        context = int(manifest.parameters.get("num_ctx") or self.settings.context_length)
        if manifest.context_length:
            context = min(context, manifest.context_length)
        cache_dir = self.settings.home / "cache" / "transformers" / manifest.short_id
        return LoadSpec(
            path=resolved.path,
            format=manifest.format,
            context_length=context,
            max_sequences=self.settings.max_batch_size,
            kv_capacity_tokens=max(self.settings.kv_cache_tokens, context),
            threads=self.settings.effective_threads,
            embedding=manifest.kind == "embed",
            chat_template=manifest.chat_template,
            options={
                "cache_dir": str(cache_dir),
                "adapter": resolved.adapter_path,
                "projector": resolved.projector_path,
                "name": manifest.name,
                "digest": manifest.digest,
                "runtime": self.settings.embedding_runtime,
            },
        )

    async def unload(self, name: str) -> bool:
        model = self.loaded.get(name)
        if model is None:
            return False
        await self._unload(model, "request")
        return True

    async def _unload(self, model: ModelInstance, reason: str) -> None:
        if self.loaded.get(model.name) is not model:
            return
        del self.loaded[model.name]
        if model.engine is not None:
            await asyncio.to_thread(model.engine.stop)
        else:
            await asyncio.to_thread(model.backend.close)
        self.metrics.model_evictions.labels(model.name, reason).inc()
        self.metrics.resident_memory.labels(model.name).set(0)
        self._publish()
        logger.info("unloaded %s (%s)", model.name, reason)
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- keep-alive expiry ---------------------------------------------------------------

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        last_pressure_check = 0.0
        while True:
            await asyncio.sleep(0.5)
            now = time.time()
            for model in list(self.loaded.values()):
                if model.active == 0 and model.expires_at is not None and now >= model.expires_at:
                    await self._unload(model, "idle")
            if time.monotonic() - last_pressure_check >= PRESSURE_CHECK_SECONDS:
                last_pressure_check = time.monotonic()
                with contextlib.suppress(OSError):
                    self._relieve_pressure()

    def _relieve_pressure(self) -> None:
        """While a model is loaded, jobs that push the total past the budget (one grown past
        its estimate, one admitted while this manager was not publishing) are asked to
        yield, newest first."""
        if not self.loaded:
            self._yield_asked.clear()
            return
        used = sum(m.size_bytes for m in self.loaded.values()) + sum(self._reserved.values())
        jobs = self.ledger.charged(besides=self._holder.id)
        if jobs and used + jobs > self.max_memory:
            self._ask_jobs_to_yield(used + jobs - self.max_memory)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for model in list(self.loaded.values()):
            await self._unload(model, "shutdown")
        with contextlib.suppress(OSError):
            self.ledger.remove(self._holder.id)
