"""Landlock (Linux 5.13+): file and TCP-port rules a process puts on itself and its children.

`restrict` is called by the sandbox's first process (`llmasos.sandbox.inner`) before it
executes the program. Files: the readable paths may be read and executed, the writable ones
read and changed, nothing else opened at all. TCP (ABI 4+, Linux 6.7+), for a sandbox
without the network permission: connecting only to the given ports (the kernel's, the
program's own), binding only the given ones. Landlock also keeps the program from tracing
or reading ``/proc/PID/environ`` of any process outside its domain.

Inside bubblewrap this repeats what the namespaces already enforce (a second wall); without
namespaces (weaker mode) it is what keeps the program from reading ``secret.key`` or
connecting to another local service. It does not cover UDP or Unix sockets. Raw system
calls through ctypes, as no maintained Python binding covers the network rules.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from collections.abc import Iterable

CREATE_RULESET = 444
ADD_RULE = 445
RESTRICT_SELF = 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
RULE_NET_PORT = 2
PR_SET_NO_NEW_PRIVS = 38

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4

READ = EXECUTE | READ_FILE | READ_DIR
FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
"""The rights that apply to a file (a rule on a file may only hold these)."""


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI (0: none)."""
    if sys.platform != "linux":
        return 0
    try:
        version = int(_libc().syscall(CREATE_RULESET, None, 0, CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(version, 0)


def _check(result: int, what: str) -> int:
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"landlock {what}: {os.strerror(error)}")
    return result


def restrict(
    *,
    readable: Iterable[str],
    writable: Iterable[str],
    tcp_connect: Iterable[int] | None = None,
    tcp_bind: Iterable[int] | None = None,
) -> int:
    """Confine this process (and its future children); returns the ABI used (0: Landlock is
    not available, nothing done). ``tcp_connect``/``tcp_bind`` None: TCP not restricted."""
    abi = abi_version()
    if abi < 1:
        return 0
    libc = _libc()
    handled_fs = _fs_rights(abi)
    restrict_tcp = abi >= 4 and (tcp_connect is not None or tcp_bind is not None)
    handled_net = NET_BIND_TCP | NET_CONNECT_TCP if restrict_tcp else 0
    if abi >= 4:
        attribute = struct.pack("QQ", handled_fs, handled_net)
    else:
        attribute = struct.pack("Q", handled_fs)
    ruleset = _check(libc.syscall(CREATE_RULESET, attribute, len(attribute), 0), "create_ruleset")
    try:
        for paths, rights in ((readable, READ), (writable, handled_fs)):
            for path in paths:
                _add_path(libc, ruleset, path, rights)
        if restrict_tcp:
            for ports, right in (
                (tcp_connect or (), NET_CONNECT_TCP),
                (tcp_bind or (), NET_BIND_TCP),
            ):
                for port in ports:
                    rule = struct.pack("QQ", right, port)
                    _check(libc.syscall(ADD_RULE, ruleset, RULE_NET_PORT, rule, 0), "add_rule")
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(libc.syscall(RESTRICT_SELF, ruleset, 0), "restrict_self")
    finally:
        os.close(ruleset)
    return abi


def _add_path(libc: ctypes.CDLL, ruleset: int, path: str, rights: int) -> None:
    try:
        descriptor = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not there: nothing to allow
    try:
        if not os.path.isdir(path):
            rights &= FILE_ONLY
        rule = struct.pack("=Qi", rights, descriptor)
        _check(libc.syscall(ADD_RULE, ruleset, RULE_PATH_BENEATH, rule, 0), f"add_rule {path}")
    finally:
        os.close(descriptor)
