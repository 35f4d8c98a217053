"""`llmasos.doctor`: each check against the real installation, databases and plugin registry."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

from llmasos.config import load_settings
from llmasos.doctor import (
    Check,
    DoctorReport,
    check_backends,
    check_database,
    check_disk,
    check_memory,
    check_models,
    check_system_packages,
    diagnose,
)
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.net import free_port
from llmasos.plugins import PluginRegistry, register_builtins
from llmasos.storage import Database, open_database, upgrade_database
from llmasos.storage.migrate import MIGRATIONS_DIR

needs_models = pytest.mark.skipif(
    any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
)


@needs_models
@pytest.mark.model
def test_this_installation_passes_with_stable_check_names(tmp_path: Path) -> None:
    report = diagnose(load_settings(home=tmp_path / "home"))
    names = [check.name for check in report.checks]
    for expected in (
        "python",
        "backend.llama.cpp",
        "backend.sentence-transformers",
        "model.smollm2",
        "model.all-minilm",
        "model.whisper",
        "database",
        "system.postgresql",
        "system.chromium",
        "system.espeak-ng",
        "system.tesseract",
        "memory",
        "disk",
    ):
        assert expected in names
    assert report.ok, report.problems
    assert all(check.fix is None for check in report.checks if check.ok)
    models = [c for c in report.checks if c.group == "model"]
    assert all(c.ok and c.detail.endswith(" loads") for c in models), models
    assert [c.required for c in models] == [True, False, False]  # smollm2, all-minilm, whisper
    assert not (tmp_path / "home").exists(), "doctor must not create the home or the database"
    data = report.to_dict()
    assert data["ok"] is True
    assert set(data["checks"][0]) == {"name", "group", "ok", "required", "detail", "fix"}


def test_quick_checks_the_model_packages_without_loading(tmp_path: Path) -> None:
    checks = {c.name: c for c in check_models(load_settings(home=tmp_path), load=False)}
    for builtin in BUILTINS:
        check = checks[f"model.{builtin.key}"]
        assert check.ok is (package_path(builtin) is not None)
        assert "loads" not in check.detail


def test_serving_checks_only_what_a_first_answer_needs(tmp_path: Path) -> None:
    report = diagnose(load_settings(home=tmp_path / "home"), serving=True)
    names = [c.name for c in report.checks]
    assert [n for n in names if n.startswith(("backend.", "model."))] == [
        "backend.llama.cpp",
        "model.smollm2",
    ]
    assert report.ok and {"python", "database", "memory", "disk"} <= set(names)
    assert not (tmp_path / "home").exists()


def test_database_checks_reachable_and_migrated(tmp_path: Path, database_url: str) -> None:
    settings = load_settings(home=tmp_path / "home", database_url=database_url)
    with open_database(settings, upgrade=False) as database:
        _migrate_to(database, "0002")  # a database an older LLMasOS left behind
        behind = check_database(settings)
        assert not behind.ok and behind.required and behind.fix == "llmasos db upgrade"
        assert "0002" in behind.detail
        assert not DoctorReport((behind,)).ok
        upgrade_database(database)  # what `llmasos db upgrade` does
    migrated = check_database(settings)
    assert migrated.ok and migrated.required and "schema at" in migrated.detail


def _migrate_to(database: Database, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with database.engine.connect() as connection, connection.begin():
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_default_sqlite_not_created_yet_is_fine(tmp_path: Path) -> None:
    check = check_database(load_settings(home=tmp_path / "home"))
    assert check.ok and "not created yet" in check.detail
    assert not (tmp_path / "home").exists()


def test_unreachable_postgresql_is_required_and_says_how_to_fix(tmp_path: Path) -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/llmasos"
    check = check_database(load_settings(home=tmp_path, database_url=url))
    assert not check.ok and check.required
    assert check.fix and "database server" in check.fix
    assert "nobody" in check.detail or "127.0.0.1" in check.detail


def test_a_broken_plugin_backend_is_reported_but_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = PluginRegistry()
    register_builtins(registry)
    registry.register_backend("broken", "llmasos_no_such_plugin.backend:Backend")
    monkeypatch.setattr("llmasos.plugins._registry", registry)
    checks = {c.name: c for c in check_backends()}
    broken = checks["backend.broken"]
    assert not broken.ok and not broken.required
    assert "llmasos_no_such_plugin" in broken.detail
    assert checks["backend.llama.cpp"].ok and checks["backend.llama.cpp"].required
    assert DoctorReport(tuple(checks.values())).ok


def test_system_packages_found_on_path_or_named_with_their_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = tmp_path / "espeak-ng"
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    checks = {c.name: c for c in check_system_packages()}
    assert checks["system.espeak-ng"].ok and str(program) in checks["system.espeak-ng"].detail
    tesseract = checks["system.tesseract"]
    assert not tesseract.ok and not tesseract.required
    sudo = "" if os.geteuid() == 0 else "sudo "
    assert tesseract.fix == f"{sudo}apt-get install tesseract-ocr"


def test_memory_and_disk_are_measured(tmp_path: Path) -> None:
    memory = check_memory()
    assert memory.ok and "GiB available" in memory.detail
    disk = check_disk(tmp_path / "not" / "yet" / "there")
    assert disk.ok and str(tmp_path) in disk.detail


def test_report_fails_only_on_required_checks() -> None:
    optional = Check("system.x", "system", False, False, "x: not installed", "apt-get install x")
    required = Check("database", "database", False, True, "down", "start it")
    assert DoctorReport((optional,)).ok
    report = DoctorReport((optional, required))
    assert not report.ok
    assert report.problems == [required, optional]
