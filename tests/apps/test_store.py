"""The app store on disk: install, upgrade, remove, archives and indexes, atomically."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from llmasos.apps.manifest import AppManifest, ManifestError
from llmasos.apps.store import AppStore, AppStoreError, InstalledApp
from llmasos.errors import DownloadError, NotFoundError


def manifest_text(name: str = "notes", version: str = "1.0.0") -> str:
    return f"""[app]
name = "{name}"
version = "{version}"
description = "Takes notes."
entry = "app:app"

[permissions]
calls = ["services.summarize"]
"""


def make_app(directory: Path, version: str = "1.0.0", name: str = "notes") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "llmasos-app.toml").write_text(manifest_text(name, version))
    (directory / "app.py").write_text(f"VERSION = {version!r}\n")
    (directory / "__pycache__").mkdir(exist_ok=True)
    (directory / "__pycache__" / "junk.pyc").write_bytes(b"x")
    return directory


def make_archive(source: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=source.name)
    return archive


def leftovers(store: AppStore) -> list[str]:
    """Everything under apps/ but the (empty) staging directory."""
    staged = list((store.root / ".staging").iterdir()) if (store.root / ".staging").exists() else []
    assert staged == [], f"staging not cleaned: {staged}"
    return sorted(p.name for p in store.root.iterdir() if p.name != ".staging")


@pytest.fixture
def store(tmp_path: Path) -> AppStore:
    return AppStore(tmp_path / "home")


def test_install_list_get_remove(store: AppStore, tmp_path: Path) -> None:
    source = make_app(tmp_path / "src")
    seen: list[AppManifest] = []

    def confirm(manifest: AppManifest) -> bool:
        seen.append(manifest)
        return True

    installed = store.install(str(source), confirm=confirm)
    assert [m.name for m in seen] == ["notes"]
    assert installed.directory == store.root / "notes" / "1.0.0"
    assert (installed.directory / "app.py").is_file()
    assert not (installed.directory / "__pycache__").exists()
    assert [a.name for a in store.list()] == ["notes"]
    assert store.get("notes").source == str(source.resolve())
    store.remove("notes")
    assert store.list() == [] and leftovers(store) == []
    with pytest.raises(NotFoundError, match="no app named 'notes'"):
        store.get("notes")


def test_refusal_twice_and_broken_manifests_install_nothing(
    store: AppStore, tmp_path: Path
) -> None:
    source = make_app(tmp_path / "src")
    with pytest.raises(AppStoreError, match="cancelled"):
        store.install(str(source), confirm=lambda m: False)
    assert leftovers(store) == []
    store.install(str(source))
    with pytest.raises(AppStoreError, match=r"notes 1\.0\.0 is already installed") as caught:
        store.install(str(source))
    assert caught.value.code == "already_installed"
    newer = make_app(tmp_path / "newer", "2.0.0")
    with pytest.raises(AppStoreError, match="use `llmasos app upgrade`"):
        store.install(str(newer))
    broken = make_app(tmp_path / "broken", name="other")
    (broken / "llmasos-app.toml").write_text(manifest_text("other").replace("summarize", "x y"))
    with pytest.raises(ManifestError, match=r"permissions.calls\[0\]"):
        store.install(str(broken))
    with pytest.raises(AppStoreError, match="not an app directory"):
        store.install(str(tmp_path / "nowhere"))
    assert leftovers(store) == ["notes"]
    assert sorted(p.name for p in (store.root / "notes").iterdir()) == ["1.0.0", "app.json"]


def test_install_from_an_archive(store: AppStore, tmp_path: Path) -> None:
    archive = make_archive(make_app(tmp_path / "notes"), tmp_path / "notes-1.0.0.tar.gz")
    installed = store.install(str(archive))
    assert installed.version == "1.0.0"
    assert installed.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()


def write_index(tmp_path: Path, archive: Path, digest: str) -> str:
    index = tmp_path / "index.json"
    entry = {"name": "notes", "version": "1.0.0", "url": archive.name, "sha256": digest}
    index.write_text(json.dumps({"apps": [entry]}))
    return index.as_uri()


def test_install_from_an_index_verifies_the_digest(store: AppStore, tmp_path: Path) -> None:
    archive = make_archive(make_app(tmp_path / "notes"), tmp_path / "notes-1.0.0.tar.gz")
    bad = write_index(tmp_path, archive, "0" * 64)
    with pytest.raises(DownloadError, match="digest mismatch") as caught:
        store.install(f"{bad}#notes")
    assert caught.value.code == "digest_mismatch"
    assert leftovers(store) == []
    with pytest.raises(NotFoundError, match="no app 'other'"):
        store.install("other", index=bad)
    good = write_index(tmp_path, archive, hashlib.sha256(archive.read_bytes()).hexdigest())
    installed = store.install("notes", index=good)
    assert installed.source == archive.as_uri() and installed.version == "1.0.0"
    (tmp_path / "index.json").write_text("{}")
    with pytest.raises(AppStoreError, match="not an app index"):
        store.install(f"{good}#notes")


def test_upgrade_replaces_and_rolls_back(store: AppStore, tmp_path: Path) -> None:
    store.install(str(make_app(tmp_path / "v1")))
    with pytest.raises(AppStoreError, match="not newer"):
        store.upgrade(str(make_app(tmp_path / "v1b", "1.0.0")))

    def fail(app: InstalledApp) -> None:
        assert app.version == "2.0.0" and store.get("notes").version == "2.0.0"
        raise RuntimeError("the new version would not start")

    with pytest.raises(RuntimeError):
        store.upgrade(str(make_app(tmp_path / "v2", "2.0.0")), activate=fail)
    assert store.get("notes").version == "1.0.0"
    assert (store.root / "notes" / "1.0.0").is_dir() and not (
        store.root / "notes" / "2.0.0"
    ).exists()

    activated: list[str] = []
    old, new = store.upgrade(
        str(make_app(tmp_path / "v2", "2.0.0")), activate=lambda app: activated.append(app.version)
    )
    assert (old, new.version, activated) == ("1.0.0", "2.0.0", ["2.0.0"])
    assert (new.directory / "app.py").read_text() == "VERSION = '2.0.0'\n"
    assert not (store.root / "notes" / "1.0.0").exists()
    with pytest.raises(NotFoundError):
        store.upgrade(str(make_app(tmp_path / "x", name="unknown")))
