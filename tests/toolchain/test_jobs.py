"""Background toolchain jobs: a real job run to its end, and a real one cancelled."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, ModelNotFoundError, NotFoundError
from llmasos.models.store import ModelStore
from llmasos.toolchain.jobs import JobRegistry
from tests.cli.test_services_cli import llmasos


def _wait(jobs: JobRegistry, job_id: str, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = jobs.get(job_id).state
        if state != "running":
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still running after {seconds} s")


@pytest.mark.model
def test_a_background_eval_ends_with_its_report_and_log(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("Four score and seven years ago our fathers brought forth a new nation.")
    started = llmasos("eval", "smollm2", "--data", str(text), "--window", "32", "--background",
                      home=tmp_path)  # fmt: skip
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.split()[2]
    jobs = JobRegistry(tmp_path / "jobs")
    assert _wait(jobs, job_id) == "done"
    job = jobs.get(job_id)
    assert (
        job.returncode == 0 and job.command[:2] == ["eval", "smollm2"] and "--json" in job.command
    )
    report = jobs.report(job_id)
    assert report is not None and report["task"] == "perplexity" and report["value"] > 1
    listed = llmasos("jobs", "ps", "--json", home=tmp_path)
    assert [j["id"] for j in json.loads(listed.stdout)] == [job_id]
    shown = json.loads(llmasos("jobs", "show", job_id, "--json", home=tmp_path).stdout)
    assert shown["state"] == "done" and shown["report"]["value"] == report["value"]


def test_a_cancelled_job_registers_nothing(tmp_path: Path) -> None:
    jobs = JobRegistry(tmp_path / "jobs")
    job = jobs.start(["quantize", "smollm2", "--to", "q8_0", "--name", "never-there"])
    assert job.state == "running" and job.pid
    ended = jobs.cancel(job.id)
    assert ended.state == "cancelled" and ended.returncode != 0
    with pytest.raises(ModelNotFoundError):
        ModelStore.open(Settings(home=tmp_path)).manifest("never-there")
    assert jobs.cancel(job.id).state == "cancelled"  # cancelling again changes nothing
    with pytest.raises(NotFoundError, match="no job 'nope'"):
        jobs.get("nope")
    with pytest.raises(InvalidRequestError, match="only finetune"):
        jobs.start(["serve"])
