"""``spawn(argv, spec)``: run a command confined by the layers this machine provides.

The command runs under bubblewrap (namespaces: network unless ``spec.network``, mount, PID,
IPC, UTS, user where possible; a read-only root with only ``spec.writable`` writable and
``spec.hidden`` emptied; the seccomp filter of `llmasos.sandbox.seccomp`), inside a cgroup
with the spec's limits (rlimits where no cgroup hierarchy is writable), with
`llmasos.sandbox.inner` as its first process. Without network, a `Bridge` in this process
relays the kernel's port and the program's listening port through Unix sockets. The
returned `SandboxedProcess` behaves like ``subprocess.Popen`` (``pid``, ``stdout``,
``poll``, ``wait``, ``send_signal``, ``terminate``, ``kill``, ``returncode``) and adds
``report`` (the layers in force) and `SandboxedProcess.exit_reason` (the OOM killer, the
pids limit).

`plan` says what a spec would get here without starting anything, and raises
`ConfinementError` in strict mode when a required layer is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from llmasos.sandbox import seccomp
from llmasos.sandbox.bridge import Bridge, Endpoint
from llmasos.sandbox.cgroups import Cgroup
from llmasos.sandbox.interface import (
    MB,
    ConfinementError,
    ConfinementMode,
    ConfinementReport,
    Layer,
    SandboxSpec,
)
from llmasos.sandbox.probe import MachineSupport, probe

INSIDE_SOCKETS = "/run/llmasos"
KERNEL_SOCKET = "kernel.sock"
LISTEN_SOCKET = "listen.sock"
SANDBOX_UID = 65534
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "passwd",
    "group",
    "hosts",
    "host.conf",
    "gai.conf",
    "mime.types",
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
)
NETWORK_ETC_FILES = ("resolv.conf",)
JOIN_CGROUP = (
    'trap "" TERM INT HUP; for f do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; '
    'shift; done; shift; exec "$@"'
)
"""Run by ``sh``: join the cgroup(s) named before ``--``, ignore the signals that `app stop`
sends to the whole process group (the sandbox's first process gets them forwarded and ends
gracefully), and become the command after ``--``."""


def _package_root() -> Path:
    return Path(__file__).resolve().parents[2]


def system_readable() -> list[Path]:
    """What every sandbox may read: ``/usr``, Python's installation and the `llmasos`
    package (plus the entries of ``sys.path``), and a few ``/etc`` files."""
    paths = [Path("/usr"), Path(sys.prefix), Path(sys.base_prefix), _package_root()]
    paths += [Path(entry) for entry in sys.path if entry and os.path.isdir(entry)]
    paths += [Path("/etc") / name for name in ETC_FILES]
    paths += [Path(os.path.realpath(sys.executable)).parent]
    found: list[Path] = []
    for path in paths:
        if path.exists() and path not in found and path != Path("/"):
            found.append(path)
    return found


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def plan(
    spec: SandboxSpec, mode: ConfinementMode, support: MachineSupport | None = None
) -> ConfinementReport:
    """The layers ``spec`` gets on this machine; `ConfinementError` in strict mode when a
    required one is missing."""
    support = support or probe()
    layers = []
    user = " and a user namespace" if support.user_namespace else " (no user namespace)"
    layers.append(
        Layer(
            "namespaces",
            support.namespaces,
            f"bubblewrap: PID, mount, IPC, UTS{user}"
            if support.namespaces
            else support.namespaces_detail,
        )
    )
    if spec.network:
        layers.append(Layer("network", True, "the host's network (permission granted)", False))
    elif support.namespaces:
        kernel = f"the kernel at 127.0.0.1:{spec.kernel_port_inside}" if spec.kernel else "nothing"
        layers.append(Layer("network", True, f"own network namespace; the only way out: {kernel}"))
    else:
        layers.append(Layer("network", False, "no network namespace (in-process guard only)"))
    writable = ", ".join(str(path) for path in spec.writable) or "nothing"
    layers.append(
        Layer(
            "filesystem",
            support.namespaces,
            f"read-only system and package; writable: {writable}"
            if support.namespaces
            else "no mount namespace (in-process guard only)",
        )
    )
    layers.append(Layer("seccomp", support.seccomp, support.seccomp_detail))
    limits = spec.limits
    cpu_time = f", {limits.cpu_seconds} s of CPU per process" if limits.cpu_seconds else ""
    if support.cgroup.version:
        cpu = f", CPU {limits.cpu_percent}% of a core" if limits.cpu_percent else ""
        cpu += cpu_time
        layers.append(
            Layer(
                "limits",
                True,
                f"memory {limits.memory_mb} MB, {limits.processes} processes{cpu}, "
                f"{limits.open_files} open files ({support.cgroup.detail})",
                False,
            )
        )
    else:
        processes = (
            "processes not limited (RLIMIT_NPROC does not bind root)"
            if os.geteuid() == 0
            else f"{limits.processes} processes of this user"
        )
        layers.append(
            Layer(
                "limits",
                False,
                f"rlimits only: address space {4 * limits.memory_mb} MB per process, {processes}"
                f"{cpu_time}, {limits.open_files} open files ({support.cgroup.detail})",
                False,
            )
        )
    if support.landlock_abi:
        tcp = (
            "; TCP only to the kernel's port"
            if support.landlock_abi >= 4 and not spec.network
            else ""
        )
        landlock = f"ABI {support.landlock_abi}: reads and writes only where the spec says{tcp}"
    else:
        landlock = "not offered by this kernel"
    layers.append(Layer("landlock", bool(support.landlock_abi), landlock, False))
    report = ConfinementReport(mode=mode, layers=tuple(layers))
    if mode is ConfinementMode.STRICT and not report.complete:
        raise refusal(spec.name, report)
    return report


def refusal(name: str, report: ConfinementReport) -> ConfinementError:
    """The error of strict mode for a report with missing layers."""
    missing = "; ".join(f"{layer.name}: {layer.detail}" for layer in report.missing)
    return ConfinementError(
        f"{name} cannot be confined on this machine ({missing}); install bubblewrap and "
        "libseccomp, or allow weaker confinement (setting app_confinement = allow-weaker, "
        "LLMASOS_APP_CONFINEMENT=allow-weaker)"
    )


def _bwrap_command(
    spec: SandboxSpec,
    support: MachineSupport,
    cwd: Path,
    seccomp_fd: int | None,
    info_fd: int,
    sockets: Path | None,
) -> list[str]:
    assert support.bwrap is not None
    command = [support.bwrap, "--unshare-all"]
    if support.user_namespace:
        command += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    if spec.network:
        command.append("--share-net")
    command += ["--die-with-parent", "--new-session", "--as-pid-1", "--info-fd", str(info_fd)]
    if seccomp_fd is not None:
        command += ["--seccomp", str(seccomp_fd)]
    for link in SYSTEM_LINKS:
        if os.path.islink(link):
            command += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            command += ["--ro-bind", link, link]
    readable = system_readable()
    if spec.network:
        readable += [
            Path("/etc") / name for name in NETWORK_ETC_FILES if (Path("/etc") / name).exists()
        ]
    readable += spec.readable
    for path in readable:
        command += ["--ro-bind", str(path), str(path)]
    hidden = [path for path in spec.hidden if _under(path, readable)]
    for path in hidden:
        command += ["--tmpfs", str(path)]
    for path in spec.readable:  # what the spec grants inside a hidden directory
        if _under(path, hidden):
            command += ["--ro-bind", str(path), str(path)]
    for path in spec.writable:
        command += ["--bind", str(path), str(path)]
    if sockets is not None:
        command += ["--bind", str(sockets), INSIDE_SOCKETS]
    command += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/", "--chdir", str(cwd)]
    return command


def landlock_rules(spec: SandboxSpec, *, namespaces: bool) -> dict[str, Any]:
    """What `llmasos.sandbox.landlock.restrict` allows the sandbox: the same paths as the
    mount namespace (plus ``/dev`` and ``/proc`` to read, ``/dev/null`` to write) and,
    without network, TCP to the kernel's port and the program's own only."""
    readable = [str(path) for path in system_readable()] + ["/dev", "/proc"]
    readable += [str(path) for path in spec.readable]
    if spec.network:
        readable += [str(Path("/etc") / name) for name in NETWORK_ETC_FILES]
    if namespaces:
        readable.append(INSIDE_SOCKETS)
    rules: dict[str, Any] = {
        "readable": readable,
        "writable": [str(path) for path in spec.writable] + [os.devnull],
        "connect": None,
        "bind": None,
    }
    if not spec.network:
        ports = [spec.listen_port] if spec.listen_port is not None else []
        kernel = spec.kernel_port_inside if namespaces else (spec.kernel or (None, None))[1]
        rules["connect"] = ports + ([kernel] if kernel is not None else [])
        rules["bind"] = ports + ([spec.kernel_port_inside] if namespaces and spec.kernel else [])
    return rules


def _inner_command(
    spec: SandboxSpec,
    support: MachineSupport,
    status_fd: int,
    *,
    relays: list[str],
    load_seccomp: bool,
) -> list[str]:
    limits = spec.limits
    command = [sys.executable, "-m", "llmasos.sandbox.inner", "--status-fd", str(status_fd)]
    command += ["--rlimit", f"nofile={limits.open_files}"]
    if limits.file_size_mb is not None:
        command += ["--rlimit", f"fsize={limits.file_size_mb * MB}"]
    if limits.cpu_seconds is not None:
        command += ["--rlimit", f"cpu={limits.cpu_seconds}"]
    if not support.cgroup.version:
        command += ["--rlimit", f"as={4 * limits.memory_mb * MB}"]
        if os.geteuid() != 0:
            command += ["--rlimit", f"nproc={limits.processes}"]
    if support.landlock_abi:
        rules = landlock_rules(spec, namespaces=support.namespaces)
        command += ["--landlock", json.dumps(rules)]
    if load_seccomp:
        command.append("--seccomp")
    for relay in relays:
        command += ["--relay", relay]
    return [*command, "--"]


class SandboxedProcess:
    """A running sandboxed command; a subset of ``subprocess.Popen`` plus `report`."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        report: ConfinementReport,
        spec: SandboxSpec,
        *,
        inner_pid: int,
        status_fd: int,
        cgroup: Cgroup | None,
        bridge: Bridge | None,
        sockets: Path | None,
    ) -> None:
        self._popen = popen
        self.report = report
        self.spec = spec
        self.pid = popen.pid
        self.stdin: IO[bytes] | None = popen.stdin
        self.stdout: IO[bytes] | None = popen.stdout
        self.stderr: IO[bytes] | None = popen.stderr
        self.args = popen.args
        self.returncode: int | None = None
        self._inner_pid = inner_pid
        self._status_fd = status_fd
        self._cgroup = cgroup
        self._bridge = bridge
        self._sockets = sockets
        self._events = (0, 0)

    def __enter__(self) -> SandboxedProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        """Like ``Popen``'s: close the pipes; unlike it, kill a program still running."""
        for stream in (self._popen.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        if self.poll() is None:
            self.kill()
        self.wait()

    def communicate(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes | None, bytes | None]:
        """``Popen.communicate``: send ``input``, read the output to the end, wait."""
        output, errors = self._popen.communicate(input, timeout)
        self._finish()
        return output, errors

    def poll(self) -> int | None:
        if self.returncode is None and self._popen.poll() is not None:
            self._finish()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._popen.wait(timeout)
            self._finish()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Signal the sandboxed program (through its first process, which forwards)."""
        if self.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._inner_pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL everything of the sandbox: its first process (which ends its PID
        namespace), bubblewrap, and every process left in its cgroup."""
        if self.returncode is not None:
            return
        for pid in {self._inner_pid, self._popen.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._kill_group()

    def exit_reason(self) -> str | None:
        """Why the sandbox ended it, when a limit did: ``out of memory ...``,
        ``process limit ...`` (None: the program ended on its own, or no cgroup)."""
        oom, forks = self._events if self.returncode is not None else self._read_events()
        limits = self.spec.limits
        if oom:
            return f"out of memory (the sandbox's limit is {limits.memory_mb} MB)"
        if forks:
            return f"hit the sandbox's process limit ({limits.processes}) {forks} times"
        return None

    def _read_events(self) -> tuple[int, int]:
        return self._cgroup.events() if self._cgroup is not None else (0, 0)

    def _kill_group(self) -> None:
        if self._cgroup is None:
            return
        for procs in self._cgroup.procs_files():
            with contextlib.suppress(OSError, ValueError):
                for line in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(line), signal.SIGKILL)

    def _finish(self) -> None:
        if self.returncode is not None:
            return
        code = self._popen.returncode
        status = b""
        with contextlib.suppress(OSError):
            status = os.read(self._status_fd, 64)
        with contextlib.suppress(OSError):
            os.close(self._status_fd)
        kind, _, number = status.decode(errors="replace").strip().partition(" ")
        if kind == "exit" and number.lstrip("-").isdigit():
            code = int(number)
        elif kind == "signal" and number.isdigit():
            code = -int(number)
        self._events = self._read_events()
        self._kill_group()
        if self._cgroup is not None:
            self._cgroup.remove()
        if self._bridge is not None:
            self._bridge.close()
        if self._sockets is not None:
            shutil.rmtree(self._sockets, ignore_errors=True)
        self.returncode = code


def spawn(
    argv: Sequence[str],
    spec: SandboxSpec,
    *,
    mode: ConfinementMode = ConfinementMode.STRICT,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    stdin: Any = subprocess.DEVNULL,
    stdout: Any = None,
    stderr: Any = None,
    support: MachineSupport | None = None,
) -> SandboxedProcess:
    """Start ``argv`` confined by ``spec``; `ConfinementError` (strict mode) before anything
    runs when the machine lacks a required layer."""
    support = support or probe()
    report = plan(spec, mode, support)
    workdir = Path(cwd or os.getcwd())
    cgroup = None
    if support.cgroup.version:
        try:
            cgroup = Cgroup.create(support.cgroup, spec.name, spec.limits)
        except OSError as error:
            raise ConfinementError(f"{spec.name}: cannot create its cgroup: {error}") from None
    use_namespaces = support.namespaces
    sockets = bridge = None
    relays: list[str] = []
    status_read, status_write = os.pipe()
    info_read, info_write = os.pipe()
    seccomp_fd = None
    try:
        if use_namespaces and not spec.network:
            sockets = _socket_directory()
            bridge = Bridge(f"sandbox-{spec.name}")
            if spec.kernel is not None:
                bridge.relay(
                    Endpoint.unix(str(sockets / KERNEL_SOCKET)), Endpoint.tcp(*spec.kernel)
                )
                relays.append(
                    f"tcp:127.0.0.1:{spec.kernel_port_inside}=unix:{INSIDE_SOCKETS}/{KERNEL_SOCKET}"
                )
            if spec.listen_port is not None:
                bridge.relay(
                    Endpoint.tcp("127.0.0.1", spec.listen_port),
                    Endpoint.unix(str(sockets / LISTEN_SOCKET)),
                )
                relays.append(
                    f"unix:{INSIDE_SOCKETS}/{LISTEN_SOCKET}=tcp:127.0.0.1:{spec.listen_port}"
                )
        inner = _inner_command(
            spec,
            support,
            status_write,
            relays=relays,
            load_seccomp=support.seccomp and not use_namespaces,
        )
        command = [*inner, *argv]
        pass_fds = [status_write]
        if use_namespaces:
            if support.seccomp:
                seccomp_fd = seccomp.bpf_descriptor()
                pass_fds.append(seccomp_fd)
            pass_fds.append(info_write)
            command = [
                *_bwrap_command(spec, support, workdir, seccomp_fd, info_write, sockets),
                *command,
            ]
        if cgroup is not None:
            procs = [str(path) for path in cgroup.procs_files()]
            command = ["/bin/sh", "-c", JOIN_CGROUP, "sh", *procs, "--", *command]
        popen = subprocess.Popen(
            command,
            cwd=workdir,
            env=dict(env) if env is not None else None,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            pass_fds=pass_fds,
        )
    except BaseException:
        for descriptor in (status_read, status_write, info_read, info_write, seccomp_fd):
            if descriptor is not None:
                with contextlib.suppress(OSError):
                    os.close(descriptor)
        if bridge is not None:
            bridge.close()
        if sockets is not None:
            shutil.rmtree(sockets, ignore_errors=True)
        if cgroup is not None:
            cgroup.remove()
        raise
    os.close(status_write)
    os.close(info_write)
    if seccomp_fd is not None:
        os.close(seccomp_fd)
    inner_pid = popen.pid
    if use_namespaces:
        inner_pid = _read_child_pid(info_read) or popen.pid
    os.close(info_read)
    os.set_blocking(status_read, False)
    return SandboxedProcess(
        popen,
        report,
        spec,
        inner_pid=inner_pid,
        status_fd=status_read,
        cgroup=cgroup,
        bridge=bridge,
        sockets=sockets,
    )


def _socket_directory() -> Path:
    """A new private directory for the bridge's sockets, with a short path: a Unix socket's
    path has at most 107 bytes, and ``TMPDIR`` may be an app's deep temp directory."""
    parent = next((path for path in ("/tmp", "/var/tmp") if os.access(path, os.W_OK)), None)
    return Path(tempfile.mkdtemp(prefix="llmasos-sandbox-", dir=parent))


def _read_child_pid(descriptor: int) -> int | None:
    """bwrap's ``--info-fd`` JSON: the host pid of the sandbox's first process."""
    data = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(descriptor, 4096):
            data += chunk
            with contextlib.suppress(ValueError):
                return int(json.loads(data)["child-pid"])
    return None
