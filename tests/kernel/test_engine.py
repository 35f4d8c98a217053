"""The engine's step loop on the fake backend: finishing, stop strings, aborts, failures."""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmasos.backends.interface import LoadSpec
from llmasos.errors import RequestTimeoutError
from llmasos.kernel.engine import Engine
from llmasos.kernel.metrics import KernelMetrics
from llmasos.kernel.request import Request, RequestDelta
from llmasos.types import SamplingParams, StructuredOutput
from tests.kernel.fake_backend import FakeBackend

_ids = itertools.count(1)


def make_engine(**options: Any) -> tuple[Engine, FakeBackend]:
    backend = FakeBackend.load(
        LoadSpec(
            path=Path("."), format="fake", context_length=512, max_sequences=4, options=options
        )
    )
    engine = Engine("fake", backend, policy="fair", max_batch_tokens=64, metrics=KernelMetrics())
    return engine, backend


def submit(
    engine: Engine,
    prompt: str = "hello",
    *,
    tenant: str = "anonymous",
    on_delta: Callable[[RequestDelta], None] | None = None,
    **sampling: Any,
) -> queue.Queue[RequestDelta]:
    deltas: queue.Queue[RequestDelta] = queue.Queue()
    seq_id = next(_ids)
    max_tokens = sampling.pop("max_tokens", 10)
    deadline = sampling.pop("deadline", None)

    def emit(delta: RequestDelta) -> None:
        if on_delta is not None:
            on_delta(delta)
        deltas.put(delta)

    request = Request(
        request_id=f"r{seq_id}",
        seq_id=seq_id,
        prompt_tokens=engine.backend.tokenize(prompt),
        sampling=SamplingParams(temperature=0, **sampling),
        max_tokens=max_tokens,
        deadline=deadline,
        tenant=tenant,
        emit=emit,
    )
    engine.submit(request)
    return deltas


def drain(deltas: queue.Queue[RequestDelta]) -> tuple[str, RequestDelta]:
    text = []
    while True:
        delta = deltas.get(timeout=10)
        text.append(delta.text)
        if delta.finished:
            return "".join(text), delta


def test_length_and_end_of_generation_finish_requests() -> None:
    engine, _ = make_engine(stop_at=8)
    try:
        text, last = drain(submit(engine, "hey", max_tokens=3))
        assert last.finish_reason == "length" and len(text) == 3
        assert last.num_output_tokens == 3 and last.num_prompt_tokens == 3
        text, last = drain(submit(engine, "hey", max_tokens=50))
        assert last.finish_reason == "stop"  # the fake emits end-of-generation at length 8
        assert last.num_output_tokens == 6  # 5 letters, then the end token
    finally:
        engine.stop()


def test_stop_string_is_cut_and_never_streamed() -> None:
    engine, _ = make_engine()
    try:
        full, _ = drain(submit(engine, "abc", max_tokens=12))
        stop = full[4:6]
        text, last = drain(submit(engine, "abc", max_tokens=12, stop=(stop,)))
        assert last.finish_reason == "stop"
        assert text == full[: full.index(stop)]
    finally:
        engine.stop()


def test_abort_and_deadline() -> None:
    engine, _ = make_engine()
    try:
        deltas = submit(engine, "abc", max_tokens=400, ignore_eos=True)
        deltas.get(timeout=10)
        engine.abort(next(iter(engine._tracked)))
        _, last = drain(deltas)
        assert last.finish_reason == "abort"
        _, last = drain(submit(engine, "abc", max_tokens=400, deadline=time.monotonic() - 1))
        assert isinstance(last.error, RequestTimeoutError)
    finally:
        engine.stop()


def test_a_scheduler_failure_fails_requests_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine, _ = make_engine()
    try:

        def broken() -> None:
            raise RuntimeError("scheduler bug")

        monkeypatch.setattr(engine.scheduler, "schedule", broken)
        _, last = drain(submit(engine))
        assert last.finish_reason == "error" and isinstance(last.error, RuntimeError)
    finally:
        monkeypatch.undo()
        engine.stop()


def test_stop_closes_the_backend() -> None:
    engine, backend = make_engine()
    engine.stop()
    assert backend.closed


def test_the_repetition_guard_stops_a_looping_reply_and_says_so() -> None:
    engine, _ = make_engine(loop_period=5)
    try:
        text, last = drain(submit(engine, "abc", max_tokens=400))
        assert last.finish_reason == "length" and last.stopped_by == "repetition_guard"
        assert last.num_output_tokens < 400
        assert set(text) <= set("abcdef")
        text, last = drain(submit(engine, "abc", max_tokens=150, repetition_guard=False))
        assert last.finish_reason == "length" and last.stopped_by is None
        assert last.num_output_tokens == 150
        # grammar-constrained output is bounded by max_tokens, never cut into invalid JSON
        structured = StructuredOutput(kind="json_object")
        text, last = drain(submit(engine, "abc", max_tokens=150, structured=structured))
        assert last.stopped_by is None and last.num_output_tokens == 150
    finally:
        engine.stop()


def test_running_requests_per_tenant_are_exported_while_they_run_and_dropped_after() -> None:
    engine, _ = make_engine()
    registry = engine.metrics.registry

    def running(tenant: str) -> float | None:
        labels = {"model_name": "fake", "tenant": tenant}
        return registry.get_sample_value("llmasos:tenant_requests_running", labels)

    seen: dict[str, list[float | None]] = {"alice": [], "bob": []}

    def recorder(tenant: str) -> Callable[[RequestDelta], None]:
        tokens = itertools.count()

        def record(delta: RequestDelta) -> None:
            # from its second token on, the request ran in the step before, whose end
            # published the gauges: its tenant has a series of at least 1
            if not delta.finished and next(tokens) >= 1:
                seen[tenant].append(running(tenant))

        return record

    try:
        streams = [
            submit(engine, "abc", tenant=t, on_delta=recorder(t), max_tokens=12, ignore_eos=True)
            for t in ("alice", "alice", "bob")
        ]
        for deltas in streams:
            drain(deltas)
        assert seen["alice"] and all(v is not None and 1 <= v <= 2 for v in seen["alice"])
        assert seen["bob"] and all(v == 1 for v in seen["bob"])
        deadline = time.monotonic() + 5
        while running("alice") is not None or running("bob") is not None:
            assert time.monotonic() < deadline, "idle tenants kept their series"
            time.sleep(0.01)
    finally:
        engine.stop()
