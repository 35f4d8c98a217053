"""Built-in models from Python packages: registered once, aliases, no re-hashing."""

from __future__ import annotations

import pytest

from llmasos.config import Settings
from llmasos.models import builtin
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.known import SMOLLM2_DEFAULT_TEMPERATURE
from llmasos.models.store import ModelStore
from llmasos.models.templates import CHATML_TEMPLATE

pytestmark = pytest.mark.skipif(
    any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
)


def test_builtins_registered_with_aliases(settings: Settings) -> None:
    store = ModelStore.open(settings)
    names = dict(store.list())
    assert set(names) == {
        "smollm2:135m",
        "smollm2:latest",
        "all-minilm:l6-v2",
        "all-minilm:latest",
        "whisper:tiny.en",
    }
    assert names["smollm2:135m"].digest == names["smollm2:latest"].digest
    smol = store.manifest("smollm2")
    assert smol.chat_template == CHATML_TEMPLATE
    assert smol.system is None
    assert smol.parameters["temperature"] == SMOLLM2_DEFAULT_TEMPERATURE
    assert (smol.format, smol.kind, smol.quantization) == ("gguf", "generate", "Q4_1")
    embed = store.resolve("all-minilm")
    assert (embed.manifest.format, embed.manifest.kind) == ("sentence-transformers", "embed")
    assert (embed.path / "modules.json").is_file()
    assert (embed.path / "1_Pooling" / "config.json").is_file()
    whisper = store.resolve("whisper:tiny.en")
    assert (whisper.manifest.format, whisper.manifest.kind) == ("ctranslate2", "transcribe")
    assert (whisper.path / "model.bin").is_file()  # kept although .bin weights are skipped


def test_second_open_does_not_rehash_and_removal_sticks(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ModelStore.open(settings).list()

    def no_hashing(*args: object, **kwargs: object) -> str:
        raise AssertionError("built-ins were hashed again")

    monkeypatch.setattr(builtin, "sha256_file", no_hashing)
    monkeypatch.setattr(builtin, "_digest_cache", {})
    store = ModelStore.open(settings)
    store.remove("all-minilm:latest")
    store.remove("all-minilm:l6-v2")
    again = ModelStore.open(settings)
    assert [n for n, _ in again.list()] == ["smollm2:135m", "smollm2:latest", "whisper:tiny.en"]


def test_missing_package_means_absent(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builtin, "package_path", lambda b: None)
    store = ModelStore.open(settings)
    assert store.list() == []
    with pytest.raises(Exception, match="not found"):
        store.resolve("smollm2")
