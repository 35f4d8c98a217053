"""What this machine lets LLMasOS use to confine a process, found by trying it.

`probe()` runs bubblewrap once with every namespace (with and without a user namespace),
compiles the seccomp filter, looks for a writable cgroup hierarchy with the memory and pids
controllers and asks the kernel for its Landlock ABI. The answer is cached for the process;
``probe(refresh=True)`` asks again. Nothing here raises: a layer that cannot be had is a
`False` with the reason, which `llmasos.sandbox.process.plan` turns into the report.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from llmasos.sandbox import cgroups, landlock, seccomp

PROBE_TIMEOUT = 10.0


@dataclass(frozen=True)
class MachineSupport:
    bwrap: str | None
    """Path of the bubblewrap binary."""
    namespaces: bool
    """bwrap can create net, mount, PID, IPC and UTS namespaces here."""
    user_namespace: bool
    """... and a user namespace (the sandbox then holds no capability of the host)."""
    namespaces_detail: str
    seccomp: bool
    seccomp_detail: str
    cgroup: cgroups.CgroupSupport
    landlock_abi: int
    """0: no Landlock (the kernel lacks it or it is disabled)."""

    def to_json(self) -> dict[str, object]:
        return {
            "bwrap": self.bwrap,
            "namespaces": self.namespaces,
            "user_namespace": self.user_namespace,
            "namespaces_detail": self.namespaces_detail,
            "seccomp": self.seccomp,
            "seccomp_detail": self.seccomp_detail,
            "cgroup": self.cgroup.version,
            "cgroup_detail": self.cgroup.detail,
            "landlock_abi": self.landlock_abi,
        }


def _try_bwrap(bwrap: str, *, user: bool) -> str | None:
    """None when bwrap ran ``true`` in fresh namespaces; else why not."""
    command = [bwrap, "--unshare-all", *(["--unshare-user"] if user else [])]
    command += ["--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    command += ["true"]
    try:
        result = subprocess.run(
            command, capture_output=True, timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if result.returncode == 0:
        return None
    return result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}"


def _probe_namespaces() -> tuple[str | None, bool, bool, str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, False, False, "bubblewrap (bwrap) is not installed"
    if _try_bwrap(bwrap, user=True) is None:
        return bwrap, True, True, "net, mount, PID, IPC, UTS and user namespaces"
    failure = _try_bwrap(bwrap, user=False)
    if failure is None:
        return bwrap, True, False, "net, mount, PID, IPC and UTS namespaces (no user namespace)"
    return bwrap, False, False, f"bwrap cannot create namespaces here: {failure}"


@cache
def _cached() -> MachineSupport:
    bwrap, namespaces, user, detail = _probe_namespaces()
    seccomp_error = seccomp.unavailable()
    return MachineSupport(
        bwrap=bwrap,
        namespaces=namespaces,
        user_namespace=user,
        namespaces_detail=detail,
        seccomp=seccomp_error is None,
        seccomp_detail=seccomp_error or "libseccomp filter",
        cgroup=cgroups.detect(),
        landlock_abi=landlock.abi_version(),
    )


def probe(*, refresh: bool = False) -> MachineSupport:
    """What this machine provides (cached; ``refresh`` asks again)."""
    if refresh:
        _cached.cache_clear()
    return _cached()
