"""`llmasos-app.toml` parsing and checking, and the ``app new`` templates."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llmasos.apps.manifest import ManifestError, load_manifest, parse_version
from llmasos.apps.runner import load_application
from llmasos.apps.scaffold import TEMPLATES, scaffold
from llmasos.errors import InvalidRequestError
from llmasos.sdk.application import Application

GOOD = """
[app]
name = "summarizer"
version = "1.2.0"
description = "Summarizes."
entry = "app:app"

[permissions]
calls = ["services.summarize", "embed", "models.read"]
models = ["smollm2", "all-minilm:*"]
network = true
storage_mb = 5
"""


def write_app(directory: Path, manifest: str, code: str = "app = None\n") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "llmasos-app.toml").write_text(manifest)
    (directory / "app.py").write_text(code)
    return directory


def test_a_good_manifest_and_its_scopes(tmp_path: Path) -> None:
    manifest = load_manifest(write_app(tmp_path, GOOD))
    assert (manifest.name, manifest.version, manifest.entry) == ("summarizer", "1.2.0", "app:app")
    assert manifest.scopes == ["services:summarize", "embed", "models:read"]
    assert manifest.permissions.models == ("smollm2", "all-minilm:*")
    assert manifest.permissions.network is True and manifest.permissions.storage_mb == 5
    assert "call services.summarize" in manifest.permissions.describe()


def test_the_files_permission_becomes_directory_scopes(tmp_path: Path) -> None:
    text = GOOD.replace("storage_mb = 5", 'storage_mb = 5\nfiles = ["notes/", "/inbox"]')
    manifest = load_manifest(write_app(tmp_path, text))
    assert manifest.permissions.files == ("/notes", "/inbox")
    assert manifest.scopes[-2:] == ["files:/notes", "files:/inbox"]
    assert "files: /notes, /inbox" in manifest.permissions.describe()
    assert manifest.to_dict()["permissions"]["files"] == ["/notes", "/inbox"]


def test_versions_compare_numerically() -> None:
    assert parse_version("1.10") > parse_version("1.9.9")
    assert parse_version("2") == (2, 0, 0)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (("services.summarize", "sudo"), "permissions.calls[2]", "unknown permission 'sudo'"),
        (('version = "1.2.0"', 'version = "1.x"'), "app.version", "not a version"),
        (('entry = "app:app"', ""), "app.entry", "missing"),
        (('entry = "app:app"', 'entry = "app"'), "app.entry", "module:attribute"),
        (('name = "summarizer"', 'name = "Bad Name"'), "app.name", "not an app name"),
        (("network = true", "network = 1"), "permissions.network", "true or false"),
        (("storage_mb = 5", "storage_mb = -1"), "permissions.storage_mb", "whole number"),
        (("storage_mb = 5", "storage_mb = 5\ncolour = 1"), "permissions.colour", "unknown field"),
        (("storage_mb = 5", 'storage_mb = 5\nfiles = ["../up"]'), "permissions.files[0]", "out"),
        (("storage_mb = 5", 'storage_mb = 5\nfiles = ["/"]'), "permissions.files[0]", "whole"),
        (("storage_mb = 5", 'storage_mb = 5\nfiles = "/a"'), "permissions.files", "a list"),
    ],
)
def test_bad_manifests_name_the_field(
    tmp_path: Path, change: tuple[str, str], field: str, reason: str
) -> None:
    old, new = change
    text = (
        GOOD.replace('"embed"', f'"embed", "{new}"')
        if old == "services.summarize"
        else GOOD.replace(old, new)
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(write_app(tmp_path, text))
    assert caught.value.param == field
    assert field in caught.value.message and reason in caught.value.message


def test_missing_file_bad_toml_and_missing_module(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"has no llmasos-app\.toml"):
        load_manifest(tmp_path)
    write_app(tmp_path, "[app\n")
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(tmp_path)
    write_app(tmp_path, GOOD.replace("app:app", "server.main:app"))
    with pytest.raises(ManifestError, match=r"module 'server\.main' is not in"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("template", TEMPLATES)
def test_templates_scaffold_working_apps(
    tmp_path: Path, template: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = scaffold("my-app", template, tmp_path / "my-app")
    assert manifest.name == "my-app" and manifest.scopes
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "app", raising=False)
    application = load_application(tmp_path / "my-app")
    assert isinstance(application, Application) and application.routes
    sys.modules.pop("app", None)


def test_scaffold_refuses_bad_names_templates_and_full_directories(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="name"):
        scaffold("My App", "chat", tmp_path / "x")
    with pytest.raises(InvalidRequestError, match="unknown template"):
        scaffold("x", "wiki", tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("")
    with pytest.raises(InvalidRequestError, match="not empty"):
        scaffold("full", "chat", tmp_path / "full")
