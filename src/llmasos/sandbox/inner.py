"""``python -m llmasos.sandbox.inner [OPTIONS] -- ARGV...``: the first process inside a
sandbox, trusted code that runs before the confined program.

It sets the rlimits it is given, starts the relays of a network namespace (``--relay
LISTEN=UPSTREAM``, see `llmasos.sandbox.bridge`), confines itself with Landlock
(``--landlock JSON``: readable and writable paths, allowed TCP ports), installs the seccomp
filter itself when bubblewrap did not (``--seccomp``, the weaker mode), then forks and
executes ``ARGV``. It stays
as the sandbox's PID 1: it forwards SIGTERM, SIGINT and SIGHUP to the program, reaps every
orphan, and when the program ends writes ``exit N`` or ``signal N`` to ``--status-fd`` and
exits with N (128 + N for a signal), which ends the PID namespace and whatever the program
left running in it. It holds no privilege the program lacks: same user, same filter, same
namespaces, so taking it over gains nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import sys
from types import FrameType

from llmasos.sandbox.bridge import Bridge, Endpoint

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
RLIMITS = {
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "as": resource.RLIMIT_AS,
    "nproc": resource.RLIMIT_NPROC,
    "cpu": resource.RLIMIT_CPU,
}


def _set_limit(name: str, value: int) -> None:
    kind = RLIMITS[name]
    _soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, value))


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llmasos.sandbox.inner")
    parser.add_argument("--relay", action="append", default=[], help="LISTEN=UPSTREAM")
    parser.add_argument("--rlimit", action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--seccomp", action="store_true", help="install the filter here")
    parser.add_argument("--landlock", help="JSON: readable, writable, connect, bind")
    parser.add_argument("--status-fd", type=int)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    arguments = parser.parse_args(argv)
    if arguments.command[:1] == ["--"]:
        arguments.command = arguments.command[1:]
    if not arguments.command:
        parser.error("no command after --")
    return arguments


def _report(status_fd: int | None, text: str) -> None:
    if status_fd is None:
        return
    try:
        os.write(status_fd, text.encode())
        os.close(status_fd)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    arguments = _parse(sys.argv[1:] if argv is None else argv)
    try:
        for item in arguments.rlimit:
            name, _, value = item.partition("=")
            _set_limit(name, int(value))
        if "fsize" in {item.partition("=")[0] for item in arguments.rlimit}:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
        bridge = Bridge("sandbox-relay") if arguments.relay else None
        for relay in arguments.relay:
            listen, _, upstream = relay.partition("=")
            assert bridge is not None
            bridge.relay(Endpoint.parse(listen), Endpoint.parse(upstream))
        if arguments.landlock:
            from llmasos.sandbox import landlock

            rules = json.loads(arguments.landlock)
            landlock.restrict(
                readable=rules["readable"],
                writable=rules["writable"],
                tcp_connect=rules.get("connect"),
                tcp_bind=rules.get("bind"),
            )
        if arguments.seccomp:
            from llmasos.sandbox import seccomp

            seccomp.load()
    except (OSError, ValueError, KeyError, ImportError) as error:
        print(f"error: the sandbox could not be set up: {error}", file=sys.stderr, flush=True)
        _report(arguments.status_fd, "exit 125\n")
        return 125
    child = os.fork()
    if child == 0:
        for signum in FORWARDED:
            signal.signal(signum, signal.SIG_DFL)
        if arguments.status_fd is not None:
            os.close(arguments.status_fd)
        try:
            os.execvp(arguments.command[0], arguments.command)
        except OSError as error:
            print(f"error: cannot run {arguments.command[0]}: {error}", file=sys.stderr, flush=True)
        os._exit(127)

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            _report(arguments.status_fd, "exit 1\n")
            return 1
        if pid != child:
            continue  # an orphan the program left behind, reaped
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            _report(arguments.status_fd, f"signal {number}\n")
            return 128 + number
        code = os.waitstatus_to_exitcode(status)
        _report(arguments.status_fd, f"exit {code}\n")
        return code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main())  # no interpreter teardown: the relay thread may still hold sockets
