"""Running installed apps as their own processes, each with a capability key.

`AppSupervisor.start` creates an API key for the user ``app.NAME`` (role ``user``) whose
scopes are exactly the manifest's permissions and whose model allow-list is the manifest's,
then starts the app's monitor (``python -m llmasos.apps.monitor``, which runs the app's code
in a sandboxed child and restarts it when it crashes) in a new session, on a free loopback
port, with ``LLMASOS_BASE_URL`` (the kernel's server), ``LLMASOS_API_KEY`` (that key) and
``LLMASOS_APP_DATA``/``LLMASOS_APP_TMP`` (where it may write) in its environment, its output
appended to ``apps/NAME/logs/app.log``. The app reaches the kernel only over HTTP with that
key, so a call outside its manifest is a 403 the server audits. `start` returns once the
monitor reports that the app answered ``/health``; an app that exits first is an
`AppStartError` carrying the last lines of its log. ``apps/NAME/run.json`` records the
monitor's pid (its process group), port and key, ``apps/NAME/monitor.json`` the monitor's
state and restart count; `stop` ends the process group (SIGTERM, then SIGKILL) and revokes
the key.

When the database has no users yet (authentication not set up), no key is made: the server
then runs without auth and there is nothing to limit with one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.apps.confinement import AppConfinement, app_plan
from llmasos.apps.monitor import MonitorStatus, read_status
from llmasos.apps.sandbox import StorageDirs, quota_bytes
from llmasos.apps.store import AppStore, InstalledApp
from llmasos.errors import InvalidRequestError, LLMasOSError, NotFoundError, StorageError
from llmasos.net import free_port
from llmasos.sandbox import ConfinementMode, ConfinementReport, refusal
from llmasos.storage.database import Database

STATE_NAME = "run.json"
MONITOR_STATUS_NAME = "monitor.json"
LOG_NAME = "app.log"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
LOG_TAIL = 20
MONITOR_MODULE = "llmasos.apps.monitor"
RUNNER_MODULE = "llmasos.apps.runner"
"""What an app process started by an older version of the supervisor runs."""
_children: dict[int, subprocess.Popen[bytes]] = {}
"""Apps this process started, kept so they are reaped (and not warned about) when they end."""


class AppStartError(LLMasOSError):
    """An app exited or did not answer while starting; the message ends with its log."""

    default_code = "app_start_failed"


@dataclass(frozen=True)
class RunState:
    name: str
    version: str
    pid: int
    port: int
    key_id: str | None
    started_at: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def app_user(name: str) -> str:
    """The user an app's capability keys belong to."""
    return f"app.{name}"


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live app monitor (not a zombie, not a reused pid)."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        reaped, _status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child: started by another `llmasos app start`
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            command = cmdline.read_bytes().decode(errors="replace")
            return MONITOR_MODULE in command or RUNNER_MODULE in command
        except OSError:
            return False
    return True


def recorded_state(store: AppStore, name: str) -> RunState | None:
    """What ``run.json`` says about a started app (None: no readable state file)."""
    try:
        data = json.loads((store.app_dir(name) / STATE_NAME).read_text(encoding="utf-8"))
        return RunState(**data)
    except (OSError, ValueError, TypeError):
        return None


def monitor_status(store: AppStore, state: RunState) -> MonitorStatus | None:
    """What the monitor of a started app last reported (None: nothing, or another run's)."""
    status = read_status(store.app_dir(state.name) / MONITOR_STATUS_NAME)
    return status if status is not None and status.pid == state.pid else None


def running_state(store: AppStore, name: str) -> RunState | None:
    """The state of a running app, read-only (for the server's ``/apps/NAME/`` proxy)."""
    state = recorded_state(store, name)
    return state if state is not None and _alive(state.pid) else None


class AppSupervisor:
    """Start, stop and watch installed apps of one home."""

    def __init__(
        self,
        store: AppStore,
        database: Database,
        base_url: str,
        confinement: AppConfinement | None = None,
    ) -> None:
        self.store = store
        self.database = database
        self.base_url = base_url
        self.confinement = confinement or AppConfinement.from_environment(os.environ)
        self.keys = KeyManager(database)

    @property
    def home(self) -> Path:
        return self.store.root.parent

    def confinement_plan(self, name: str) -> ConfinementReport:
        """The OS confinement the app gets on this machine (see `app_plan`)."""
        installed = self.store.get(name)
        return app_plan(
            installed.manifest,
            directory=installed.directory,
            app_dir=self.store.app_dir(name),
            home=self.home,
            confinement=self.confinement,
        )

    def log_path(self, name: str) -> Path:
        return self.store.app_dir(name) / "logs" / LOG_NAME

    def _state_path(self, name: str) -> Path:
        return self.store.app_dir(name) / STATE_NAME

    def status(self, name: str) -> RunState | None:
        """The running app's state, or None (a stale state file is cleaned up)."""
        path = self._state_path(name)
        state = recorded_state(self.store, name)
        if state is None:
            path.unlink(missing_ok=True)
            return None
        if _alive(state.pid):
            return state
        self._forget(state)
        return None

    def logs(self, name: str, lines: int = 50) -> list[str]:
        self.store.get(name)
        try:
            with self.log_path(name).open(encoding="utf-8", errors="replace") as handle:
                return [line.rstrip("\n") for line in deque(handle, maxlen=max(lines, 0))]
        except FileNotFoundError:
            return []

    def start(self, name: str, *, timeout: float = START_TIMEOUT) -> RunState:
        installed = self.store.get(name)
        running = self.status(name)
        if running is not None:
            raise InvalidRequestError(
                f"{name} is already running (pid {running.pid}, {running.url})",
                code="already_running",
            )
        report = self.confinement_plan(name)
        if not report.complete and self.confinement.mode is ConfinementMode.STRICT:
            raise refusal(name, report)
        key_id, secret = self._capability(installed)
        port = free_port()
        storage = StorageDirs.of(self.store.app_dir(name))
        log_path = self.log_path(name)
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("LLMASOS_API_KEY", "LLMASOS_APP_HOST", "LLMASOS_APP_PORT")
        }
        env.update(
            LLMASOS_BASE_URL=self.base_url,
            LLMASOS_APP_NAME=name,
            LLMASOS_APP_HOST="127.0.0.1",
            LLMASOS_APP_PORT=str(port),
            LLMASOS_APP_DATA=str(storage.data),
            LLMASOS_APP_TMP=str(storage.tmp),
            TMPDIR=str(storage.tmp),
            PYTHONUNBUFFERED="1",
            **self.confinement.environment(),
        )
        if secret is not None:
            env["LLMASOS_API_KEY"] = secret
        status_path = self.store.app_dir(name) / MONITOR_STATUS_NAME
        try:
            status_path.unlink(missing_ok=True)
            storage.data.mkdir(parents=True, exist_ok=True)
            storage.tmp.mkdir(parents=True, exist_ok=True)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("a", encoding="utf-8") as log:
                log.write(f"--- starting {name} {installed.version} on port {port}\n")
                log.flush()
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        MONITOR_MODULE,
                        str(installed.directory),
                        "--status",
                        str(status_path),
                        "--hide",
                        str(self.home),
                    ],
                    cwd=installed.directory,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as error:
            self._revoke(key_id)
            raise StorageError(f"cannot start {name}: {error}") from None
        _children[process.pid] = process
        state = RunState(
            name=name,
            version=installed.version,
            pid=process.pid,
            port=port,
            key_id=key_id,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self._state_path(name).write_text(json.dumps(asdict(state)) + "\n", encoding="utf-8")
        self._wait_healthy(process, state, timeout)
        return state

    def monitor(self, name: str) -> MonitorStatus | None:
        """What the app's monitor reported last: of the running app, else of its last run
        (kept until the next start, so a crashed app's last exit can be shown)."""
        state = self.status(name)
        if state is not None:
            return monitor_status(self.store, state)
        return read_status(self.store.app_dir(name) / MONITOR_STATUS_NAME)

    def run_record(self, name: str) -> dict[str, object]:
        """Whether an app runs, as data: ``state`` (running, failed or stopped), ``url``,
        ``pid``, ``restarts`` and ``last_exit`` (what ``app list --json`` and ``/v1/apps``
        show)."""
        running = self.status(name)
        monitor = self.monitor(name)
        failed = running is None and monitor is not None and monitor.state == "failed"
        return {
            "state": "running" if running is not None else ("failed" if failed else "stopped"),
            "url": running.url if running is not None else None,
            "pid": running.pid if running is not None else None,
            "restarts": monitor.restarts if monitor is not None else 0,
            "last_exit": monitor.last_exit if monitor is not None else None,
        }

    def storage(self, name: str) -> tuple[int, int]:
        """``(bytes used, quota in bytes)`` of an installed app's data and temp directories."""
        installed = self.store.get(name)
        used = StorageDirs.of(self.store.app_dir(name)).usage()
        return used, quota_bytes(installed.manifest.permissions.storage_mb)

    def stop(self, name: str) -> RunState | None:
        """Stop the app if it runs; returns what ran (None: it was not running)."""
        self.store.get(name)
        state = self.status(name)
        if state is None:
            return None
        self._terminate(state.pid)
        self._forget(state)
        return state

    # --- internals --------------------------------------------------------------------------

    def _capability(self, installed: InstalledApp) -> tuple[str | None, str | None]:
        """A key limited to the manifest (None when the app declares no calls, or when no
        users exist yet so the server cannot be running with authentication)."""
        manifest = installed.manifest
        if not manifest.scopes:
            return None, None
        users = UserManager(self.database)
        if not users.list():
            return None, None
        user = app_user(manifest.name)
        try:
            users.get(user)
        except NotFoundError:
            users.create(user, role="user")
        created = self.keys.create(
            user,
            f"app {manifest.name} {manifest.version}",
            scopes=manifest.scopes,
            models=manifest.permissions.models,
        )
        return created.info.key_id, created.secret

    def _revoke(self, key_id: str | None) -> None:
        if key_id is not None:
            self.keys.revoke(key_id)

    def _forget(self, state: RunState) -> None:
        self._revoke(state.key_id)
        self._state_path(state.name).unlink(missing_ok=True)

    def _wait_healthy(
        self, process: subprocess.Popen[bytes], state: RunState, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = process.poll()
            if code is not None:
                _children.pop(process.pid, None)
                self._forget(state)
                tail = "\n".join(self.logs(state.name, LOG_TAIL))
                raise AppStartError(
                    f"{state.name} exited with status {code} while starting; "
                    f"the end of {self.log_path(state.name)}:\n{tail}"
                )
            status = monitor_status(self.store, state)
            if status is not None and status.state == "running":
                return
            if time.monotonic() > deadline:
                self._terminate(state.pid)
                self._forget(state)
                tail = "\n".join(self.logs(state.name, LOG_TAIL))
                raise AppStartError(
                    f"{state.name} did not answer /health within {timeout:.0f} s; "
                    f"the end of its log:\n{tail}"
                )
            time.sleep(0.1)

    def _terminate(self, pid: int) -> None:
        """SIGTERM the process group of the monitor ``pid`` (SIGKILL after `STOP_TIMEOUT`),
        then SIGKILL whatever of the group outlived the monitor."""
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.05)
        _alive(pid)  # reap it if it is our child
