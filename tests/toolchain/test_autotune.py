"""The server's first-start tune of its default model (`llmasos.toolchain.autotune`): when
it is due, and the real job — ``llmasos tune`` run by the job supervisor on the embedded
model — after which the store serves the chosen version."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from pathlib import Path

import pytest

from llmasos.config import Settings
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.store import ModelStore
from llmasos.toolchain import autotune
from llmasos.toolchain.autotune import (
    FROM_LOW_BIT,
    auto_tune_command,
    candidate_formats,
    due,
    tried_since,
    tune_when_idle,
)
from llmasos.toolchain.jobs import FINAL, Job, JobRegistry
from llmasos.toolchain.tune import DEFAULT_FORMATS, SERVICE_GATE, keep_as_it_is, machine_is_busy

pytestmark = pytest.mark.skipif(
    any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
)


def _settings(tmp_path: Path, **values: object) -> Settings:
    values.setdefault("auto_tune", True)  # tests/conftest.py turns it off for other tests
    return Settings(home=tmp_path / "home", **values)  # type: ignore[arg-type]


def test_a_low_bit_model_is_tried_in_formats_that_keep_its_quality(tmp_path: Path) -> None:
    store = ModelStore.open(_settings(tmp_path))
    shipped = store.manifest("smollm2")
    assert shipped.quantization == "Q4_1"
    assert candidate_formats(shipped) == FROM_LOW_BIT
    eight_bit = dataclasses.replace(shipped, quantization="Q8_0")
    assert candidate_formats(eight_bit) == DEFAULT_FORMATS
    assert auto_tune_command(store, "smollm2") == [
        "tune", shipped.name, "--format", "Q8_0", "--format", "F16",
    ]  # fmt: skip
    assert auto_tune_command(store, "all-minilm") is None  # not a GGUF generation model


def test_a_tune_is_due_once_per_version_and_machine(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = ModelStore.open(settings)
    command = due(settings, store)
    assert command is not None and command[:2] == ["tune", store.manifest("smollm2").name]
    assert due(_settings(tmp_path, auto_tune=False), store) is None
    written = store.manifest("smollm2").created_at
    running = Job(id="a", command=[*command, "--json"], state="running", created="2000-01-01")
    failed_before = Job(id="b", command=command, state="failed", created="2000-01-01T00:00:00Z")
    failed_after = Job(id="c", command=command, state="failed", created=written)
    other = Job(id="d", command=["tune", "other"], state="running", created=written)
    manifest = store.manifest("smollm2")
    assert tried_since([running], command, manifest) is running
    assert tried_since([failed_before, other], command, manifest) is None  # an older version
    assert tried_since([failed_after], command, manifest) is failed_after  # not retried
    keep_as_it_is(store, "smollm2")  # `llmasos tune --reset`: the model stays as it is
    assert due(settings, store) is None
    assert store.resolve("smollm2").manifest.digest == manifest.digest


def test_the_server_tunes_its_default_model_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(autotune, "FROM_LOW_BIT", ("Q8_0",))  # one candidate keeps it short
    monkeypatch.setattr(autotune, "SERVICE_ITEMS", 1)  # and one item of each service set
    monkeypatch.setenv("LLMASOS_MAX_BATCH_SIZE", "2")  # and the job serves batches of two
    settings = _settings(tmp_path)
    store = ModelStore.open(settings)
    reference = store.manifest("smollm2")
    calls: list[float] = []

    def busy() -> bool:  # busy for the first polls, then idle
        calls.append(time.monotonic())
        return len(calls) < 3

    looks: list[float] = []

    def machine_busy() -> bool:  # then other work on the machine, for a while longer
        looks.append(time.monotonic())
        return len(looks) < 6

    job = asyncio.run(
        tune_when_idle(
            settings, store, busy, idle_seconds=0.3, poll_seconds=0.05, machine_busy=machine_busy
        )
    )
    assert job is not None and len(calls) >= 3 and len(looks) >= 6  # waited for both
    assert job.command[:4] == ["tune", reference.name, "--format", "Q8_0"]
    jobs = JobRegistry(settings.home / "jobs")
    deadline = time.monotonic() + 900
    while jobs.get(job.id).state not in FINAL and time.monotonic() < deadline:
        time.sleep(1)
    ended = jobs.get(job.id)
    assert ended.state == "done", jobs.log(job.id)
    report = jobs.report(job.id)
    assert report is not None and {r["format"] for r in report["results"]} == {"Q4_1", "Q8_0"}
    assert report["batch"] == 2 and all(r["seconds_in_batch"] > 0 for r in report["results"])
    # the service gate scored both versions on every service, item by item
    assert all(set(r["services"]) == set(SERVICE_GATE) for r in report["results"])
    assert all(len(items) == 1 for r in report["results"] for items in r["service_items"].values())
    choice = store.tuning_choice("smollm2")
    assert choice is not None and choice.format == report["chosen"]
    assert store.resolve("smollm2").manifest.digest == choice.digest
    assert due(settings, store) is None  # tuned: the next start leaves it alone


def test_a_machine_busy_with_other_work_is_not_quiet_enough_to_tune() -> None:
    cpus = os.cpu_count() or 1
    assert machine_is_busy(lambda: 0.6 * cpus)
    assert not machine_is_busy(lambda: 0.4 * cpus)
