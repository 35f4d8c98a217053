"""The tiny vision-language model (`tiny_vlm`), built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vision.tiny_vlm import build_tiny_vlm


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm") / "model")
