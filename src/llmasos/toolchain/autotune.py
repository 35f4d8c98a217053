"""Tune the default model on a machine's first start, as a background job.

``llmasos tune`` finds the weight format a machine serves a GGUF model fastest in
(`llmasos.toolchain.tune`). A user should not have to know it exists: when the server has
been started and has stayed idle for `IDLE_SECONDS`, `start_auto_tune` starts ``llmasos tune
DEFAULT_MODEL`` as a toolchain job (niceness 10, in the memory ledger; ``llmasos jobs ps``
shows it) unless this machine already has a choice for the model's current version, or a
tune of it has already been tried since that version was written. The job records its
choice in the store, and the kernel serves the chosen version from the model's next request
(the resident copy is replaced, as for any new version).

The candidates depend on the model's precision: re-quantizing a 4- or 5-bit model to
another low-bit format rounds every weight twice and fails ``tune``'s quality gate
(docs/benchmarks.md, "Weight formats of the embedded model"), so a low-bit model is tried in
the formats of 8 bits a weight or more, which keep its quality and prefill faster on CPUs;
a model of 8 bits or more is tried in `DEFAULT_FORMATS`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from llmasos.config import Settings
from llmasos.errors import LLMasOSError
from llmasos.models import ModelStoreInterface
from llmasos.models.manifest import Manifest
from llmasos.toolchain.jobs import FINAL, Job, JobRegistry
from llmasos.toolchain.tune import DEFAULT_FORMATS, WITHOUT_IMATRIX, machine_is_busy

logger = logging.getLogger(__name__)

IDLE_SECONDS = 30.0
"""How long the server must have had no request running or waiting before a tune starts."""
FROM_LOW_BIT = ("Q8_0", "F16")
"""The candidates of a model stored below 8 bits a weight."""
SERVICE_ITEMS: int | None = None
"""Items of each service development set the tune's service gate scores (None: all of
them, a few minutes per version on two cores, in the background)."""


def candidate_formats(manifest: Manifest) -> tuple[str, ...]:
    quantization = (manifest.quantization or "").upper()
    return DEFAULT_FORMATS if quantization in WITHOUT_IMATRIX else FROM_LOW_BIT


def auto_tune_command(store: ModelStoreInterface, name: str) -> list[str] | None:
    """The ``llmasos tune`` command line for ``name``, or None when there is nothing to do:
    not a GGUF generation model, or already tuned (or reset) on this machine."""
    manifest = store.manifest(name)
    if manifest.format != "gguf" or manifest.kind != "generate":
        return None
    if store.tuning_choice(name) is not None:
        return None
    command = ["tune", manifest.name]
    for weight_format in candidate_formats(manifest):
        command += ["--format", weight_format]
    if SERVICE_ITEMS is not None:
        command += ["--service-items", str(SERVICE_ITEMS)]
    return command


def tried_since(jobs: list[Job], command: list[str], manifest: Manifest) -> Job | None:
    """A tune of the same model that is still going, or that started after its current
    version was written (a failed one is not retried on every start: ``llmasos tune`` by
    hand, or ``llmasos jobs logs``, says why)."""
    written = manifest.created_at or ""
    for job in jobs:
        if job.command[:2] != command[:2]:
            continue
        if job.state not in FINAL or job.created >= written:
            return job
    return None


def due(settings: Settings, store: ModelStoreInterface) -> list[str] | None:
    """The default model's tune command when one should start now, else None."""
    if not settings.auto_tune:
        return None
    try:
        command = auto_tune_command(store, settings.default_model)
        if command is None:
            return None
        manifest = store.manifest(settings.default_model)
    except LLMasOSError:  # no such model: the server says so on its own
        return None
    jobs = JobRegistry(settings.home / "jobs").list()
    return None if tried_since(jobs, command, manifest) is not None else command


def start_auto_tune(settings: Settings, store: ModelStoreInterface) -> Job | None:
    """Start the default model's tune as a job if it is due; the job, or None."""
    command = due(settings, store)
    if command is None:
        return None
    try:
        job = JobRegistry(settings.home / "jobs").start(command)
    except LLMasOSError as error:
        logger.warning("could not start tuning %s: %s", command[1], error)
        return None
    logger.info(
        "tuning %s for this machine in the background: llmasos jobs logs %s", command[1], job.id
    )
    return job


async def tune_when_idle(
    settings: Settings,
    store: ModelStoreInterface,
    busy: Callable[[], bool],
    *,
    idle_seconds: float = IDLE_SECONDS,
    poll_seconds: float = 5.0,
    machine_busy: Callable[[], bool] = machine_is_busy,
) -> Job | None:
    """Wait until ``busy()`` (the server) and ``machine_busy()`` (anything else on the
    machine) have been False for ``idle_seconds``, then `start_auto_tune` (at once None when
    the setting is off or nothing is due)."""
    if not settings.auto_tune or await asyncio.to_thread(due, settings, store) is None:
        return None
    quiet_since = time.monotonic()
    while True:
        await asyncio.sleep(poll_seconds)
        if busy() or machine_busy():
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= idle_seconds:
            return await asyncio.to_thread(start_auto_tune, settings, store)
