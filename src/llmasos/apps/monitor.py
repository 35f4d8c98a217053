"""``python -m llmasos.apps.monitor APP_DIR [--status FILE]``: the trusted parent of an app.

`llmasos.apps.supervisor` starts it in a new session, so its pid is the process group
``app stop`` signals. It reads the manifest once, then runs the app's code in a child
(``python -m llmasos.apps.runner APP_DIR --network on|off --storage-mb N``, which installs
the sandbox guard before importing the app) in an OS sandbox (`llmasos.sandbox.spawn`,
built from the manifest by `llmasos.apps.confinement`), and copies the child's output into
its own — the app's log — with a ``---`` line for every start, crash, restart and stop, and
the confinement in force at each start. The child keeps the environment, and so the port,
across restarts. In strict mode a machine that cannot confine the app is one ``error:``
line and exit status 1 before anything runs.

* The child answering ``/health`` for the first time is the successful start. A child that
  exits before that is a start failure: the monitor exits with the child's status and
  restarts nothing (`AppSupervisor.start` then reports the log's tail).
* After that, any exit is a crash (with the sandbox's reason when a limit ended it: out of
  memory, the process limit): the child is started again after 1, 2, 4 ... s (capped
  at 30 s, doubling with each crash within the last 60 s); the fifth crash within 60 s
  gives up (exit status 1).
* Every 2 s the monitor adds up the app's storage (``LLMASOS_APP_DATA`` and
  ``LLMASOS_APP_TMP``); over ``permissions.storage_mb`` it stops the app (exit status 3).
* SIGTERM (or SIGINT) stops the child — SIGTERM, SIGKILL after 5 s — and the monitor
  exits 0 without restarting it.

``--status FILE`` is kept up to date (atomically) with `MonitorStatus` as JSON: state,
restart count, last exit; `read_status` reads it for ``app list``/``app info``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

from llmasos.apps.confinement import AppConfinement, app_spec
from llmasos.apps.manifest import AppManifest, load_manifest
from llmasos.apps.sandbox import (
    MB,
    StorageDirs,
    app_environment,
    directory_usage,
    quota_bytes,
)
from llmasos.errors import LLMasOSError
from llmasos.sandbox import SandboxedProcess, plan, spawn

RUNNER_MODULE = "llmasos.apps.runner"
CHILD_STOP_TIMEOUT = 5.0
QUOTA_INTERVAL = 2.0
HEALTH_TIMEOUT = 1.0
QUOTA_EXIT = 3
GAVE_UP_EXIT = 1


@dataclass
class RestartPolicy:
    """When to restart a crashed app: after ``first_delay`` doubled for each crash within
    ``window`` seconds (at most ``max_delay``), never once ``max_crashes`` fall in it."""

    max_crashes: int = 5
    window: float = 60.0
    first_delay: float = 1.0
    max_delay: float = 30.0
    crashes: deque[float] = field(default_factory=deque)

    def crashed(self, now: float) -> float | None:
        """Record a crash at ``now`` (monotonic seconds); the delay before the restart, or
        None to give up."""
        self.crashes.append(now)
        while now - self.crashes[0] > self.window:
            self.crashes.popleft()
        if len(self.crashes) >= self.max_crashes:
            return None
        return float(min(self.max_delay, self.first_delay * 2 ** (len(self.crashes) - 1)))


@dataclass(frozen=True)
class MonitorStatus:
    pid: int
    """The monitor's pid (the one in ``run.json``)."""
    child_pid: int | None
    state: str
    """starting, running, restarting, stopped or failed."""
    restarts: int = 0
    last_exit: str | None = None
    updated_at: str = ""
    confinement: dict[str, Any] | None = None
    """The sandbox's `ConfinementReport` as JSON (None: not started yet)."""


def read_status(path: Path) -> MonitorStatus | None:
    try:
        return MonitorStatus(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Monitor:
    """Runs one app's child process until stopped, restarting it when it crashes."""

    def __init__(
        self,
        directory: Path,
        manifest: AppManifest,
        environ: dict[str, str],
        *,
        status_path: Path | None = None,
        policy: RestartPolicy | None = None,
        hidden: tuple[Path, ...] = (),
    ) -> None:
        permissions = manifest.permissions
        self.name = manifest.name
        self.directory = directory
        self.status_path = status_path
        self.policy = policy or RestartPolicy()
        self.port = int(environ["LLMASOS_APP_PORT"])
        own_tmp = environ.get("LLMASOS_APP_TMP")
        self.tmp = Path(own_tmp) if own_tmp else None
        self.storage = [Path(environ["LLMASOS_APP_DATA"]), *([self.tmp] if self.tmp else [])]
        self.storage_mb = permissions.storage_mb
        self.command = [
            sys.executable,
            "-m",
            RUNNER_MODULE,
            str(directory),
            "--network",
            "on" if permissions.network else "off",
            "--storage-mb",
            str(permissions.storage_mb),
        ]
        self.env = app_environment(environ, network=permissions.network)
        confinement = AppConfinement.from_environment(environ)
        base_url = environ.get("LLMASOS_BASE_URL", "http://127.0.0.1:8000")
        self.spec = app_spec(
            manifest,
            directory=directory,
            storage=StorageDirs(data=self.storage[0], tmp=self.tmp or self.storage[0]),
            base_url=base_url,
            port=self.port,
            hidden=hidden,
            confinement=confinement,
        )
        self.mode = confinement.mode
        self.report = plan(self.spec, self.mode)  # strict and unconfinable: ConfinementError
        namespaces = self.report.layer("namespaces")
        if not permissions.network and namespaces is not None and namespaces.active:
            # inside its own network namespace the kernel is at 127.0.0.1:PORT
            scheme = "https" if base_url.startswith("https") else "http"
            self.env["LLMASOS_BASE_URL"] = f"{scheme}://127.0.0.1:{self.spec.kernel_port_inside}"
        self.stop_requested = threading.Event()
        self.restarts = 0
        self.last_exit: str | None = None
        self._lock = threading.Lock()
        self._child: SandboxedProcess | None = None
        self._copier: threading.Thread | None = None

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (0), a start failure (the child's status), too many crashes
        (1) or the storage quota exceeded (3)."""
        child = self._spawn()
        ever_healthy = healthy = False
        next_quota_check = time.monotonic() + QUOTA_INTERVAL
        while True:
            if self.stop_requested.is_set():
                self._stop_child()
                self.note("stopped")
                self._save("stopped")
                return 0
            code = child.poll()
            if code is not None:
                self._finish_output()
                if self.stop_requested.is_set():
                    continue
                self.last_exit = describe_exit(code)
                reason = child.exit_reason()
                if reason:
                    self.last_exit += f" ({reason})"
                if not ever_healthy:
                    self.note(f"{self.last_exit} before answering /health; not restarting")
                    self._save("failed")
                    return code if code > 0 else 1
                delay = self.policy.crashed(time.monotonic())
                if delay is None:
                    self.note(
                        f"{self.last_exit}; {self.policy.max_crashes} crashes within "
                        f"{self.policy.window:g} s, giving up"
                    )
                    self._save("failed")
                    return GAVE_UP_EXIT
                self.note(f"{self.last_exit}; restarting in {delay:g} s")
                self._save("restarting")
                if self.stop_requested.wait(delay):
                    continue
                self.restarts += 1
                child, healthy = self._spawn(), False
                continue
            if not healthy and self._answers_health():
                healthy = ever_healthy = True
                if self.restarts:
                    self.note(f"answering /health again (restart {self.restarts})")
                self._save("running")
            if time.monotonic() >= next_quota_check:
                next_quota_check = time.monotonic() + QUOTA_INTERVAL
                used = directory_usage(self.storage)
                if used > quota_bytes(self.storage_mb):
                    self.note(
                        f"storage quota exceeded: {used / MB:.2f} MB used of {self.storage_mb} "
                        "MB (manifest permissions.storage_mb); stopping the app"
                    )
                    self._stop_child()
                    self.last_exit = "over its storage quota"
                    self._save("failed")
                    return QUOTA_EXIT
            self.stop_requested.wait(0.25 if healthy else 0.1)

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        self.stop_requested.set()

    # --- the child --------------------------------------------------------------------------

    def _spawn(self) -> SandboxedProcess:
        if self.tmp is not None:  # a fresh temp directory for every run
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True, exist_ok=True)
        for directory in self.storage:
            directory.mkdir(parents=True, exist_ok=True)
        child = spawn(
            self.command,
            self.spec,
            mode=self.mode,
            cwd=self.directory,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._child = child
        self.report = child.report
        self.note(f"confinement: {child.report.summary()}")
        self._copier = threading.Thread(
            target=self._copy_output, args=(child.stdout,), name="app-output", daemon=True
        )
        self._copier.start()
        if self.restarts:
            self.note(f"restart {self.restarts}: started pid {child.pid} on port {self.port}")
        self._save("starting" if not self.restarts else "restarting")
        return child

    def _copy_output(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        with stream:
            while chunk := os.read(stream.fileno(), 65536):
                self._write(chunk)

    def _finish_output(self) -> None:
        """Wait for the exited child's last output to reach the log."""
        if self._copier is not None:
            self._copier.join(timeout=5)

    def _stop_child(self) -> None:
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(CHILD_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.note(f"pid {child.pid} did not stop in {CHILD_STOP_TIMEOUT:g} s; killing it")
                child.kill()
                child.wait()
        self._finish_output()

    def _answers_health(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HEALTH_TIMEOUT)
        try:
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    # --- the log and the status file --------------------------------------------------------

    def note(self, text: str) -> None:
        """One ``---`` line in the app's log."""
        stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
        self._write(f"--- {stamp} {self.name}: {text}\n".encode())

    def _write(self, data: bytes) -> None:
        with self._lock:
            view = memoryview(data)
            while view:
                try:
                    written = os.write(sys.stdout.fileno(), view)
                except OSError:
                    return  # the log is gone or the disk is full: keep the app running
                view = view[written:]

    def _save(self, state: str) -> None:
        if self.status_path is None:
            return
        status = MonitorStatus(
            pid=os.getpid(),
            child_pid=self._child.pid if self._child is not None else None,
            state=state,
            restarts=self.restarts,
            last_exit=self.last_exit,
            updated_at=datetime.now(UTC).isoformat(timespec="seconds"),
            confinement=self.report.to_json(),
        )
        partial = self.status_path.with_name(self.status_path.name + ".partial")
        try:
            partial.write_text(json.dumps(asdict(status)) + "\n", encoding="utf-8")
            partial.replace(self.status_path)
        except OSError as error:
            self.note(f"cannot write {self.status_path}: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmasos.apps.monitor",
        description="Run an installed app, restarting it when it crashes.",
    )
    parser.add_argument("directory", type=Path, help="the app's directory")
    parser.add_argument("--status", type=Path, help="keep the monitor's state in this file")
    parser.add_argument(
        "--hide", type=Path, action="append", default=[], help="a directory the app must not see"
    )
    arguments = parser.parse_args(sys.argv[1:] if argv is None else argv)
    directory = arguments.directory.resolve()
    try:
        manifest = load_manifest(directory)
        monitor = Monitor(
            directory,
            manifest,
            dict(os.environ),
            status_path=arguments.status,
            hidden=tuple(path.resolve() for path in arguments.hide),
        )
    except (LLMasOSError, KeyError, ValueError) as error:
        detail = f"missing {error} in the environment" if isinstance(error, KeyError) else error
        print(f"error: {detail}", file=sys.stderr, flush=True)
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, monitor.request_stop)
    return monitor.run()


if __name__ == "__main__":
    sys.exit(main())
