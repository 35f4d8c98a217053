"""A real ``llmasos serve`` subprocess on a free port with a temporary home, for SDK tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.serving import free_port, llmasos_serve

__all__ = ["Served", "free_port", "served"]


@dataclass
class Served:
    url: str
    home: Path


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("sdk-home")
    with llmasos_serve(home) as url:
        yield Served(url=url, home=home)
