"""A transformers vision-language model gets into the store the way any HF model does
(``llmasos import DIR``), and its manifest records that it sees: ``llmasos show`` says so,
and so does a model made from it with a Modelfile."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmasos.cli.root import state
from llmasos.models import builtin
from tests.cli.invoke import run as invoke


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(builtin, "package_path", lambda b: None)  # no built-ins: faster
    state.overrides.clear()
    state._settings = None
    state._store = None
    yield home
    state._settings = None
    state._store = None


def run(*args: str) -> str:
    code, out = invoke(*args, stream="output")
    assert code == 0, out
    return out


def test_import_of_a_vision_language_directory_records_vision(
    model_dir: Path, tmp_path: Path
) -> None:
    assert "imported 'tiny-vlm:latest'" in run("import", str(model_dir), "--name", "tiny-vlm")
    shown = run("show", "tiny-vlm")
    assert "capabilities        vision" in shown
    assert "architecture        idefics3" in shown
    manifest = json.loads(run("show", "tiny-vlm", "--json"))
    assert manifest["capabilities"] == ["vision"] and manifest["kind"] == "generate"
    assert {"processor_config.json", "model.safetensors"} <= {f["path"] for f in manifest["files"]}
    assert "{{ '<image>' }}" in manifest["chat_template"]  # the processor's template
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM tiny-vlm\nSYSTEM Describe images briefly.\n", encoding="utf-8")
    run("create", "describer", "-f", str(modelfile))
    assert "capabilities        vision" in run("show", "describer")


def test_without_an_image_processor_it_is_a_text_model(model_dir: Path, tmp_path: Path) -> None:
    text_only = tmp_path / "text-only"
    text_only.mkdir()
    for path in model_dir.iterdir():
        if path.name != "processor_config.json":
            (text_only / path.name).write_bytes(path.read_bytes())
    run("import", str(text_only))
    assert "capabilities        text only" in run("show", "text-only")


def test_pull_of_a_vision_language_repo_keeps_its_processor(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``llmasos pull ORG/REPO`` from a hub served on loopback (SmolVLM's repo layout: the
    model files, a README and an example picture, which are left behind), then loaded from
    the store by the transformers backend with its processor."""
    from llmasos.backends.interface import LoadSpec
    from llmasos.backends.transformers.backend import TransformersBackend
    from tests.models.test_pull import FakeHub, served
    from tests.vision.tiny_vlm import png

    files = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    hub = FakeHub(repos={"org/Tiny-VLM": {**files, "README.md": b"hi", "cat.png": png((1, 2, 3))}})
    with served(hub, monkeypatch):
        assert "pulled 'org/tiny-vlm:latest'" in run("pull", "org/Tiny-VLM")
    manifest = state.store.manifest("org/tiny-vlm")
    assert manifest.sees_images and manifest.source == "hf:org/Tiny-VLM"
    assert {f.path for f in manifest.files} == set(files)
    spec = LoadSpec(
        path=state.store.resolve("org/tiny-vlm").path,
        format=manifest.format,
        context_length=64,
        options={"device": "cpu", "dtype": "float32"},
    )
    backend = TransformersBackend.load(spec)
    try:
        assert backend.accepts_images
    finally:
        backend.close()
