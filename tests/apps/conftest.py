"""The SDK tests' real ``llmasos serve`` fixture, reused by the app tests."""

from tests.sdk.conftest import Served, free_port, served

__all__ = ["Served", "free_port", "served"]
