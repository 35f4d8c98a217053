"""The kernel in this process, for SDK code that runs with no server.

`LocalKernel` runs an `InProcessEngineClient` (and a `ServiceRunner` over it) on a private
asyncio event loop in a daemon thread. Blocking callers submit coroutines to that loop and
wait, so it works from plain synchronous code and from inside a running event loop (the
caller's loop is never used). One kernel is shared per LLMasOS home (`LocalKernel.shared`),
so several `LLM` objects and pipelines load each model once. It closes at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from llmasos.config import Settings, load_settings
from llmasos.errors import LLMasOSError
from llmasos.kernel.client import InProcessEngineClient
from llmasos.models import ModelStoreInterface, open_model_store
from llmasos.services.runner import ServiceRunner, runner_for

T = TypeVar("T")


class LocalKernel:
    """An in-process kernel on its own event-loop thread."""

    _shared: ClassVar[dict[Path, LocalKernel]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.store: ModelStoreInterface = open_model_store(self.settings)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="llmasos-sdk-kernel", daemon=True
        )
        self.thread.start()
        self._closed = False
        self.engine: InProcessEngineClient = self.run(self._make_engine())
        self.services: ServiceRunner = runner_for(
            self.engine, self.settings.home, self.store, self.settings.default_model
        )
        atexit.register(self.close)

    async def _make_engine(self) -> InProcessEngineClient:
        return InProcessEngineClient(self.settings, self.store)

    @classmethod
    def shared(cls, settings: Settings | None = None) -> LocalKernel:
        """The kernel of ``settings.home`` in this process, started on first use."""
        settings = settings or load_settings()
        with cls._shared_lock:
            kernel = cls._shared.get(settings.home)
            if kernel is None or kernel._closed:
                kernel = cls._shared[settings.home] = cls(settings)
            return kernel

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the kernel's loop and wait for its result."""
        if self._closed:
            coroutine.close()
            raise LLMasOSError("the in-process kernel is closed")
        if threading.current_thread() is self.thread:
            coroutine.close()
            raise LLMasOSError("LocalKernel.run was called from the kernel's own loop")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator on the kernel's loop, one item at a time.

        Leaving the loop early closes the iterator, which aborts a generation.
        """

        async def step() -> tuple[bool, T | None]:
            try:
                return True, await anext(iterator)
            except StopAsyncIteration:
                return False, None

        async def close() -> None:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

        finished = False
        try:
            while True:
                more, item = self.run(step())
                if not more:
                    finished = True
                    return
                yield item  # type: ignore[misc]
        finally:
            if not finished and not self._closed:
                self.run(close())

    def close(self) -> None:
        """Unload every model and stop the loop thread (idempotent)."""
        if self._closed:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.engine.close(), self.loop).result(timeout=60)
        finally:
            self._closed = True
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            if not self.thread.is_alive():
                self.loop.close()
            atexit.unregister(self.close)
            with self._shared_lock:
                if self._shared.get(self.settings.home) is self:
                    del self._shared[self.settings.home]
