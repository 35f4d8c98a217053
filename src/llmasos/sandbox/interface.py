"""What a sandboxed process may do (`SandboxSpec`) and what confines it (`ConfinementReport`).

A spec is built by the caller from something trusted — an installed app's manifest, an MCP
server's registration — never from the confined program's own claims. The sandbox turns it
into layers (namespaces, seccomp, cgroups or rlimits, the kernel bridge); each layer is
`Layer` in the report, with whether it is in force on this machine and why not. In
`ConfinementMode.STRICT` a missing layer is a `ConfinementError` before anything runs; in
`ALLOW_WEAKER` the process runs with what the machine provides and the report says what is
missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from llmasos.errors import LLMasOSError

MB = 1024 * 1024


class ConfinementMode(StrEnum):
    STRICT = "strict"
    """Refuse to start a process when a layer its spec needs is missing on this machine."""
    ALLOW_WEAKER = "allow-weaker"
    """Start it with the layers the machine has; the report lists the missing ones."""


class ConfinementError(LLMasOSError):
    """The machine cannot confine a process as its spec asks, and weaker mode is off."""

    status_code = 503
    default_code = "confinement_unavailable"


@dataclass(frozen=True)
class ResourceLimits:
    """Limits of the whole sandbox (all its processes together where cgroups exist)."""

    memory_mb: int = 512
    """Resident memory; past it the kernel's OOM killer ends the process."""
    processes: int = 64
    """Processes and threads at once; a fork past it fails with EAGAIN."""
    open_files: int = 1024
    """Descriptors per process (RLIMIT_NOFILE)."""
    file_size_mb: int | None = None
    """Largest file the process may write (RLIMIT_FSIZE); None: no limit."""
    cpu_percent: int = 100
    """CPU time share, in percent of one core (cgroup cpu quota); 0: no limit."""
    cpu_seconds: int | None = None
    """CPU time each process may use (RLIMIT_CPU; past it SIGXCPU, then SIGKILL); None: no
    limit. A wall-clock limit is the caller's."""


@dataclass(frozen=True)
class SandboxSpec:
    """Everything the sandbox needs to know about one process.

    Paths are absolute and appear at the same place inside the sandbox. The system
    (``/usr``, a few ``/etc`` files), the Python installation and the `llmasos` package are
    always readable; ``hidden`` directories are replaced by an empty directory even when
    they lie under a readable one (the LLMasOS home, holding ``secret.key`` and other
    apps' data)."""

    name: str
    """Who runs, for messages and the cgroup's name (``app.notes``, ``mcp.files`` ...)."""
    network: bool = False
    """True: the host's network. False: a network namespace whose only way out is ``kernel``."""
    kernel: tuple[str, int] | None = None
    """The kernel's server (host, port); reachable at 127.0.0.1:port inside without network."""
    listen_port: int | None = None
    """A TCP port the program listens on (127.0.0.1 inside); the same port on the host's
    loopback reaches it."""
    readable: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    limits: ResourceLimits = field(default_factory=ResourceLimits)

    @property
    def kernel_port_inside(self) -> int | None:
        """Where the kernel is inside a sandbox without network: 127.0.0.1 and its own port,
        or — for a port below 1024, which no unprivileged process may bind — 8000 + it."""
        if self.kernel is None:
            return None
        port = self.kernel[1]
        if port >= 1024:
            return port
        return 8000 + port if 8000 + port != self.listen_port else 9000 + port


@dataclass(frozen=True)
class Layer:
    """One confinement layer: ``name`` (namespaces, seccomp ...), whether it is in force, and
    what it does or why it is missing."""

    name: str
    active: bool
    detail: str
    required: bool = True
    """Whether strict mode refuses to run without it."""


@dataclass(frozen=True)
class ConfinementReport:
    """The layers a process runs under (or would, for a plan)."""

    mode: ConfinementMode
    layers: tuple[Layer, ...]

    @property
    def missing(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.required and not layer.active)

    @property
    def complete(self) -> bool:
        return not self.missing

    def layer(self, name: str) -> Layer | None:
        return next((layer for layer in self.layers if layer.name == name), None)

    def summary(self) -> str:
        """One line: ``full`` or ``weaker (no namespaces: bwrap not found)``."""
        if self.complete:
            return "full (" + ", ".join(layer.name for layer in self.layers if layer.active) + ")"
        missing = "; ".join(f"no {layer.name}: {layer.detail}" for layer in self.missing)
        return f"weaker ({missing})"

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": str(self.mode),
            "complete": self.complete,
            "layers": [asdict(layer) for layer in self.layers],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConfinementReport:
        return cls(
            mode=ConfinementMode(data["mode"]),
            layers=tuple(Layer(**layer) for layer in data["layers"]),
        )
