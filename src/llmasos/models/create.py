"""Build a new model version from a Modelfile (`ModelStore.create`, `llmasos create`).

FROM is a store name, or a path to a .gguf file or model directory relative to the
Modelfile's directory (a path that exists wins over a name). The new manifest inherits the
base's files and facts and overrides template, system prompt, parameters (merged), messages,
adapter and license. Everything is validated before the store is touched.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from llmasos.errors import ModelfileError, ModelFormatError, ModelNotFoundError
from llmasos.models.blobs import Transaction
from llmasos.models.gguf_info import is_gguf, read_gguf
from llmasos.models.manifest import BlobRef, Manifest
from llmasos.models.modelfile import Modelfile, parse_modelfile
from llmasos.models.names import parse_name
from llmasos.models.repository import (
    ModelRepository,
    manifest_from_facts,
    model_dir_files,
    now_iso,
    seal,
)


def _as_path(reference: str, base_dir: Path) -> Path | None:
    """The path FROM/ADAPTER names, or None if it is not a path that exists."""
    candidate = Path(reference).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    return candidate if candidate.exists() else None


def _looks_like_path(reference: str) -> bool:
    return reference.startswith((".", "/", "~")) or reference.lower().endswith(".gguf")


def create_model(store: ModelRepository, name: str, text: str, *, base_dir: Path) -> Manifest:
    """Parse ``text``, resolve FROM/ADAPTER, and commit the result as ``name``."""
    target = parse_name(name)
    spec = parse_modelfile(text)
    base_path = _as_path(spec.base, base_dir)
    base: Manifest | None = None
    if base_path is None:
        if _looks_like_path(spec.base):
            raise ModelfileError(f"FROM {spec.base}: no such file or directory (in {base_dir})")
        try:
            base = store.manifest(spec.base)
        except ModelNotFoundError as error:
            raise ModelNotFoundError(f"FROM {spec.base}: {error.message}") from None
    adapter_path: Path | None = None
    if spec.adapter is not None:
        adapter_path = _as_path(spec.adapter, base_dir)
        if adapter_path is None:
            raise ModelfileError(f"ADAPTER {spec.adapter}: no such file or directory")
    with store.transaction() as tx:
        if base is None:
            assert base_path is not None
            files, facts = store.add_model_files(tx, base_path)
            base = manifest_from_facts(str(target), facts, files, str(base_path.resolve()))
            source = str(base_path.resolve())
        else:
            source = f"from:{base.name}"
        manifest = _apply(base, spec, str(target), source)
        if adapter_path is not None:
            manifest = _with_adapter(store, tx, manifest, adapter_path)
        return store.commit(tx, target, seal(manifest))


def _apply(base: Manifest, spec: Modelfile, name: str, source: str) -> Manifest:
    parameters: dict[str, Any] = {**base.parameters, **spec.parameters}
    changes: dict[str, Any] = {
        "name": name,
        "parameters": parameters,
        "source": source,
        "created_at": now_iso(),
    }
    if spec.template is not None:
        changes["chat_template"] = spec.template
    if spec.system is not None:
        changes["system"] = spec.system
    if spec.messages:
        changes["messages"] = tuple(spec.messages)
    if spec.license is not None:
        changes["license"] = spec.license
    return replace(base, **changes)


def _with_adapter(
    store: ModelRepository, tx: Transaction, manifest: Manifest, path: Path
) -> Manifest:
    """Store a LoRA adapter: a GGUF file for GGUF models, a PEFT directory for HF models."""
    if path.is_file():
        if manifest.format != "gguf":
            raise ModelfileError(
                f"ADAPTER {path.name}: a GGUF adapter needs a GGUF base model; "
                f"{manifest.name} is {manifest.format} (use a PEFT adapter directory)"
            )
        if not is_gguf(path):
            raise ModelFormatError(f"ADAPTER {path.name} is not a GGUF LoRA adapter")
        read_gguf(path)
        ref, new = store.blobs.add_file(path)
        tx.added(ref.digest, new)
        return replace(manifest, adapter=replace(ref, path="adapter.gguf"))
    if manifest.format == "gguf":
        raise ModelfileError(
            f"ADAPTER {path.name}: a GGUF model needs a GGUF LoRA adapter file, not a directory"
        )
    entries = model_dir_files(path)
    if "adapter_config.json" not in entries or not any(p.endswith(".safetensors") for p in entries):
        raise ModelFormatError(
            f"ADAPTER {path.name} is not a PEFT adapter (needs adapter_config.json and "
            ".safetensors weights)"
        )
    refs: list[BlobRef] = []
    config: BlobRef | None = None
    for relative, source in entries.items():
        ref, new = store.blobs.add_file(source)
        tx.added(ref.digest, new)
        ref = replace(ref, path=f"adapter/{relative}")
        if relative == "adapter_config.json":
            config = ref
        else:
            refs.append(ref)
    assert config is not None
    return replace(manifest, files=(*manifest.files, *refs), adapter=config)
