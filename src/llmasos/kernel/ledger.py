"""The memory ledger: what the server's models and the toolchain's jobs hold, under one home.

The resource manager (`residency.ModelManager`) decides which models stay loaded within a
memory budget; background toolchain jobs (`llmasos.toolchain.jobs`) are other processes on
the same machine, started without a server and outliving it. Both sides meet here, in files
under ``$LLMASOS_HOME/run/memory/``:

- ``HOLDER.json``, one per holder: a server (its budget, its models' bytes and a load in
  progress) or a job (its estimate before start, its measured resident set, its state:
  ``waiting`` for memory, ``running``, ``yielded``). Written whole and renamed; a holder whose
  process is gone is dropped by the next reader.
- ``HOLDER.yield``: the server asks a job to give its memory back. The job's supervisor stops
  the command as Ctrl-C would (a fine-tune checkpoints first) and runs it again once it fits.
- ``.lock``: an advisory lock (``flock``) around every decision that reads the whole ledger
  and then adds to it (a job admitted, a model load reserved), so two deciders never both
  take the last free bytes.

A job is charged the larger of its estimate and its measured peak resident set while it
runs, and nothing while it waits or has yielded. Serving always wins: a model load that
does not fit first evicts idle models, then asks jobs to yield, newest first; a job starts
(or resumes) only when the budget holds it next to everything else, and in the order jobs
were started (a yielded job resumes before a later one starts).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HOLDER_STATES = ("waiting", "running", "yielded")


@dataclass
class MemoryHolder:
    """One entry of the ledger: a server or a background job."""

    id: str
    kind: str
    """``server`` or ``job``."""
    pid: int
    """The process whose life the entry lasts for (a job's supervisor, not its command)."""
    state: str = "running"
    label: str = ""
    """What it is, for people: the job's command line, the server's address."""
    estimate: int = 0
    """A job's expected bytes, known before it starts."""
    rss: int = 0
    """A job's resident set now (0 when its command is not running)."""
    peak: int = 0
    """A job's largest resident set seen in its current run."""
    models: dict[str, int] = field(default_factory=dict)
    """A server's loaded models and their bytes."""
    loading: int = 0
    """A server's bytes reserved for a model being loaded."""
    wanted: int = 0
    """A server's bytes for loads waiting for room (so no job starts in front of them)."""
    budget: int = 0
    """A server's memory budget (``max_memory``)."""
    started: float = field(default_factory=time.time)
    yields: int = 0
    """How often a job has given its memory back."""

    @property
    def charged(self) -> int:
        """The bytes this holder counts for against the budget now."""
        if self.kind == "server":
            return sum(self.models.values()) + self.loading + self.wanted
        if self.state != "running":
            return 0
        return max(self.estimate, self.peak, self.rss)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "charged": self.charged}


def process_alive(pid: int) -> bool:
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


def resident_bytes(pid: int) -> tuple[int, int]:
    """A process's resident set now and at its peak (``VmRSS``, ``VmHWM``), 0 where unknown."""
    now = peak = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0, 0
    return now, max(now, peak)


class MemoryLedger:
    """The ledger under one home (``settings.home / "run" / "memory"``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the ledger's lock (between processes; short sections only)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def put(self, holder: MemoryHolder) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{holder.id}.json"
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(asdict(holder)))
        os.replace(temporary, path)

    def remove(self, holder_id: str) -> None:
        for suffix in (".json", ".yield"):
            with contextlib.suppress(FileNotFoundError):
                (self.root / f"{holder_id}{suffix}").unlink()

    def holders(self) -> list[MemoryHolder]:
        """Every live holder, oldest first; the entries of dead processes are removed."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.glob("*.json"):
            try:
                holder = MemoryHolder(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # removed or replaced while being read
            if not process_alive(holder.pid):
                self.remove(holder.id)
                continue
            found.append(holder)
        return sorted(found, key=lambda h: (h.started, h.id))

    def jobs(self) -> list[MemoryHolder]:
        return [h for h in self.holders() if h.kind == "job"]

    def budget(self, default: int) -> int:
        """The running server's budget (the smallest, if several share the home), else
        ``default``."""
        budgets = [h.budget for h in self.holders() if h.kind == "server" and h.budget]
        return min(budgets) if budgets else default

    def charged(self, *, besides: str = "") -> int:
        return sum(h.charged for h in self.holders() if h.id != besides)

    def admit(self, holder: MemoryHolder, default_budget: int) -> bool:
        """Record ``holder`` as running if its estimate fits next to everything else (or
        nothing else holds memory) and no older job is waiting before it (jobs start and resume
        in the order they were started); otherwise as ``waiting`` (or still ``yielded``).
        True if admitted."""
        with self.locked():
            holders = self.holders()
            others = sum(h.charged for h in holders if h.id != holder.id)
            budget = self.budget(default_budget)
            first = not any(
                h.kind == "job"
                and h.state != "running"
                and (h.started, h.id) < (holder.started, holder.id)
                for h in holders
            )
            fits = first and (others == 0 or others + holder.estimate <= budget)
            if fits:
                holder.state = "running"
            elif holder.state == "running":
                holder.state = "waiting"
            self.put(holder)
        return fits

    # --- yielding --------------------------------------------------------------------------

    def request_yield(self, holder_id: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / f"{holder_id}.yield").touch()

    def yield_requested(self, holder_id: str) -> bool:
        return (self.root / f"{holder_id}.yield").exists()

    def clear_yield(self, holder_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / f"{holder_id}.yield").unlink()
