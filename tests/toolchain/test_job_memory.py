"""Background jobs and the kernel's resource manager share one memory budget.

A real job (an evaluation of the embedded model) runs beside the real `ModelManager` loading
the real model with llama.cpp, under a budget that holds either but not both: the load asks
the job to yield, the job stops and waits (``yielded``), a second job queues (``waiting``),
and both run to their end once the model is unloaded. The ledger's rules are checked on
their own first, without a model.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llmasos.config import Settings
from llmasos.errors import QueueFullError
from llmasos.kernel.client import InProcessEngineClient
from llmasos.kernel.ledger import MemoryHolder, MemoryLedger
from llmasos.kernel.metrics import KernelMetrics
from llmasos.kernel.residency import ModelManager
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.store import ModelStore
from llmasos.server.ollama.models.serving import OllamaModelsService
from llmasos.toolchain.jobs import FINAL, Job, JobRegistry
from llmasos.toolchain.perplexity import public_domain_text
from tests.cli.test_services_cli import llmasos

MiB = 2**20


def _until(condition: Callable[[], bool], seconds: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {seconds} s")
        time.sleep(0.2)


def test_the_ledger_charges_running_jobs_and_forgets_dead_ones(tmp_path: Path) -> None:
    ledger = MemoryLedger(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        first = MemoryHolder(id="job-a", kind="job", pid=sleeper.pid, estimate=300 * MiB)
        assert ledger.admit(first, default_budget=500 * MiB)  # alone: fits
        second = MemoryHolder(id="job-b", kind="job", pid=os.getpid(), estimate=300 * MiB)
        assert not ledger.admit(second, default_budget=500 * MiB)  # 600 > 500: waits
        assert [h.state for h in ledger.holders()] == ["running", "waiting"]
        assert ledger.charged() == 300 * MiB
        first.peak = 400 * MiB  # measured past its estimate: the measurement counts
        ledger.put(first)
        assert ledger.charged() == 400 * MiB
        server = MemoryHolder(id="server-1", kind="server", pid=os.getpid(), budget=800 * MiB,
                              models={"m": 150 * MiB})  # fmt: skip
        ledger.put(server)
        assert ledger.budget(default=500 * MiB) == 800 * MiB  # a server's budget rules
        assert not ledger.admit(second, default_budget=500 * MiB)  # 400 + 150 + 300 > 800
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [h.id for h in ledger.holders()] == ["job-b", "server-1"]  # job-a's process died
    assert ledger.admit(second, default_budget=500 * MiB)  # 150 + 300
    assert ledger.charged() == 450 * MiB


@pytest.mark.skipif(package_path(BUILTINS[0]) is None, reason="the embedded model is missing")
def test_a_load_that_needs_a_job_to_yield_fails_clearly_if_it_does_not(tmp_path: Path) -> None:
    """A job that does not stop (here: an entry held by this very process) makes the load
    fail after its timeout, naming the job, instead of overrunning the budget."""
    settings = Settings(home=tmp_path, max_memory="150MiB", kv_cache_tokens=256)
    manager = ModelManager(settings, KernelMetrics())
    stuck = MemoryHolder(id="job-stuck", kind="job", pid=os.getpid(), estimate=90 * MiB)
    assert manager.ledger.admit(stuck, default_budget=150 * MiB)
    resolved = ModelStore.open(settings).resolve("smollm2")  # ~110 MiB with its cache

    async def load() -> None:
        try:
            await manager.acquire(resolved, "", timeout=1.5)
        finally:
            await manager.close()

    with pytest.raises(QueueFullError, match="job-stuck to yield memory"):
        asyncio.run(load())
    assert manager.ledger.yield_requested("job-stuck") and not manager.loaded


def _state(jobs: JobRegistry, job_id: str) -> Job:
    return jobs.get(job_id)


@pytest.mark.model
@pytest.mark.skipif(package_path(BUILTINS[0]) is None, reason="the embedded model is missing")
def test_a_job_yields_memory_to_a_model_load_and_resumes(tmp_path: Path) -> None:
    ModelStore.open(Settings(home=tmp_path))  # the store set up before the job reads it
    long_text = tmp_path / "long.txt"  # three times the shipped text: still running when asked
    long_text.write_text("\n\n".join([public_domain_text()] * 3))
    jobs = JobRegistry(tmp_path / "jobs")
    first = jobs.start(["eval", "smollm2", "--data", str(long_text), "--window", "128",
                        "--threads", "1"])  # fmt: skip
    _until(lambda: _state(jobs, first.id).memory_rss > 0, what="running")
    running = _state(jobs, first.id)
    assert running.state == "running" and running.memory_estimate > 100 * MiB

    # a budget that holds the job or the model (its GGUF and a 1,024-token cache), not both
    settings = Settings(home=tmp_path, max_memory=f"{running.memory_estimate + 60 * MiB}",
                        kv_cache_tokens=1024, context_length=1024, threads=1)  # fmt: skip
    kernel = InProcessEngineClient(settings)
    manager = kernel.models

    async def serve() -> None:
        await kernel.load("smollm2")  # asks the job to yield, waits for it, loads
        job = _state(jobs, first.id)
        assert job.state == "yielded" and job.yields == 1 and job.memory_rss == 0
        assert "yielding" in jobs.log(first.id)
        second = jobs.start(["eval", "smollm2", "--window", "256", "--threads", "1"])
        await asyncio.sleep(2)  # neither fits beside the model: both wait
        assert _state(jobs, second.id).state == "waiting"
        assert _state(jobs, first.id).state == "yielded"
        status = await OllamaModelsService(kernel, kernel.store).ps()  # GET /api/ps
        assert [(j["id"], j["state"], j["memory_bytes"]) for j in status["jobs"]] == [
            (first.id, "yielded", 0),
            (second.id, "waiting", 0),
        ]
        assert status["memory"]["models"] == status["models"][0]["size"] > 0
        assert status["memory"]["budget"] == manager.max_memory
        shown = json.loads(llmasos("jobs", "ps", "--json", home=tmp_path).stdout)
        assert [j["state"] for j in shown] == ["yielded", "waiting"]
        table = llmasos("jobs", "ps", home=tmp_path, COLUMNS="200").stdout
        assert "yielded to serving" in table and "waiting for memory" in table
        assert await kernel.unload("smollm2")  # memory is free: the jobs run, one at a time
        both = (first.id, second.id)
        await asyncio.to_thread(
            _until, lambda: all(_state(jobs, j).state in FINAL for j in both), 300, "both done"
        )
        first_run, second_run = (_state(jobs, j) for j in both)
        assert first_run.finished <= second_run.finished  # the yielded one resumed first
        await kernel.close()

    asyncio.run(serve())
    for job_id in (first.id, jobs.list()[-1].id):
        job = _state(jobs, job_id)
        assert job.state == "done" and job.memory_peak > 100 * MiB
        report = jobs.report(job_id)
        assert report is not None and report["value"] > 1
    assert _state(jobs, first.id).yields == 1
    assert not list((tmp_path / "run" / "memory").glob("*.json"))  # every holder left
