"""The app store: installed apps under ``$LLMASOS_HOME/apps``, and indexes to install from.

Layout: ``apps/NAME/VERSION/`` holds the app's files, ``apps/NAME/app.json`` records the
active version and where it came from, ``apps/NAME/{logs,data}`` belong to the running app.
Every change is staged in ``apps/.staging/`` and moved into place with one rename, so a
failure at any step (bad manifest, digest mismatch, full disk, a refused prompt) leaves
nothing half-installed. `AppStore.upgrade` keeps the old version until the new one is
active (and, through ``activate``, running), and puts it back if that fails.

An index is a JSON file a team can host anywhere::

    {"apps": [{"name": "summarizer", "version": "1.0.0", "description": "...",
               "url": "summarizer-1.0.0.tar.gz", "sha256": "..."}]}

``url`` is absolute (``file://``, ``http(s)://``) or relative to the index's URL; the
archive's SHA-256 must match ``sha256`` before anything is unpacked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlparse

import httpx

from llmasos.apps.catalog import resolve_builtin
from llmasos.apps.manifest import (
    MANIFEST_NAME,
    AppManifest,
    check_app_name,
    load_manifest,
    parse_version,
)
from llmasos.errors import DownloadError, InvalidRequestError, NotFoundError, StorageError

RECORD_NAME = "app.json"
STAGING = ".staging"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".venv", "logs", "data")
DOWNLOAD_TIMEOUT = 60.0

Confirm = Callable[[AppManifest], bool]


class AppStoreError(InvalidRequestError):
    """An install, upgrade or removal that cannot be done; nothing was changed."""

    default_code = "app_store_error"


@dataclass(frozen=True)
class InstalledApp:
    manifest: AppManifest
    directory: Path
    """The active version's files."""
    installed_at: str
    source: str
    sha256: str | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version


@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    url: str
    sha256: str
    description: str = ""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES)


def fetch(url: str) -> bytes:
    """The bytes at a ``file://`` or ``http(s)://`` URL (or a plain path)."""
    parsed = urlparse(url)
    try:
        if parsed.scheme in ("http", "https"):
            response = httpx.get(url, timeout=DOWNLOAD_TIMEOUT, follow_redirects=True)
            response.raise_for_status()
            return response.content
        if parsed.scheme in ("file", ""):
            return Path(unquote(parsed.path if parsed.scheme else url)).read_bytes()
    except (httpx.HTTPError, OSError) as error:
        raise DownloadError(f"cannot fetch {url}: {error}") from None
    raise DownloadError(f"cannot fetch {url}: only file://, http:// and https:// URLs")


def read_index(url: str) -> list[IndexEntry]:
    """Parse an app index; relative archive URLs are resolved against ``url``."""
    try:
        data = json.loads(fetch(url))
        apps = data["apps"]
        if not isinstance(apps, list):
            raise TypeError("apps is not a list")
        return [
            IndexEntry(
                name=str(item["name"]),
                version=str(item["version"]),
                url=urljoin(url, str(item["url"])),
                sha256=str(item["sha256"]).lower(),
                description=str(item.get("description", "")),
            )
            for item in apps
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise AppStoreError(
            f"{url} is not an app index (a JSON object with an 'apps' list of name, version, "
            f"url, sha256): {error}"
        ) from None


def choose(entries: list[IndexEntry], wanted: str) -> IndexEntry:
    """``NAME`` (newest version) or ``NAME@VERSION`` from an index."""
    name, _, version = wanted.partition("@")
    matching = [e for e in entries if e.name == name and (not version or e.version == version)]
    if not matching:
        raise NotFoundError(f"the index has no app {wanted!r}", code="app_not_found")
    return max(matching, key=lambda entry: parse_version(entry.version))


def _safe_extract(archive: Path, target: Path) -> None:
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                for member in zipped.namelist():
                    resolved = (target / member).resolve()
                    if not resolved.is_relative_to(target.resolve()):
                        raise AppStoreError(f"{archive.name}: unsafe path {member!r}")
                zipped.extractall(target)
        else:
            with tarfile.open(archive) as tarred:
                tarred.extractall(target, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as error:
        raise AppStoreError(f"cannot unpack {archive.name}: {error}") from None


def _app_root(directory: Path) -> Path:
    """The directory holding the manifest: ``directory`` or its only subdirectory."""
    if (directory / MANIFEST_NAME).is_file():
        return directory
    children = [child for child in directory.iterdir() if not child.name.startswith(".")]
    if len(children) == 1 and (children[0] / MANIFEST_NAME).is_file():
        return children[0]
    return directory  # load_manifest reports the missing manifest


class AppStore:
    """Installed apps of one LLMasOS home."""

    def __init__(self, home: Path) -> None:
        self.root = home / "apps"

    # --- reading ----------------------------------------------------------------------------

    def app_dir(self, name: str) -> Path:
        return self.root / check_app_name(name, "name")

    def get(self, name: str) -> InstalledApp:
        record_path = self.app_dir(name) / RECORD_NAME
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(
                f"no app named {name!r} is installed", code="app_not_found"
            ) from None
        except (OSError, ValueError) as error:
            raise StorageError(f"cannot read {record_path}: {error}") from None
        directory = self.app_dir(name) / record["version"]
        return InstalledApp(
            manifest=load_manifest(directory),
            directory=directory,
            installed_at=record.get("installed_at", ""),
            source=record.get("source", ""),
            sha256=record.get("sha256"),
        )

    def list(self) -> list[InstalledApp]:
        if not self.root.is_dir():
            return []
        return [
            self.get(path.name)
            for path in sorted(self.root.iterdir())
            if (path / RECORD_NAME).is_file()
        ]

    def review(self, source: str, *, index: str | None = None) -> AppManifest:
        """The manifest of what `install` would install from ``source``, read from a
        staged copy (the same checks: digest, archive layout, manifest); nothing is
        installed. Whether it is already installed is `installed`'s question."""
        with self._staged(source, index) as (staged, _origin, _digest):
            return load_manifest(staged)

    def installed(self, name: str) -> bool:
        return (self.app_dir(name) / RECORD_NAME).is_file()

    # --- changing ---------------------------------------------------------------------------

    def install(
        self, source: str, *, confirm: Confirm | None = None, index: str | None = None
    ) -> InstalledApp:
        """Install from a directory, an archive, ``INDEX_URL#NAME``, ``builtin:NAME`` or
        (``index``) a name."""
        with self._staged(source, index) as (staged, origin, digest):
            manifest = load_manifest(staged)
            if (self.app_dir(manifest.name) / RECORD_NAME).exists():
                current = self.get(manifest.name).version
                raise AppStoreError(
                    f"{manifest.name} {current} is already installed"
                    + (
                        "; use `llmasos app upgrade` for a newer version"
                        if current != manifest.version
                        else ""
                    ),
                    code="already_installed",
                )
            if confirm is not None and not confirm(manifest):
                raise AppStoreError("installation cancelled; nothing was installed")
            created = not self.app_dir(manifest.name).exists()
            target = self._place(staged, manifest)
            try:
                self._write_record(manifest, origin, digest)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                if created:
                    shutil.rmtree(self.app_dir(manifest.name), ignore_errors=True)
                raise
        return self.get(manifest.name)

    def upgrade(
        self,
        source: str,
        *,
        confirm: Confirm | None = None,
        index: str | None = None,
        activate: Callable[[InstalledApp], None] | None = None,
    ) -> tuple[str, InstalledApp]:
        """Replace an installed app by a newer version; returns the old version.

        ``activate`` runs once the new version is current (e.g. to restart it); if it
        fails, the old version is made current again and the new one removed.
        """
        with self._staged(source, index) as (staged, origin, digest):
            manifest = load_manifest(staged)
            old = self.get(manifest.name)
            if manifest.version_key <= old.manifest.version_key:
                raise AppStoreError(
                    f"{manifest.name} {manifest.version} is not newer than the installed "
                    f"{old.version}",
                    code="not_newer",
                )
            if confirm is not None and not confirm(manifest):
                raise AppStoreError("upgrade cancelled; nothing was changed")
            target = self._place(staged, manifest)
            try:
                self._write_record(manifest, origin, digest)
                if activate is not None:
                    activate(self.get(manifest.name))
            except BaseException:
                self._write_record(old.manifest, old.source, old.sha256, old.installed_at)
                shutil.rmtree(target, ignore_errors=True)
                raise
        shutil.rmtree(old.directory, ignore_errors=True)
        return old.version, self.get(manifest.name)

    def remove(self, name: str) -> InstalledApp:
        """Delete an app with its logs and data (stop it first)."""
        installed = self.get(name)
        staging = self._staging_dir()
        trash = Path(tempfile.mkdtemp(prefix="removed-", dir=staging))
        try:
            os.rename(self.app_dir(name), trash / name)
        except OSError as error:
            raise StorageError(f"cannot remove {name}: {error}") from None
        shutil.rmtree(trash, ignore_errors=True)
        return installed

    # --- internals --------------------------------------------------------------------------

    def _staging_dir(self) -> Path:
        staging = self.root / STAGING
        try:
            staging.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create {staging}: {error}") from None
        return staging

    @contextmanager
    def _staged(self, source: str, index: str | None) -> Iterator[tuple[Path, str, str | None]]:
        """A private copy of the app to install, removed afterwards whatever happens."""
        work = Path(tempfile.mkdtemp(prefix="install-", dir=self._staging_dir()))
        try:
            digest: str | None = None
            origin = source
            if index is not None or "#" in source:
                index_url, _, wanted = (index, "", source) if index else source.rpartition("#")
                entry = choose(read_index(str(index_url)), wanted)
                data = fetch(entry.url)
                digest = hashlib.sha256(data).hexdigest()
                if digest != entry.sha256:
                    raise DownloadError(
                        f"digest mismatch for {entry.name} {entry.version} from {entry.url}: "
                        f"the index says sha256 {entry.sha256}, the archive is {digest}; "
                        "nothing was installed",
                        code="digest_mismatch",
                    )
                archive = work / Path(urlparse(entry.url).path).name
                archive.write_bytes(data)
                _safe_extract(archive, work / "unpacked")
                staged = _app_root(work / "unpacked")
                manifest = load_manifest(staged)
                if (manifest.name, manifest.version) != (entry.name, entry.version):
                    raise AppStoreError(
                        f"the archive holds {manifest.name} {manifest.version}, but the index "
                        f"lists it as {entry.name} {entry.version}"
                    )
                origin = entry.url
            else:
                path = resolve_builtin(source) or Path(source).expanduser().resolve()
                if is_archive(path):
                    digest = sha256_file(path)
                    _safe_extract(path, work / "unpacked")
                    staged = _app_root(work / "unpacked")
                elif path.is_dir():
                    staged = work / "app"
                    shutil.copytree(path, staged, ignore=IGNORED, symlinks=False)
                else:
                    raise AppStoreError(
                        f"{source} is not an app directory, an archive "
                        f"({', '.join(ARCHIVE_SUFFIXES)}) or INDEX_URL#NAME"
                    )
                origin = str(path)
            yield staged, origin, digest
        except OSError as error:
            raise StorageError(f"cannot stage {source}: {error}") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _place(self, staged: Path, manifest: AppManifest) -> Path:
        target = self.app_dir(manifest.name) / manifest.version
        if target.exists():
            raise AppStoreError(
                f"{manifest.name} {manifest.version} is already installed", code="already_installed"
            )
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged, target)
        except OSError as error:
            raise StorageError(f"cannot install into {target}: {error}") from None
        return target

    def _write_record(
        self,
        manifest: AppManifest,
        source: str,
        digest: str | None,
        installed_at: str | None = None,
    ) -> None:
        record: dict[str, Any] = {
            "name": manifest.name,
            "version": manifest.version,
            "installed_at": installed_at or datetime.now(UTC).isoformat(timespec="seconds"),
            "source": source,
            "sha256": digest,
        }
        path = self.app_dir(manifest.name) / RECORD_NAME
        temporary = path.with_suffix(".json.tmp")
        try:
            temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            os.replace(temporary, path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise StorageError(f"cannot write {path}: {error}") from None
