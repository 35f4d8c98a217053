"""Background toolchain jobs: ``llmasos finetune|distill|prune|quantize|eval|tune ...
--background``.

The toolchain runs without a server (the server's tasks are agent runs inside it, and need
one), so its jobs are local processes recorded under ``$LLMASOS_HOME/jobs/<id>/``:

- ``job.json``: the command, the supervisor's and the command's process ids, the state
  (``waiting`` for memory, ``running``, ``yielded``, then ``done``, ``failed``,
  ``cancelled`` or ``lost``), its memory (estimate, resident set now and at its peak), times
  and exit code; written whole and renamed, so a reader never sees half of it;
- ``log``: the command's standard error (progress, warnings, the one-line error);
- ``report.json``: its standard output, the command run with ``--json`` (the report).

`JobRegistry.start` launches a detached supervisor (``python -m llmasos.toolchain.jobs DIR``,
its own session, niceness 10 inherited by the command, so serving on the same machine keeps
the CPU it needs) which runs the command, waits and records how it ended. `cancel` sends the
command SIGINT: the toolchain's commands treat it as Ctrl-C (a fine-tune keeps its last
checkpoint, and the store's change that registers a result is one transaction, so nothing
is half-registered); a command that has not stopped gets the SIGINT again after
`RESEND_AFTER` seconds and is killed after `CANCEL_GRACE`.

Memory: jobs are in the kernel's memory ledger (`llmasos.kernel.ledger`) with the server's
models. Before it starts, a job's memory is estimated from its command and model
(`estimate_memory`); it starts only when that fits in the budget beside the server's models
and the other jobs (until then it is ``waiting``), and while it runs the supervisor records
its measured resident set. When serving needs the memory, the server asks the job to yield:
the supervisor interrupts the command as Ctrl-C would (a fine-tune checkpoints at the step it
is on), marks the job ``yielded`` and runs the same command again once it fits (a fine-tune
resumes from the checkpoint; the other commands are short and start over).
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

from llmasos.config import Settings, load_settings, parse_size
from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.kernel.ledger import MemoryHolder, MemoryLedger, process_alive, resident_bytes
from llmasos.kernel.residency import total_memory_bytes

COMMANDS = ("finetune", "distill", "prune", "quantize", "eval", "tune")
NICENESS = 10
CANCEL_GRACE = 30.0
RESEND_AFTER = 10.0
"""Seconds after which a command that has not stopped gets its SIGINT again."""
POLL_SECONDS = 0.5
FINAL = ("done", "failed", "cancelled", "lost")
MiB = 2**20
PYTHON_BYTES = 150 * MiB
"""A command's interpreter, llmasos and numpy, before any model."""
TORCH_BYTES = 600 * MiB
"""torch and transformers, imported."""
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
    memory_estimate: int = 0
    """Bytes expected before it starts (`estimate_memory`); what it is admitted on."""
    memory_rss: int = 0
    """The command's resident set now (0 while it waits or has yielded)."""
    memory_peak: int = 0
    """The largest resident set the command has had."""
    yields: int = 0
    """How often it gave its memory back to serving."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def path(self) -> Path:
        return Path(self.directory)


def _option(command: list[str], name: str) -> str | None:
    for index, argument in enumerate(command):
        if argument == name and index + 1 < len(command):
            return command[index + 1]
        if argument.startswith(name + "="):
            return argument.split("=", 1)[1]
    return None


def estimate_memory(command: list[str], home: Path) -> int:
    """The bytes ``llmasos COMMAND`` is expected to hold at its peak, from its model's size
    and parameter count: llama.cpp maps the GGUF and adds its context; torch holds float32
    weights (4 bytes a parameter), and training adds gradients and two AdamW moments for
    what it trains (full: every weight; LoRA: a few percent). Deliberately round: the
    measured resident set replaces it once the job runs."""
    from llmasos.models import open_model_store

    store = open_model_store(load_settings(home=home))

    def model(name: str | None) -> tuple[int, int]:
        if not name or name.startswith("-"):
            return 0, 0
        try:
            manifest = store.manifest(name)
        except Exception:  # an unknown model: the command itself will say so
            return 0, 0
        return manifest.size, manifest.parameter_count or manifest.size

    verb = command[0]
    size, parameters = model(command[1] if len(command) > 1 else None)
    if verb == "eval" and _option(command, "--backend") != "transformers":
        return PYTHON_BYTES + size + 64 * MiB  # the GGUF mapped, a small context
    if verb == "eval":
        return TORCH_BYTES + 4 * parameters
    if verb == "quantize":  # the source, a de-quantized F16 copy, the result, a perplexity
        return PYTHON_BYTES + 2 * size + 2 * parameters
    if verb == "tune":  # every version loaded side by side (F16 at most 2 bytes a weight)
        candidates = command.count("--format") or 2  # tune's two default candidates
        return PYTHON_BYTES + size + candidates * 2 * parameters + (candidates + 1) * 64 * MiB
    if verb == "finetune":
        full = _option(command, "--method") == "full"
        return TORCH_BYTES + (16 if full else 5) * parameters
    if verb == "prune":
        return TORCH_BYTES + 8 * parameters
    if verb == "distill":
        _, teacher = model(_option(command, "--teacher"))
        _, student = model(_option(command, "--student"))
        return TORCH_BYTES + 4 * teacher + 16 * student
    return TORCH_BYTES


def default_budget(settings: Settings) -> int:
    """The budget jobs keep to when no server publishes one: the server's own default."""
    if settings.max_memory:
        return parse_size(settings.max_memory)
    return int(total_memory_bytes() * 0.75)


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
        job.memory_estimate = estimate_memory(command, self.root.parent)
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
        for _ in range(50):  # the supervisor records the command's pid, or that it waits
            current = _read(directory)
            if current.pid or current.state == "waiting":
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
        if job.state not in FINAL and job.supervisor_pid and not process_alive(job.supervisor_pid):
            time.sleep(0.05)  # the supervisor may be writing its last record
            job = _read(job.path)
            if job.state not in FINAL:
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
        if job.state == "running" and job.pid and process_alive(job.pid):
            os.kill(job.pid, signal.SIGINT)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job.state in FINAL:
                return job
            time.sleep(0.2)
        return job


class _Supervisor:
    """Runs one job's command until it ends, through waits for memory and yields."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.job = _read(directory)
        self.job.supervisor_pid = os.getpid()
        settings = load_settings()  # the jobs' home, from LLMASOS_HOME
        self.budget = default_budget(settings)
        self.ledger = MemoryLedger(settings.home / "run" / "memory")
        self.holder = MemoryHolder(
            id=f"job-{self.job.id}",
            kind="job",
            pid=os.getpid(),
            state="waiting",
            label=" ".join(self.job.command),
            estimate=self.job.memory_estimate,
        )

    @property
    def cancelled(self) -> bool:
        return (self.directory / "cancel").exists()

    def _set(self, state: str) -> None:
        self.job.state = state
        _write(self.job)

    def _wait_for_memory(self) -> bool:
        """Block until the job fits (admitted in the ledger); False if cancelled first."""
        while not self.ledger.admit(self.holder, self.budget):
            waiting = "yielded" if self.job.yields else "waiting"
            if self.job.state != waiting:
                self._set(waiting)
            if self.cancelled:
                return False
            time.sleep(POLL_SECONDS)
        self.ledger.clear_yield(self.holder.id)
        return True

    def _measure(self, pid: int) -> None:
        rss, peak = resident_bytes(pid)
        if abs(rss - self.holder.rss) < MiB and peak <= self.holder.peak:
            return
        self.holder.rss = rss
        self.holder.peak = max(self.holder.peak, peak)
        self.job.memory_rss = rss
        self.job.memory_peak = max(self.job.memory_peak, peak)
        self.ledger.put(self.holder)
        _write(self.job)

    def _run_once(self) -> tuple[int, bool]:
        """Run the command once: its exit code, and whether it stopped to yield memory."""
        with (
            (self.directory / "report.json").open("wb") as out,
            (self.directory / "log").open("ab") as err,
        ):
            process = subprocess.Popen(
                [sys.executable, "-m", "llmasos", *self.job.command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
            self.job.pid = process.pid
            self._set("running")
            stopping_since = 0.0
            yielding = killed = resent = False
            while True:
                try:
                    returncode = process.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    pass
                self._measure(process.pid)
                if self.cancelled and not stopping_since:
                    stopping_since = time.monotonic()  # `cancel` sent the SIGINT itself
                elif not yielding and self.ledger.yield_requested(self.holder.id):
                    yielding = True
                    stopping_since = time.monotonic()
                    err.write(
                        f"llmasos: yielding {self.holder.charged // MiB} MiB to serving; "
                        "the job runs again when memory is free\n".encode()
                    )
                    err.flush()
                    process.send_signal(signal.SIGINT)
                waited = time.monotonic() - stopping_since if stopping_since else 0.0
                if waited > RESEND_AFTER and not resent:
                    # a SIGINT that lands in a native library's callback into Python (llama.cpp's
                    # log callback) raises there and is swallowed; once more, then the kill
                    process.send_signal(signal.SIGINT)
                    resent = True
                late = waited > CANCEL_GRACE
                if late and not killed:
                    process.kill()
                    killed = True
        return returncode, yielding

    def run(self) -> int:
        returncode = 1
        try:
            while True:
                if not self._wait_for_memory():
                    break
                returncode, yielded = self._run_once()
                self.job.memory_rss = self.holder.rss = self.holder.peak = 0
                if yielded and returncode != 0 and not self.cancelled:
                    self.job.yields += 1
                    self._set("yielded")
                    self.holder.yields = self.job.yields
                    self.holder.state = "yielded"
                    self.ledger.clear_yield(self.holder.id)
                    self.ledger.put(self.holder)  # the memory is free: serving may take it
                    continue
                break
        finally:
            self.ledger.remove(self.holder.id)
        job = self.job
        job.returncode = returncode if job.pid else None
        job.cancel_requested = self.cancelled
        job.state = (
            "cancelled" if job.cancel_requested else ("done" if returncode == 0 else "failed")
        )
        job.finished = _now()
        _write(job)
        return returncode


def supervise(directory: Path) -> int:
    """Run the job in ``directory`` to its end and record how it ended (the detached part)."""
    with contextlib.suppress(OSError):
        os.nice(max(0, NICENESS - os.nice(0)))
    # A process started from a shell's background job inherits SIGINT ignored, and an ignored
    # signal stays ignored across exec: the command would never see `cancel`'s or a yield's
    # Ctrl-C. A handled one is reset to the default at exec, where Python makes it
    # KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return _Supervisor(directory).run()


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1])))
