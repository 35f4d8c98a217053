"""Background toolchain jobs: ``llmasos finetune|distill|prune|quantize|eval ... --background``.

The toolchain runs without a server (the server's tasks are agent runs inside it, and need
one), so its jobs are local processes recorded under ``$LLMASOS_HOME/jobs/<id>/``:

- ``job.json``: the command, the supervisor's and the command's process ids, the state
  (``running``, ``done``, ``failed``, ``cancelled``, ``lost``), times and exit code; written
  whole and renamed, so a reader never sees half of it;
- ``log``: the command's standard error (progress, warnings, the one-line error);
- ``report.json``: its standard output, the command run with ``--json`` (the report).

`JobRegistry.start` launches a detached supervisor (``python -m llmasos.toolchain.jobs DIR``,
its own session, niceness 10 inherited by the command, so serving on the same machine keeps
the CPU it needs) which runs the command, waits and records how it ended. `cancel` sends the
command SIGINT: the toolchain's commands treat it as Ctrl-C (a fine-tune keeps its last
checkpoint, and the store's change that registers a result is one transaction, so nothing
is half-registered); a command that has not stopped after `CANCEL_GRACE` seconds is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmasos.errors import InvalidRequestError, NotFoundError

COMMANDS = ("finetune", "distill", "prune", "quantize", "eval")
NICENESS = 10
CANCEL_GRACE = 30.0
FINAL = ("done", "failed", "cancelled", "lost")
_SUPERVISORS: list[subprocess.Popen[bytes]] = []
"""Supervisors this process started: polled (reaped) when jobs are read, never waited for."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Job:
    id: str
    command: list[str]
    """The ``llmasos`` arguments run (with ``--json``)."""
    state: str = "running"
    created: str = ""
    finished: str = ""
    returncode: int | None = None
    supervisor_pid: int = 0
    pid: int = 0
    """The command's process."""
    directory: str = ""
    cancel_requested: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def path(self) -> Path:
        return Path(self.directory)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has finished
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _write(job: Job) -> None:
    path = job.path / "job.json"
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(job.to_dict(), indent=2))
    os.replace(temporary, path)


def _read(directory: Path) -> Job:
    return Job(**json.loads((directory / "job.json").read_text()))


class JobRegistry:
    """The jobs under one home (``settings.home / "jobs"``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def start(self, arguments: list[str]) -> Job:
        """Run ``llmasos ARGUMENTS --json`` in the background; the job, already running."""
        if not any(a in COMMANDS for a in arguments):
            raise InvalidRequestError(
                f"only {', '.join(COMMANDS)} run in the background", param="background"
            )
        command = [a for a in arguments if a != "--background"]
        if "--json" not in command:
            command.append("--json")
        job_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        directory = self.root / job_id
        directory.mkdir(parents=True)
        job = Job(id=job_id, command=command, created=_now(), directory=str(directory))
        _write(job)
        process = subprocess.Popen(
            [sys.executable, "-m", "llmasos.toolchain.jobs", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, "LLMASOS_HOME": str(self.root.parent)},  # the jobs' home
        )
        _SUPERVISORS.append(process)
        for _ in range(50):  # the supervisor records the command's pid as it starts it
            current = _read(directory)
            if current.pid:
                return current
            time.sleep(0.1)
        return _read(directory)

    def list(self) -> list[Job]:
        if not self.root.is_dir():
            return []
        jobs = []
        for entry in sorted(self.root.iterdir()):
            if (entry / "job.json").is_file():
                jobs.append(self._refresh(_read(entry)))
        return jobs

    def get(self, job_id: str) -> Job:
        directory = self.root / job_id
        if "/" in job_id or not (directory / "job.json").is_file():
            known = ", ".join(j.id for j in self.list()[-5:]) or "none"
            raise NotFoundError(f"no job {job_id!r} (recent: {known}; `llmasos jobs ps`)")
        return self._refresh(_read(directory))

    def _refresh(self, job: Job) -> Job:
        """A running job whose supervisor died without recording the end is ``lost``."""
        for process in list(_SUPERVISORS):
            if process.poll() is not None:
                _SUPERVISORS.remove(process)
        if job.state == "running" and not _alive(job.supervisor_pid) and job.supervisor_pid:
            time.sleep(0.05)  # the supervisor may be writing its last record
            job = _read(job.path)
            if job.state == "running":
                job.state = "lost"
        return job

    def log(self, job_id: str) -> str:
        path = self.get(job_id).path / "log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def report(self, job_id: str) -> dict[str, Any] | None:
        path = self.get(job_id).path / "report.json"
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else {"report": value}

    def cancel(self, job_id: str, wait: float = CANCEL_GRACE + 5) -> Job:
        """Interrupt the job's command (SIGINT, then SIGKILL after the grace); the job."""
        job = self.get(job_id)
        if job.state in FINAL:
            return job
        (job.path / "cancel").touch()
        if job.pid and _alive(job.pid):
            os.kill(job.pid, signal.SIGINT)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job.state in FINAL:
                return job
            time.sleep(0.2)
        return job


def supervise(directory: Path) -> int:
    """Run the job in ``directory`` to its end and record how it ended (the detached part)."""
    job = _read(directory)
    with contextlib.suppress(OSError):
        os.nice(max(0, NICENESS - os.nice(0)))
    job.supervisor_pid = os.getpid()
    with (directory / "report.json").open("wb") as out, (directory / "log").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmasos", *job.command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        job.pid = process.pid
        _write(job)
        killed = False
        while True:
            try:
                returncode = process.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                cancel = directory / "cancel"
                late = cancel.exists() and time.time() - cancel.stat().st_mtime > CANCEL_GRACE
                if late and not killed:
                    process.kill()
                    killed = True
    job.returncode = returncode
    job.cancel_requested = (directory / "cancel").exists()
    job.state = "cancelled" if job.cancel_requested else ("done" if returncode == 0 else "failed")
    job.finished = _now()
    _write(job)
    return returncode


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1])))
