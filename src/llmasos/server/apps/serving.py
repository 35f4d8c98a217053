"""The app manager behind ``/v1/apps``: list, review, install, start, stop, logs, remove.

The same `AppStore` and `AppSupervisor` the ``llmasos app`` commands use, over HTTP. Apps
belong to the machine, not to one user: anyone signed in may list them (to open one), and
every change, and the logs, need the ``admin`` scope and role. An install is two calls: a
review (the manifest, each permission in words, the confinement this machine gives it and a
``review_id``, the digest of that manifest; nothing installed) and the install with that
``review_id``: if what the source holds now asks for anything else, nothing is installed
(409 ``review_changed``). Sources are ``builtin:NAME``, ``INDEX_URL#NAME`` or an uploaded
archive (tar.gz, tar or zip, recognised by its bytes). Directories on the server's disk
are refused: a browser's path means nothing there.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool

from llmasos.access.principal import Principal
from llmasos.apps.catalog import BUILTIN_PREFIX, builtin_names, builtin_path
from llmasos.apps.confinement import AppConfinement, app_plan
from llmasos.apps.manifest import AppManifest, load_manifest
from llmasos.apps.store import AppStore, InstalledApp
from llmasos.apps.supervisor import AppSupervisor
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.server.admin.serving import require_admin_scope
from llmasos.storage.database import Database

MAX_LOG_LINES = 2000


class ReviewChangedError(LLMasOSError):
    """The app to install is not the one whose permissions were reviewed (HTTP 409)."""

    status_code = 409
    error_type = "invalid_request_error"
    default_code = "review_changed"


def review_id(manifest: AppManifest) -> str:
    """A digest of everything the review shows: any change to the manifest changes it."""
    text = json.dumps(manifest.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def archive_suffix(data: bytes) -> str:
    """The archive type of uploaded bytes, by their magic numbers (400 when none fits)."""
    if data.startswith(b"PK\x03\x04"):
        return ".zip"
    if data.startswith(b"\x1f\x8b"):
        return ".tar.gz"
    if len(data) > 262 and data[257:262] == b"ustar":
        return ".tar"
    raise InvalidRequestError(
        "the uploaded file is not an app archive (.tar.gz, .tar or .zip)", param="file"
    )


def check_source(source: str) -> str:
    """Only built-ins and index entries come by name; other sources are uploaded."""
    source = source.strip()
    if source.startswith(BUILTIN_PREFIX) or "#" in source:
        return source
    raise InvalidRequestError(
        f"install builtin:NAME or INDEX_URL#NAME, or upload an archive; got {source[:80]!r}",
        param="source",
    )


class AppsService:
    """The apps of one LLMasOS home, for the HTTP API."""

    def __init__(self, settings: Settings, database: Callable[[], Database], base_url: str) -> None:
        self.settings = settings
        self.store = AppStore(settings.home)
        self.confinement = AppConfinement.from_settings(settings)
        self._database = database
        self.base_url = base_url

    def supervisor(self) -> AppSupervisor:
        return AppSupervisor(self.store, self._database(), self.base_url, self.confinement)

    # --- reading ----------------------------------------------------------------------------

    def describe(self, manifest: AppManifest) -> dict[str, Any]:
        """The manifest as the review and the listings show it."""
        return {
            "name": manifest.name,
            "version": manifest.version,
            "description": manifest.description,
            "entry": manifest.entry,
            "permissions": manifest.to_dict()["permissions"],
            "permission_lines": manifest.permissions.describe(),
        }

    def record(self, supervisor: AppSupervisor, installed: InstalledApp) -> dict[str, Any]:
        run = supervisor.run_record(installed.name)
        return {
            "object": "app",
            **self.describe(installed.manifest),
            "source": installed.source,
            "installed_at": installed.installed_at,
            **run,
            "url": f"/apps/{installed.name}/" if run["state"] == "running" else None,
        }

    def installed_apps(self) -> list[dict[str, Any]]:
        supervisor = self.supervisor()
        return [self.record(supervisor, installed) for installed in self.store.list()]

    def get(self, name: str) -> dict[str, Any]:
        return self.record(self.supervisor(), self.store.get(name))

    def builtins(self) -> list[dict[str, Any]]:
        return [
            {
                "object": "app.builtin",
                "source": BUILTIN_PREFIX + name,
                **self.describe(load_manifest(builtin_path(name))),
                "installed": self.store.installed(name),
            }
            for name in builtin_names()
        ]

    def logs(self, actor: Principal, name: str, lines: int) -> list[str]:
        require_admin_scope(actor)
        if not 1 <= lines <= MAX_LOG_LINES:
            raise InvalidRequestError(f"lines must be 1 to {MAX_LOG_LINES}", param="lines")
        return self.supervisor().logs(name, lines)

    # --- changing ---------------------------------------------------------------------------

    def review(self, actor: Principal, source: str | None, upload: bytes | None) -> dict[str, Any]:
        require_admin_scope(actor)
        with self._source(source, upload) as where:
            manifest = self.store.review(where)
        app_dir = self.store.root / manifest.name
        report = app_plan(
            manifest,
            directory=app_dir / manifest.version,
            app_dir=app_dir,
            home=self.settings.home,
            confinement=self.confinement,
        )
        return {
            "object": "app.review",
            **self.describe(manifest),
            "installed": self.store.installed(manifest.name),
            "confinement": {"summary": report.summary(), **report.to_json()},
            "review_id": review_id(manifest),
        }

    def install(
        self, actor: Principal, source: str | None, upload: bytes | None, reviewed: str
    ) -> dict[str, Any]:
        require_admin_scope(actor)

        def confirm(manifest: AppManifest) -> bool:
            if review_id(manifest) != reviewed:
                raise ReviewChangedError(
                    f"{manifest.name} {manifest.version} is not what was reviewed (its "
                    "manifest or permissions differ); review it again. Nothing was installed."
                )
            return True

        with self._source(source, upload) as where:
            installed = self.store.install(where, confirm=confirm)
        return self.record(self.supervisor(), installed)

    async def start(self, actor: Principal, name: str) -> dict[str, Any]:
        require_admin_scope(actor)
        supervisor = self.supervisor()
        await run_in_threadpool(supervisor.start, name)
        return self.record(supervisor, self.store.get(name))

    async def stop(self, actor: Principal, name: str) -> dict[str, Any]:
        require_admin_scope(actor)
        supervisor = self.supervisor()
        await run_in_threadpool(supervisor.stop, name)
        return self.record(supervisor, self.store.get(name))

    async def remove(self, actor: Principal, name: str) -> dict[str, Any]:
        require_admin_scope(actor)
        supervisor = self.supervisor()
        self.store.get(name)
        await run_in_threadpool(supervisor.stop, name)
        removed = self.store.remove(name)
        return {"object": "app.deleted", "name": removed.name, "deleted": True}

    # --- internals --------------------------------------------------------------------------

    def _source(self, source: str | None, upload: bytes | None) -> _Source:
        if upload is not None:
            return _Source(self.store.root, upload=upload)
        if not source:
            raise InvalidRequestError("give a source or upload an archive", param="source")
        return _Source(self.store.root, source=check_source(source))


class _Source:
    """A context giving the install source: the name, or an uploaded archive written to a
    private temporary file that is removed afterwards."""

    def __init__(self, root: Path, *, source: str | None = None, upload: bytes | None = None):
        self.root = root
        self.source = source
        self.upload = upload
        self.path: Path | None = None

    def __enter__(self) -> str:
        if self.upload is None:
            assert self.source is not None
            return self.source
        suffix = archive_suffix(self.upload)
        self.root.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            prefix=".upload-", suffix=suffix, dir=self.root, delete=False
        )
        with handle:
            handle.write(self.upload)
        self.path = Path(handle.name)
        return str(self.path)

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
