"""Fixtures of the app tests: the SDK tests' real ``llmasos serve``, and `AppHome`, a home
to install apps into and run them as real processes through `AppSupervisor`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmasos.apps.store import AppStore
from llmasos.apps.supervisor import AppSupervisor
from llmasos.config import load_settings
from llmasos.storage import open_database
from tests.sdk.conftest import Served, free_port, served

__all__ = ["AppHome", "Served", "app_home", "free_port", "served"]


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
        supervisor = AppSupervisor(store, database, base_url)
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
