"""The seccomp filter of every sandboxed process: system calls no program we run needs.

Denied with ``EPERM``: tracing other processes (``ptrace``, ``process_vm_readv``/``writev``),
mounting and changing root (``mount``, ``umount2``, ``pivot_root``, ``chroot``, the new mount
API), kernel modules and kexec, new namespaces from inside (``unshare``, ``setns``, ``clone``
with any ``CLONE_NEW*`` flag), raw and packet sockets, ``bpf``, ``perf_event_open``, kernel
keyrings, ``userfaultfd``, ``open_by_handle_at``, swap, reboot, the clock and the kernel
log. ``clone3`` answers ``ENOSYS``, because its flags live in memory a filter cannot read:
the C library then falls back to ``clone``, whose flags are checked. System calls of a
foreign architecture (x32, i386 on x86_64) kill the process, libseccomp's default.

Built with libseccomp through ``pyseccomp`` (a ctypes binding; the system's
``libseccomp.so.2``); `bpf_descriptor` exports the compiled program for bubblewrap's
``--seccomp FD``, `load` installs it in the calling process (the weaker mode, without bwrap).
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "unshare",
    "setns",
    "bpf",
    "perf_event_open",
    "add_key",
    "request_key",
    "keyctl",
    "userfaultfd",
    "open_by_handle_at",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "syslog",
    "iopl",
    "ioperm",
    "vhangup",
    "lookup_dcookie",
)
NAMESPACE_FLAGS = (
    0x00000080,  # CLONE_NEWTIME
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
SOCKET_TYPE_MASK = 0xF
AF_PACKET = 17
SOCK_PACKET = 10


def _library() -> Any:
    import pyseccomp

    return pyseccomp


def unavailable() -> str | None:
    """None when a filter can be built here; else why not."""
    try:
        build()
    except ImportError:
        return "the pyseccomp package is not installed"
    except OSError as error:  # libseccomp.so.2 missing, or the kernel refuses
        return f"libseccomp: {error}"
    except Exception as error:
        return f"libseccomp: {type(error).__name__}: {error}"
    return None


def build() -> Any:
    """The filter as a ``pyseccomp.SyscallFilter`` (not loaded)."""
    library = _library()
    deny = library.ERRNO(errno.EPERM)
    denied = library.SyscallFilter(defaction=library.ALLOW)
    for name in DENIED:
        try:
            denied.add_rule(deny, name)
        except (ValueError, RuntimeError, OSError):
            continue  # not a system call of this architecture
    for flag in NAMESPACE_FLAGS:
        denied.add_rule(deny, "clone", library.Arg(0, library.MASKED_EQ, flag, flag))
    denied.add_rule(library.ERRNO(errno.ENOSYS), "clone3")
    denied.add_rule(deny, "socket", library.Arg(0, library.EQ, AF_PACKET))
    for family in (socket.AF_INET, socket.AF_INET6):
        for kind in (socket.SOCK_RAW, SOCK_PACKET):
            denied.add_rule(
                deny,
                "socket",
                library.Arg(0, library.EQ, int(family)),
                library.Arg(1, library.MASKED_EQ, SOCKET_TYPE_MASK, int(kind)),
            )
    return denied


def bpf_descriptor() -> int:
    """A readable descriptor holding the compiled BPF program (for ``bwrap --seccomp``);
    the caller closes it."""
    descriptor = os.memfd_create("llmasos-seccomp", 0)
    with os.fdopen(os.dup(descriptor), "w+b") as handle:
        build().export_bpf(handle)
    os.lseek(descriptor, 0, os.SEEK_SET)
    return descriptor


def load() -> None:
    """Install the filter in this process (and its future children); cannot be undone."""
    build().load()
