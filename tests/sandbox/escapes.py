"""Ways out of a sandbox, tried from inside it: a standalone script (standard library only).

The escape tests copy it next to a test app (whose routes call `attempt`), run it as a
plain sandboxed child (``python escapes.py '{"what": ..., ...}'`` prints the result as
JSON), import it in a stdio MCP server (``tests/tools/mcp/escape_server.py``) or send it as
the source of the ``python_run`` tool (`attempt_all` then runs many attempts in one start).
Every attempt answers ``{"ok": bool, "error": str | None, ...}``; most go through
``ctypes`` or a started binary, so that the in-process audit-hook guard of an app does not
see them and only the OS sandbox can stop them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import socket
import struct
import sys
import time
from typing import Any

libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
O_WRONLY, O_RDONLY, O_CREAT = os.O_WRONLY, os.O_RDONLY, os.O_CREAT
PTRACE_ATTACH = 16
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


def _failure(code: int) -> dict[str, Any]:
    return {"ok": False, "error": f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"}


def _sockaddr_in(host: str, port: int) -> bytes:
    return (
        struct.pack("<H", socket.AF_INET)
        + struct.pack(">H", port)
        + socket.inet_aton(host)
        + bytes(8)
    )


def ctypes_connect(host: str, port: int, kind: int = socket.SOCK_STREAM) -> dict[str, Any]:
    """socket(2) + connect(2) through libc, with a 3 s send timeout."""
    fd = libc.socket(socket.AF_INET, kind, 0)
    if fd < 0:
        return _failure(ctypes.get_errno())
    try:
        timeout = struct.pack("ll", 3, 0)
        libc.setsockopt(fd, socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout, len(timeout))
        address = _sockaddr_in(host, port)
        if libc.connect(fd, address, len(address)) != 0:
            return _failure(ctypes.get_errno())
        return {"ok": True, "error": None}
    finally:
        libc.close(fd)


def socket_connect(host: str, port: int) -> dict[str, Any]:
    try:
        with socket.create_connection((host, port), timeout=3):
            return {"ok": True, "error": None}
    except OSError as error:
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}


def _system(command: str) -> int:
    """Run ``command`` through libc's system(3): no audit event, so no guard sees it."""
    status = libc.system(command.encode())
    return os.waitstatus_to_exitcode(status) if status >= 0 else status


def binary_connect(host: str, port: int) -> dict[str, Any]:
    """A started ``python -c`` that connects."""
    code = (
        "import socket,sys\n"
        f"try: socket.create_connection(({json.dumps(host)}, {port}), timeout=3)\n"
        "except OSError as e: print(e); sys.exit(3)"
    )
    status = _system(f"{sys.executable} -c '{code}' >/dev/null 2>&1")
    return {"ok": status == 0, "error": None if status == 0 else f"exit status {status}"}


def curl_connect(host: str, port: int) -> dict[str, Any]:
    """A started ``curl``; ``skipped`` when curl is not installed."""
    curl = shutil.which("curl")
    if curl is None:
        return {"ok": False, "error": "curl not installed", "skipped": True}
    status = _system(f"{curl} -s -o /dev/null --max-time 3 http://{host}:{port}/")
    # 0: answered; 52, 56: connected, then an empty reply or a reset (the test listeners
    # speak no HTTP); 7: could not connect, 28: timed out
    connected = status in (0, 52, 56)
    return {"ok": connected, "error": None if connected else f"curl exit status {status}"}


def dns(name: str, nameserver: str, port: int = 53) -> dict[str, Any]:
    """A DNS query for ``name`` sent over UDP to ``nameserver`` (port ``port``) through libc
    (the packet leaving is the escape; an answer is not needed)."""
    query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\0"
    query += struct.pack(">HH", 1, 1)
    fd = libc.socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    if fd < 0:
        return _failure(ctypes.get_errno())
    try:
        address = _sockaddr_in(nameserver, port)
        if libc.connect(fd, address, len(address)) != 0:
            return _failure(ctypes.get_errno())
        if libc.send(fd, query, len(query), 0) < 0:
            return _failure(ctypes.get_errno())
        return {"ok": True, "error": None}
    finally:
        libc.close(fd)


def write_ctypes(path: str) -> dict[str, Any]:
    fd = libc.open(path.encode(), O_WRONLY | O_CREAT, 0o644)
    if fd < 0:
        return _failure(ctypes.get_errno())
    try:
        if libc.write(fd, b"escaped\n", 8) != 8:
            return _failure(ctypes.get_errno())
        return {"ok": True, "error": None}
    finally:
        libc.close(fd)


def write_subprocess(path: str) -> dict[str, Any]:
    status = _system(f"echo escaped > '{path}' 2>/dev/null")
    return {"ok": status == 0, "error": None if status == 0 else f"exit status {status}"}


def read_ctypes(path: str) -> dict[str, Any]:
    fd = libc.open(path.encode(), O_RDONLY, 0)
    if fd < 0:
        return _failure(ctypes.get_errno())
    try:
        buffer = ctypes.create_string_buffer(64)
        if libc.read(fd, buffer, 64) < 0:
            return _failure(ctypes.get_errno())
        return {"ok": True, "error": None}
    finally:
        libc.close(fd)


def ptrace(pid: int | None = None) -> dict[str, Any]:
    """PTRACE_ATTACH to ``pid``, or to a child of ours that sleeps."""
    child = None
    if pid is None:
        child = os.fork()
        if child == 0:
            time.sleep(5)
            os._exit(0)
        pid = child
    try:
        if libc.ptrace(PTRACE_ATTACH, pid, None, None) != 0:
            return _failure(ctypes.get_errno())
        return {"ok": True, "error": None}
    finally:
        if child is not None:
            os.kill(child, 9)
            os.waitpid(child, 0)


def new_namespace() -> dict[str, Any]:
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        return _failure(ctypes.get_errno())
    return {"ok": True, "error": None}


def fork_bomb(cap: int = 2000) -> dict[str, Any]:
    """Fork sleeping children until a fork fails (or ``cap``); then end them all."""
    children = []
    error = None
    try:
        for _ in range(cap):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    except OSError as failure:
        error = f"{type(failure).__name__}: {failure}"
    for pid in children:
        os.kill(pid, 9)
    for pid in children:
        os.waitpid(pid, 0)
    return {"ok": error is None, "error": error, "forked": len(children)}


def allocate(megabytes: int) -> dict[str, Any]:
    """Touch ``megabytes`` MB of memory (a limit kills the process before it answers)."""
    blocks = []
    for _ in range(megabytes // 16):
        blocks.append(bytearray(16 * 1024 * 1024))
        blocks[-1][::4096] = b"x" * len(blocks[-1][::4096])
    return {"ok": True, "error": None, "allocated_mb": 16 * len(blocks)}


ATTEMPTS = {
    "socket_connect": socket_connect,
    "ctypes_connect": ctypes_connect,
    "binary_connect": binary_connect,
    "curl_connect": curl_connect,
    "dns": dns,
    "write_ctypes": write_ctypes,
    "write_subprocess": write_subprocess,
    "read_ctypes": read_ctypes,
    "ptrace": ptrace,
    "new_namespace": new_namespace,
    "fork_bomb": fork_bomb,
    "allocate": allocate,
}


def attempt(what: str, **arguments: Any) -> dict[str, Any]:
    return ATTEMPTS[what](**arguments)


def attempt_all(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ``{"what": ..., **arguments}`` in turn, in this one process."""
    return [attempt(**item) for item in attempts]


if __name__ == "__main__" and len(sys.argv) > 1:
    request = json.loads(sys.argv[1])
    print(json.dumps(attempt(request.pop("what"), **request)), flush=True)
