"""The in-process guard that enforces an app's ``network`` and ``storage_mb`` permissions.

`install` runs in the app's process (`llmasos.apps.runner`) before the app's code is
imported. It adds a ``sys.addaudithook`` hook (PEP 578) that raises `PermissionError` with
one message naming the app and what was refused:

* **network = false**: connecting or sending (``socket.connect``/``sendto``/``sendmsg``) to
  anything but the kernel's server (``LLMASOS_BASE_URL``) or a Unix socket inside the app's
  own directories; binding to a non-loopback address; looking up (DNS) any name but the
  kernel's host and loopback names; and starting processes (``subprocess``, ``os.system``,
  ``os.exec*``, ``os.posix_spawn``, multiprocessing's spawn), since a child would run
  without the hook.
* **always**: writing (open for writing, create, rename, remove, chmod ...) outside the
  app's data directory and temp directory, and opening a file for writing once the app's
  storage (data + temp when the temp directory is the app's own) has reached the quota.
  ``RLIMIT_FSIZE`` is set to the quota too (``SIGXFSZ`` ignored), so no single file grows
  past it: the write fails with ``EFBIG`` ("File too large").

This is a guard against code that uses Python's own APIs, not a security boundary against
code that means to escape: native code (``ctypes``, an extension module) does not pass
through audit hooks. The trusted monitor (`llmasos.apps.monitor`) re-checks storage usage
from outside the process.
"""

from __future__ import annotations

import ipaddress
import os
import resource
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llmasos.errors import ConfigError
from llmasos.net import DEFAULT_BASE_URL

MB = 1024 * 1024
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"}
)
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")
RESOLVE_INTERVAL = 10.0
"""Seconds between re-resolutions of the kernel's host name when a connect misses."""
TMP_NAME = "tmp"
DATA_NAME = "data"


def quota_bytes(storage_mb: int) -> int:
    """``permissions.storage_mb`` in bytes (1 MB = 1 MiB = 1,048,576 bytes)."""
    return storage_mb * MB


def directory_usage(directories: Iterable[Path]) -> int:
    """Total size in bytes of the regular files under ``directories`` (symlinks not
    followed; missing or unreadable entries count as 0)."""
    total = 0
    for directory in directories:
        for root, _dirs, files in os.walk(directory):
            for name in files:
                try:
                    status = os.lstat(os.path.join(root, name))
                except OSError:
                    continue
                if stat.S_ISREG(status.st_mode):
                    total += status.st_size
    return total


@dataclass(frozen=True)
class StorageDirs:
    """Where an installed app may write: ``apps/NAME/data`` and its own ``apps/NAME/tmp``."""

    data: Path
    tmp: Path

    @classmethod
    def of(cls, app_dir: Path) -> StorageDirs:
        return cls(data=app_dir / DATA_NAME, tmp=app_dir / TMP_NAME)

    def usage(self) -> int:
        return directory_usage((self.data, self.tmp))


def kernel_address(base_url: str) -> tuple[str, int]:
    """``(host, port)`` of the kernel's server URL (the default port of its scheme)."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "127.0.0.1").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 443 if parts.scheme == "https" else 80
    return host, port


def _ip(host: str) -> str | None:
    """The normalized IP of a literal address (IPv4-mapped IPv6 as IPv4); None for a name."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_loopback_host(host: str) -> bool:
    ip = _ip(host)
    if ip is not None:
        return ipaddress.ip_address(ip).is_loopback
    host = host.lower().rstrip(".")
    return host in LOOPBACK_NAMES or host.endswith(".localhost")


@dataclass(frozen=True)
class SandboxPolicy:
    """What one app may do. ``writable`` are the directories it may write in; ``counted``
    those whose total size is limited to ``quota`` bytes."""

    app: str
    network: bool
    storage_mb: int
    kernel: tuple[str, int]
    writable: tuple[Path, ...]
    counted: tuple[Path, ...]

    @property
    def quota(self) -> int:
        return quota_bytes(self.storage_mb)

    @classmethod
    def for_app(
        cls, app: str, *, network: bool, storage_mb: int, environ: dict[str, str]
    ) -> SandboxPolicy:
        """The policy from the environment the supervisor gives an app:
        ``LLMASOS_BASE_URL``, ``LLMASOS_APP_DATA`` (required) and ``LLMASOS_APP_TMP`` (the
        app's own temp directory; without it the system temp directory is writable but
        not counted in the quota)."""
        data = environ.get("LLMASOS_APP_DATA")
        if not data:
            raise ConfigError("LLMASOS_APP_DATA is not set (start apps with `llmasos app start`)")
        own_tmp = environ.get("LLMASOS_APP_TMP")
        tmp = Path(own_tmp) if own_tmp else Path(tempfile.gettempdir())
        data_dir = Path(os.path.realpath(data))
        tmp_dir = Path(os.path.realpath(tmp))
        return cls(
            app=app,
            network=network,
            storage_mb=storage_mb,
            kernel=kernel_address(environ.get("LLMASOS_BASE_URL") or DEFAULT_BASE_URL),
            writable=(data_dir, tmp_dir),
            counted=(data_dir, tmp_dir) if own_tmp else (data_dir,),
        )


class SandboxGuard:
    """The audit hook. Call `check` to test an event without installing it."""

    def __init__(self, policy: SandboxPolicy) -> None:
        self.policy = policy
        self._busy = threading.local()
        self._roots = tuple(str(path) for path in policy.writable)
        self._counted = tuple(str(path) for path in policy.counted)
        self._kernel_ips = self._resolve_kernel()
        self._resolved_at = time.monotonic()
        handlers: dict[str, Callable[[tuple[Any, ...]], None]] = {
            "open": self._open,
            "os.mkdir": self._mkdir,
            "os.rename": lambda a: self._paths("rename", (a[0], a[2]), (a[1], a[3])),
            "os.link": lambda a: self._paths("link", (a[0], a[2]), (a[1], a[3])),
            "os.symlink": lambda a: self._paths("symlink", (a[1], a[2])),
            "os.remove": lambda a: self._paths("remove", (a[0], a[1])),
            "os.rmdir": lambda a: self._paths("remove", (a[0], a[1])),
            "shutil.rmtree": lambda a: self._paths("remove", (a[0], a[1])),
            "os.truncate": lambda a: self._paths("truncate", (a[0], None), follow=True),
            "os.chmod": lambda a: self._paths("chmod", (a[0], a[2]), follow=True),
            "os.chown": lambda a: self._paths("chown", (a[0], a[3]), follow=True),
            "os.utime": lambda a: self._paths("touch", (a[0], a[3]), follow=True),
            "os.chflags": lambda a: self._paths("chflags", (a[0], None), follow=True),
            "os.setxattr": lambda a: self._paths("setxattr", (a[0], None), follow=True),
            "os.removexattr": lambda a: self._paths("removexattr", (a[0], None), follow=True),
            "sqlite3.connect": self._sqlite,
        }
        if not policy.network:
            handlers.update(
                {
                    "socket.connect": lambda a: self._send("connect to", a[0], a[1]),
                    "socket.sendto": lambda a: self._send("send to", a[0], a[1]),
                    "socket.sendmsg": lambda a: self._send("send to", a[0], a[1]),
                    "socket.bind": self._bind,
                    "socket.getaddrinfo": lambda a: self._lookup(a[0]),
                    "socket.gethostbyname": lambda a: self._lookup(a[0]),
                    "socket.gethostbyaddr": lambda a: self._reverse_lookup(a[0]),
                    "socket.getnameinfo": lambda a: self._reverse_lookup(a[0][0]),
                }
            )
            handlers.update(dict.fromkeys(PROCESS_EVENTS, self._process))
        self._handlers = handlers

    # --- the hook ---------------------------------------------------------------------------

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        handler = self._handlers.get(event)
        if handler is None or getattr(self._busy, "on", False):
            return
        self._busy.on = True  # the checks themselves raise audit events (os.scandir ...)
        try:
            handler(args)
        finally:
            self._busy.on = False

    def check(self, event: str, *args: Any) -> None:
        """Raise `PermissionError` if the hook would refuse ``event`` with ``args``."""
        self(event, args)

    # --- storage ----------------------------------------------------------------------------

    def _open(self, args: tuple[Any, ...]) -> None:
        path, _mode, flags = args
        if not isinstance(flags, int) or not flags & WRITE_FLAGS:
            return
        resolved = self._allowed_path("write", path, None, follow=True)
        if resolved is not None and self._inside(resolved, self._counted):
            used = directory_usage(Path(root) for root in self._counted)
            if used >= self.policy.quota:
                raise PermissionError(
                    f"app {self.policy.app} has used its storage quota (manifest "
                    f"permissions.storage_mb = {self.policy.storage_mb}): "
                    f"{used / MB:.2f} MB used; writing {resolved} refused"
                )

    def _mkdir(self, args: tuple[Any, ...]) -> None:
        path = _resolve(args[0], args[2], follow=True)
        if path is not None and os.path.isdir(path):
            return  # exists already: the call changes nothing (and fails with EEXIST)
        self._paths("mkdir", (args[0], args[2]))

    def _sqlite(self, args: tuple[Any, ...]) -> None:
        try:
            database = os.fsdecode(os.fspath(args[0]))
        except TypeError:
            return
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            return
        if database.startswith("file:"):  # a URI: read-only and memory databases write nothing
            path, _, query = database[5:].partition("?")
            if "mode=ro" in query or "mode=memory" in query:
                return
            database = path
        self._allowed_path("open database", database, None, follow=True)

    def _paths(self, verb: str, *paths: tuple[Any, Any], follow: bool = False) -> None:
        for path, dir_fd in paths:
            self._allowed_path(verb, path, dir_fd, follow=follow)

    def _allowed_path(self, verb: str, path: Any, dir_fd: Any, *, follow: bool) -> str | None:
        resolved = _resolve(path, dir_fd, follow=follow)
        if resolved is None or resolved == os.devnull or self._inside(resolved, self._roots):
            return resolved
        raise PermissionError(
            f"app {self.policy.app} may write only in its data directory "
            f"{self._roots[0]} and temp directory {self._roots[1]}: {verb} {resolved} refused"
        )

    @staticmethod
    def _inside(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)

    # --- network ----------------------------------------------------------------------------

    def _refuse_network(self, what: str) -> None:
        raise PermissionError(
            f"app {self.policy.app} has no network permission (manifest permissions.network "
            f"= false): {what} refused"
        )

    def _send(self, verb: str, sock: Any, address: Any) -> None:
        if address is None:
            return  # a connected socket: its connect was checked
        family = getattr(sock, "family", None)
        if family == socket.AF_UNIX:
            path = os.fsdecode(address) if isinstance(address, str | bytes) else ""
            if path and not path.startswith("\0"):
                resolved = _resolve(path, None, follow=True)
                if resolved is not None and self._inside(resolved, self._roots):
                    return
            self._refuse_network(f"{verb} the Unix socket {path or address!r}")
        if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
            self._refuse_network(f"{verb} {address!r} (address family {family})")
        host, port = str(address[0]), int(address[1])
        if self._is_kernel(host, port):
            return
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._refuse_network(f"{verb} {shown}")

    def _bind(self, args: tuple[Any, ...]) -> None:
        sock, address = args
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
            return
        if isinstance(address, tuple) and is_loopback_host(str(address[0])):
            return
        self._refuse_network(f"listening on {address!r} (only loopback addresses)")

    def _lookup(self, host: Any) -> None:
        """A name lookup (DNS): loopback names and the kernel's host only. A literal
        address needs no lookup; connecting to it is checked."""
        if host is None:
            return
        name = host.decode(errors="replace") if isinstance(host, bytes) else str(host)
        if name == "" or _ip(name) is not None or is_loopback_host(name):
            return
        if name.lower().rstrip(".") != self.policy.kernel[0]:
            self._refuse_network(f"looking up {name!r}")

    def _reverse_lookup(self, address: Any) -> None:
        """``gethostbyaddr``/``getnameinfo`` ask DNS about an address unless it is local."""
        name = str(address)
        ip = _ip(name)
        if ip is None:
            self._lookup(name)
        elif not ipaddress.ip_address(ip).is_loopback and ip not in self._kernel_ips:
            self._refuse_network(f"looking up the name of {name}")

    def _is_kernel(self, host: str, port: int) -> bool:
        kernel_host, kernel_port = self.policy.kernel
        if port != kernel_port:
            return False
        if host.lower().rstrip(".") == kernel_host:
            return True
        ip = _ip(host)
        if ip is None:
            return False
        if ip in self._kernel_ips:
            return True
        if time.monotonic() - self._resolved_at > RESOLVE_INTERVAL:  # the name moved?
            self._kernel_ips = self._resolve_kernel()
            self._resolved_at = time.monotonic()
        return ip in self._kernel_ips

    def _resolve_kernel(self) -> frozenset[str]:
        host, port = self.policy.kernel
        literal = _ip(host)
        if literal is not None:
            return frozenset({literal})
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return frozenset()
        return frozenset(ip for info in infos if (ip := _ip(str(info[4][0]))) is not None)

    def _process(self, args: tuple[Any, ...]) -> None:
        command = args[1] if len(args) > 1 and args[1] is not None else args[0]
        if isinstance(command, list | tuple):
            command = " ".join(str(part) for part in command)
        shown = f" {str(command)[:80]!r}" if command is not None else ""
        raise PermissionError(
            f"app {self.policy.app} may not start processes (manifest permissions.network = "
            f"false; a child process would run outside the sandbox): running{shown} refused"
        )


def _fd_path(fd: int) -> str | None:
    """The path an open descriptor refers to (None: not a file, or no /proc)."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return target if target.startswith("/") else None


def _resolve(path: Any, dir_fd: Any, *, follow: bool) -> str | None:
    """The real absolute path an audited call acts on; None when it is not a path (a pipe
    or socket descriptor). ``follow=False`` resolves the directory but not the last name
    (remove, rename and symlink act on a link itself)."""
    if isinstance(path, int) and not isinstance(path, bool):
        return _fd_path(path)
    try:
        name = os.fsdecode(os.fspath(path))
    except TypeError:
        return None
    if not os.path.isabs(name):
        base = None
        if isinstance(dir_fd, int) and dir_fd >= 0:
            base = _fd_path(dir_fd)
        name = os.path.join(base or os.getcwd(), name)
    if follow:
        return os.path.realpath(name)
    head, tail = os.path.split(os.path.normpath(name))
    return os.path.join(os.path.realpath(head), tail)


def _guard_process_spawning(guard: SandboxGuard) -> None:
    """multiprocessing's spawn/forkserver call ``_posixsubprocess.fork_exec`` directly,
    which raises no audit event: route it through the hook."""
    try:
        import _posixsubprocess
    except ImportError:
        return
    original = _posixsubprocess.fork_exec

    def fork_exec(*args: Any, **kwargs: Any) -> Any:
        guard.check("subprocess.Popen", sys.executable, None, None, None)
        return original(*args, **kwargs)

    _posixsubprocess.fork_exec = fork_exec


def _guard_dir_fd_open(original: Callable[..., int]) -> Callable[..., int]:
    """``os.open(name, flags, dir_fd=fd)``'s audit event carries no ``dir_fd``: open the
    absolute path instead, so the hook sees what is really opened."""

    def guarded_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is not None and not os.path.isabs(os.fsdecode(os.fspath(path))):
            base = _fd_path(dir_fd)
            if base is None:
                raise PermissionError(f"os.open relative to descriptor {dir_fd} refused")
            return original(os.path.join(base, os.fsdecode(os.fspath(path))), flags, mode)
        return original(path, flags, mode, dir_fd=dir_fd)

    return guarded_open


def limit_file_size(limit: int) -> None:
    """No file this process (or a child) writes may grow past ``limit`` bytes: a write
    beyond fails with ``EFBIG`` instead of killing the process with ``SIGXFSZ``."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def install(policy: SandboxPolicy) -> SandboxGuard:
    """Enforce ``policy`` in this process from now on; cannot be undone."""
    for directory in policy.writable:
        os.makedirs(directory, exist_ok=True)
    sys.dont_write_bytecode = True  # importing must not write __pycache__ outside data/
    limit_file_size(policy.quota)
    guard = SandboxGuard(policy)
    os.open = _guard_dir_fd_open(os.open)
    if not policy.network:
        _guard_process_spawning(guard)
    sys.addaudithook(guard)
    return guard


def app_environment(environ: dict[str, str], *, network: bool) -> dict[str, str]:
    """The environment of an app's process: no bytecode writes; no proxy variables without
    the network permission (a proxy is not the kernel, so it would be refused anyway)."""
    env = dict(environ, PYTHONDONTWRITEBYTECODE="1")
    if not network:
        env = {key: value for key, value in env.items() if key.lower() not in PROXY_VARIABLES}
    return env
