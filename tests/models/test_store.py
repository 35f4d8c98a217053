"""ModelStore: import, copy, remove, versions, resolve, and the store-unchanged guarantee."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from llmasos.errors import (
    InvalidRequestError,
    ModelfileError,
    ModelFormatError,
    ModelNotFoundError,
    StorageError,
)
from llmasos.models import blobs
from llmasos.models.store import ModelStore
from tests.models.conftest import snapshot

MakeGGUF = Callable[..., Path]


def test_import_gguf_reads_metadata(store: ModelStore, make_gguf: MakeGGUF) -> None:
    manifest = store.import_path(make_gguf("Tiny-Model.gguf"))
    assert manifest.name == "tiny-model:latest"
    assert (manifest.format, manifest.kind, manifest.family) == ("gguf", "generate", "llama")
    assert manifest.context_length == 128
    assert manifest.embedding_length == 8
    assert manifest.parameter_count == 32
    assert manifest.quantization == "ALL_F32"
    assert manifest.chat_template is not None
    assert manifest.digest.startswith("sha256:") and len(manifest.short_id) == 12
    blob = store.root / "blobs" / manifest.files[0].digest.replace(":", "-")
    assert blob.is_file()
    resolved = store.resolve("tiny-model")
    assert resolved.path == blob
    assert store.list() == [("tiny-model:latest", manifest)]


def test_import_real_gguf(store: ModelStore, real_gguf: Path) -> None:
    manifest = store.import_path(real_gguf, "smol:q4")
    assert manifest.quantization == "Q4_1"
    assert manifest.context_length == 8192
    assert manifest.parameter_count == 134515008
    assert store.resolve("smol:q4").path.stat().st_size == real_gguf.stat().st_size


def test_import_hf_dir_links_files(store: ModelStore, make_hf_dir: Callable[..., Path]) -> None:
    manifest = store.import_path(make_hf_dir(), "embed")
    assert (manifest.format, manifest.kind) == ("sentence-transformers", "embed")
    assert manifest.parameter_count == 8 and manifest.embedding_length == 8
    resolved = store.resolve("embed")
    assert resolved.path.is_dir()
    assert (resolved.path / "1_Pooling" / "config.json").read_text().startswith("{")
    assert (resolved.path / "model.safetensors").stat().st_size > 0


def test_copy_and_remove_collect_garbage(store: ModelStore, make_gguf: MakeGGUF) -> None:
    original = store.import_path(make_gguf(), "a")
    copied = store.copy("a", "team/b:v1")
    assert copied.name == "team/b:v1" and copied.files == original.files
    assert [n for n, _ in store.list()] == ["a:latest", "team/b:v1"]
    store.remove("a")
    assert store.resolve("team/b:v1").path.is_file()  # the blob is still referenced
    store.remove("team/b:v1")
    assert store.list() == []
    assert list((store.root / "blobs").iterdir()) == []


def test_versions_and_digest_addressing(store: ModelStore, make_gguf: MakeGGUF) -> None:
    first = store.import_path(make_gguf(seed=1), "m")
    assert store.import_path(make_gguf(seed=1), "m") == first  # same content: no new version
    second = store.import_path(make_gguf(seed=2), "m")
    assert [v.digest for v in store.versions("m")] == [second.digest, first.digest]
    assert store.manifest(f"m@{first.short_id[:8]}") == first
    assert store.resolve(f"m@{first.short_id}").path.is_file()
    with pytest.raises(ModelNotFoundError, match="no version"):
        store.manifest("m@ffffffff0000")
    store.remove(f"m@{first.short_id}")
    assert store.versions("m") == [second]


def test_ambiguous_digest_prefix(store: ModelStore, make_gguf: MakeGGUF) -> None:
    made = [store.import_path(make_gguf(seed=s), "m") for s in range(1, 30)]
    first_chars = [m.short_id[0] for m in made]
    shared = next(c for c in first_chars if first_chars.count(c) > 1)
    with pytest.raises(InvalidRequestError, match="ambiguous"):
        store.manifest(f"m@{shared}")


def test_unknown_name_suggests(store: ModelStore, make_gguf: MakeGGUF) -> None:
    store.import_path(make_gguf(), "smollm2")
    with pytest.raises(ModelNotFoundError, match="did you mean 'smollm2:latest'"):
        store.resolve("smolm2")


def test_create_with_system_and_parameters(store: ModelStore, make_gguf: MakeGGUF) -> None:
    store.import_path(make_gguf(), "base")
    manifest = store.create(
        "pirate",
        'FROM base\nSYSTEM """You are a pirate."""\nPARAMETER temperature 0.1\n',
        base_dir=Path("."),
    )
    assert manifest.system == "You are a pirate."
    assert manifest.parameters == {"temperature": 0.1}
    assert manifest.source == "from:base:latest"
    assert store.manifest("pirate").system == "You are a pirate."
    assert manifest.files == store.manifest("base").files


def test_create_from_relative_path_with_adapter(
    store: ModelStore, make_gguf: MakeGGUF, tmp_path: Path
) -> None:
    model = make_gguf("model.gguf")
    make_gguf("lora.gguf", seed=7)
    manifest = store.create(
        "tuned", "FROM ./model.gguf\nADAPTER lora.gguf\n", base_dir=model.parent
    )
    assert manifest.adapter is not None and manifest.adapter.path == "adapter.gguf"
    resolved = store.resolve("tuned")
    assert resolved.adapter_path is not None and resolved.adapter_path.is_file()


def test_create_errors(store: ModelStore, make_gguf: MakeGGUF) -> None:
    store.import_path(make_gguf(), "base")
    before = snapshot(store.root)
    with pytest.raises(ModelNotFoundError, match="FROM bsae"):
        store.create("x", "FROM bsae\n", base_dir=Path("."))
    with pytest.raises(ModelfileError, match="no such file"):
        store.create("x", "FROM ./missing.gguf\n", base_dir=Path("."))
    with pytest.raises(ModelfileError, match="line 2"):
        store.create("x", "FROM base\nBOGUS 1\n", base_dir=Path("."))
    assert snapshot(store.root) == before


@pytest.fixture
def populated(store: ModelStore, make_gguf: MakeGGUF) -> ModelStore:
    store.import_path(make_gguf(), "existing")
    return store


def test_bad_inputs_leave_store_unchanged(
    populated: ModelStore, real_gguf: Path, tmp_path: Path, make_gguf: MakeGGUF
) -> None:
    before = snapshot(populated.root)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(real_gguf.read_bytes()[: 1 << 20])
    random_bytes = tmp_path / "random.gguf"
    random_bytes.write_bytes(os.urandom(4096))
    fake_magic = tmp_path / "magic.gguf"
    fake_magic.write_bytes(b"GGUF" + os.urandom(4096))
    not_a_model = tmp_path / "docs"
    not_a_model.mkdir()
    (not_a_model / "readme.txt").write_text("hello")
    for bad in (truncated, random_bytes, fake_magic, not_a_model):
        with pytest.raises(ModelFormatError):
            populated.import_path(bad, "bad")
        assert snapshot(populated.root) == before, bad
    with pytest.raises(InvalidRequestError, match="invalid model name"):
        populated.import_path(make_gguf(), "Bad Name!")
    with pytest.raises(ModelNotFoundError):
        populated.import_path(tmp_path / "nope.gguf")
    assert snapshot(populated.root) == before


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_disk_errors_become_storage_error(
    populated: ModelStore, make_gguf: MakeGGUF, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    before = snapshot(populated.root)

    def refuse(handle: object, data: bytes) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(blobs, "write_chunk", refuse)
    with pytest.raises(StorageError, match="cannot"):
        populated.import_path(make_gguf(seed=3), "new")
    with pytest.raises(StorageError):
        populated.copy("existing", "copy")
    assert snapshot(populated.root) == before


def test_unwritable_home(settings: object, make_gguf: MakeGGUF, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = ModelStore(blocker / "models", builtins=False)
    with pytest.raises(StorageError, match="cannot"):
        store.import_path(make_gguf(), "x")
    assert store.list() == []
