"""One control group per sandboxed process tree: memory, process-count and CPU limits that
hold for all its processes together, and counters of what hit them.

`detect` finds a writable hierarchy with the ``memory`` and ``pids`` controllers below this
process's own group: cgroup v2 where its controllers can be delegated, else the v1
hierarchies (``/sys/fs/cgroup/memory``, ``pids``, ``cpu``). `Cgroup.create` makes a group,
writes the limits and returns the ``cgroup.procs`` files a starting process writes its pid
into (before it executes anything, so nothing escapes the limits). `Cgroup.events` reads
how often the OOM killer and the pids limit struck, which is how the monitor tells *why* an
app died. Where neither hierarchy is writable, `detect` says so and the sandbox falls back
to rlimits.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmasos.sandbox.interface import MB, ResourceLimits

CPU_PERIOD_US = 100_000
REMOVE_TIMEOUT = 2.0


@dataclass(frozen=True)
class CgroupSupport:
    version: str | None
    """``v2``, ``v1`` or None (no writable hierarchy with memory and pids)."""
    detail: str
    parents: dict[str, Path] = field(default_factory=dict)
    """Controller (``memory``, ``pids``, ``cpu``; ``unified`` for v2) -> directory to create
    groups in."""


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, filesystem type, super options) of the cgroup mounts."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[4], tail[0], set(tail[2].split(","))))
    return found


def _own_groups() -> dict[str, str]:
    """Controller (or ``""`` for v2) -> this process's group path."""
    groups: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return groups
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path
    return groups


def _writable_dir(directory: Path) -> bool:
    probe = directory / f"llmasos-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return False
    with contextlib.suppress(OSError):
        probe.rmdir()
    return True


def _detect_v2(mount: str, own: str) -> CgroupSupport | None:
    parent = Path(mount + own.rstrip("/")) if own != "/" else Path(mount)
    try:
        available = set((parent / "cgroup.controllers").read_text().split())
    except OSError:
        return None
    if not {"memory", "pids"} <= available:
        return None
    wanted = " ".join(f"+{name}" for name in ("memory", "pids", "cpu") if name in available)
    try:
        (parent / "cgroup.subtree_control").write_text(wanted)
    except OSError:
        return None
    if not _writable_dir(parent):
        return None
    return CgroupSupport("v2", f"cgroup v2 at {parent}", {"unified": parent})


def detect() -> CgroupSupport:
    """The hierarchy the sandbox can create limited groups in."""
    own = _own_groups()
    reasons = []
    for mount, kind, _options in _mounts():
        if kind == "cgroup2" and "" in own:
            found = _detect_v2(mount, own[""])
            if found is not None:
                return found
            reasons.append(f"cgroup v2 at {mount} has no delegable memory and pids controllers")
    parents: dict[str, Path] = {}
    for mount, kind, options in _mounts():
        if kind != "cgroup":
            continue
        for controller in ("memory", "pids", "cpu"):
            if controller in options and controller in own and controller not in parents:
                path = own[controller]
                parent = Path(mount + path.rstrip("/")) if path != "/" else Path(mount)
                if _writable_dir(parent):
                    parents[controller] = parent
    if "memory" in parents and "pids" in parents:
        shown = ", ".join(f"{name} at {path}" for name, path in parents.items())
        return CgroupSupport("v1", f"cgroup v1 ({shown})", parents)
    reasons.append("no writable cgroup v1 memory and pids hierarchies")
    return CgroupSupport(None, "; ".join(reasons))


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
    except OSError:
        return False
    return True


def _counter(path: Path, key: str) -> int:
    """The value of ``key`` in a flat-keyed cgroup file (0 when absent)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class Cgroup:
    """A group for one sandboxed process tree (one directory per v1 controller)."""

    support: CgroupSupport
    directories: dict[str, Path]
    limits: ResourceLimits

    @classmethod
    def create(cls, support: CgroupSupport, name: str, limits: ResourceLimits) -> Cgroup:
        """Make the group(s) and write ``limits``; raises `OSError` when it cannot."""
        leaf = f"llmasos-{name}-{os.getpid()}-{time.monotonic_ns()}"
        directories = {}
        for controller, parent in support.parents.items():
            directory = parent / leaf
            directory.mkdir()
            directories[controller] = directory
        group = cls(support, directories, limits)
        group._apply()
        return group

    def _apply(self) -> None:
        memory = self.limits.memory_mb * MB
        processes = str(self.limits.processes)
        quota = self.limits.cpu_percent * CPU_PERIOD_US // 100
        if self.support.version == "v2":
            unified = self.directories["unified"]
            if not _write(unified / "memory.max", str(memory)):
                raise OSError(f"cannot write {unified / 'memory.max'}")
            _write(unified / "memory.swap.max", "0")
            if not _write(unified / "pids.max", processes):
                raise OSError(f"cannot write {unified / 'pids.max'}")
            if quota:
                _write(unified / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        if not _write(self.directories["memory"] / "memory.limit_in_bytes", str(memory)):
            raise OSError("cannot write memory.limit_in_bytes")
        _write(self.directories["memory"] / "memory.memsw.limit_in_bytes", str(memory))
        if not _write(self.directories["pids"] / "pids.max", processes):
            raise OSError("cannot write pids.max")
        if quota and "cpu" in self.directories:
            _write(self.directories["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(self.directories["cpu"] / "cpu.cfs_quota_us", str(quota))

    @property
    def limits_cpu(self) -> bool:
        return bool(self.limits.cpu_percent) and (
            self.support.version == "v2" or "cpu" in self.directories
        )

    def procs_files(self) -> list[Path]:
        return [directory / "cgroup.procs" for directory in self.directories.values()]

    def events(self) -> tuple[int, int]:
        """(OOM kills, forks refused by the pids limit) so far."""
        if self.support.version == "v2":
            unified = self.directories["unified"]
            return _counter(unified / "memory.events", "oom_kill"), _counter(
                unified / "pids.events", "max"
            )
        memory = self.directories["memory"]
        oom = _counter(memory / "memory.oom_control", "oom_kill")
        return oom, _counter(self.directories["pids"] / "pids.events", "max")

    def remove(self) -> None:
        """Remove the group(s) once their processes are gone (best effort)."""
        deadline = time.monotonic() + REMOVE_TIMEOUT
        for directory in self.directories.values():
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.02)
