"""The storage tests' fixtures: settings and an upgraded `Database` on each backend."""

from tests.storage.conftest import database, settings

__all__ = ["database", "settings"]
