"""Settings and an upgraded `Database` on each backend (the storage fixtures)."""

from tests.storage.conftest import database, settings

__all__ = ["database", "settings"]
