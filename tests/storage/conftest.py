"""Settings and an upgraded `Database` on each backend, from the root `database_url`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmasos.config import Settings
from llmasos.storage import Database, open_database


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(home=tmp_path / "home", database_url=database_url)


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    with open_database(settings) as database:
        yield database
