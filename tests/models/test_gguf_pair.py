"""A GGUF vision pair in the store: ``import MODEL.gguf --mmproj PROJ.gguf``, and ``pull``
bringing the repo's ``mmproj`` beside the chosen GGUF (a hub served on loopback). The
projector is the tiny one of tests/vision/tiny_mmproj.py, sized for the tiny GGUF."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from llmasos.errors import ModelFormatError
from llmasos.models.manifest import Manifest
from llmasos.models.modelfile import to_modelfile
from llmasos.models.store import ModelStore
from tests.models.test_pull import FakeHub, served
from tests.vision.tiny_mmproj import write_tiny_mmproj

MakeGGUF = Callable[..., Path]


def test_import_with_a_projector_sees_images(
    store: ModelStore, make_gguf: MakeGGUF, tmp_path: Path
) -> None:
    model = make_gguf("pair.gguf")
    projector = write_tiny_mmproj(tmp_path / "mmproj.gguf", text_hidden=8)
    plain = store.import_path(model, "plain")
    manifest = store.import_path(model, "pair", projector=projector)
    assert manifest.capabilities == ("vision",)
    assert manifest.sees_images
    assert manifest.projector is not None and manifest.projector.path == "mmproj.gguf"
    assert manifest.size == plain.size + projector.stat().st_size
    resolved = store.resolve("pair")
    assert resolved.projector_path is not None
    assert resolved.projector_path.read_bytes() == projector.read_bytes()
    assert store.resolve("plain").projector_path is None
    assert Manifest.from_json(manifest.to_json()) == manifest
    derived = store.create("pair-short", "FROM pair\nPARAMETER num_ctx 32\n", base_dir=tmp_path)
    assert derived.projector == manifest.projector and derived.sees_images
    assert store.resolve("pair-short").projector_path == resolved.projector_path
    assert "# vision projector sha256:" in to_modelfile(manifest, "pair")
    store.remove("pair")
    store.collect_garbage()
    assert store.resolve("plain").path.exists()


def test_projectors_are_checked(store: ModelStore, make_gguf: MakeGGUF, tmp_path: Path) -> None:
    model = make_gguf("pair.gguf")
    wide = write_tiny_mmproj(tmp_path / "wide.gguf", text_hidden=16)
    with pytest.raises(ModelFormatError, match="projects images to 16 dimensions"):
        store.import_path(model, "pair", projector=wide)
    with pytest.raises(ModelFormatError, match="is not a vision projector"):
        store.import_path(model, "pair", projector=make_gguf("other.gguf", seed=1))
    with pytest.raises(ModelFormatError, match=r"is a vision projector .* --mmproj"):
        store.import_path(wide, "proj")
    assert store.list() == []


def test_pull_brings_the_projector_beside_the_gguf(
    store: ModelStore, make_gguf: MakeGGUF, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_gguf("m.gguf").read_bytes()
    projector = write_tiny_mmproj(tmp_path / "p.gguf", text_hidden=8).read_bytes()
    hub = FakeHub()
    hub.repos["org/vlm-GGUF"] = {
        "vlm-Q4_K_M.gguf": model,
        "vlm-Q8_0.gguf": model,
        "mmproj-vlm-Q8_0.gguf": projector,
        "mmproj-vlm-f16.gguf": projector,
    }
    with served(hub, monkeypatch):
        manifest = store.pull("org/vlm-GGUF")
        picked = store.pull("org/vlm-GGUF:vlm-Q8_0.gguf", name="picked")
    assert manifest.files[0].path == "vlm-Q4_K_M.gguf"
    assert manifest.projector is not None
    assert manifest.projector.path == "mmproj-vlm-f16.gguf"
    assert manifest.capabilities == ("vision",)
    assert picked.projector == manifest.projector
