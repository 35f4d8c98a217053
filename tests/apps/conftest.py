"""Fixtures of the app tests: the SDK tests' real ``llmasos serve``, and `AppHome`, a home
to install apps into and run them as real processes through `AppSupervisor`.

Apps run in the OS sandbox in strict mode where this machine provides every layer; on a
machine that does not (no bubblewrap), they run with weaker confinement, so that the tests
of everything else still run there (the escape tests are skipped and say why)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmasos.apps.confinement import MODE_VARIABLE, AppConfinement
from llmasos.apps.store import AppStore
from llmasos.apps.supervisor import AppSupervisor
from llmasos.config import load_settings
from llmasos.sandbox import ConfinementMode, SandboxSpec, plan
from llmasos.storage import open_database
from tests.sdk.conftest import Served, free_port, served

__all__ = ["AppHome", "Served", "app_home", "free_port", "served"]


def confinement_for_tests() -> AppConfinement:
    """Strict where the machine confines fully, else weaker."""
    complete = plan(SandboxSpec(name="probe"), ConfinementMode.ALLOW_WEAKER).complete
    return AppConfinement(ConfinementMode.STRICT if complete else ConfinementMode.ALLOW_WEAKER)


@pytest.fixture(autouse=True)
def _confinement_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mode of `confinement_for_tests` for supervisors built from the environment or the
    settings (the CLI's)."""
    monkeypatch.setenv(MODE_VARIABLE, str(confinement_for_tests().mode))


@dataclass
class AppHome:
    home: Path
    store: AppStore
    supervisor: AppSupervisor

    def install(self, name: str, code: str, permissions: str = "") -> Path:
        """Write an app ``name`` (entry ``app:app``) with ``code`` and the
        ``[permissions]`` lines ``permissions``, and install it."""
        source = self.home.parent / "sources" / name
        source.mkdir(parents=True)
        (source / "llmasos-app.toml").write_text(
            f'[app]\nname = "{name}"\nversion = "1.0.0"\nentry = "app:app"\n\n'
            f"[permissions]\n{permissions}\n"
        )
        (source / "app.py").write_text(code)
        return self.store.install(str(source)).directory


@contextmanager
def app_home_at(home: Path, base_url: str) -> Iterator[AppHome]:
    """An `AppHome`; the apps installed through it are stopped and removed at the end."""
    with open_database(load_settings(home=home)) as database:
        store = AppStore(home)
        supervisor = AppSupervisor(store, database, base_url, confinement_for_tests())
        installed_before = {app.name for app in store.list()}
        try:
            yield AppHome(home=home, store=store, supervisor=supervisor)
        finally:
            for installed in store.list():
                if installed.name not in installed_before:
                    supervisor.stop(installed.name)
                    store.remove(installed.name)


@pytest.fixture
def app_home(tmp_path: Path) -> Iterator[AppHome]:
    """A fresh home with no server: for apps that make no kernel calls."""
    with app_home_at(tmp_path / "home", "http://127.0.0.1:9") as home:
        yield home
