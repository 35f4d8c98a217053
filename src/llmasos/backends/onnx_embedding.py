"""ONNX Runtime for an embedding model's short calls: a search query, a memory, a note.

A query's embedding is on the path of every search, and sentence-transformers spends most of
a short call outside the arithmetic: on this project's 2-core machine all-MiniLM-L6-v2 took
about 11 ms for one query through torch, against under 3 ms through ONNX Runtime, with the
same vectors (cosine 1.0 to seven digits). On long batches (ingestion) the two are about
equal, and torch keeps them.

`OnnxEncoder.build` exports the model's transformer once with torch's own exporter and keeps
the file in a cache shared by every home of this user (`onnx_cache_dir`), named by the
weights' identity and torch's version, so a new home or a second server does not export
again. It pools as the model says (mean or CLS, the only ones it accepts) and normalizes, as
the backend does every vector. Before it is used, a probe is embedded both ways; a graph
whose vectors differ from torch's is removed and not used. Every reason it cannot be used
(ONNX Runtime or the ``onnx`` package missing, a pooling it does not do, an export that
fails) is an `OnnxUnavailable` with that reason, and the backend stays on torch.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

EXPORT_VERSION = 1
"""Part of the file name: a change to how the graph is exported makes a new file."""
OPSET = 17
SUPPORTED_POOLING = ("mean", "cls")
PROBE = ("ONNX Runtime must give the vectors torch gives.", "short")
MAX_DIFFERENCE = 1e-4
"""Largest difference allowed in any component of the probe's normalized vectors."""


class OnnxUnavailable(Exception):
    """Why ONNX Runtime cannot run this model; the backend stays on torch."""


def onnx_cache_dir() -> Path:
    """``$LLMASOS_ONNX_CACHE``, else ``$XDG_CACHE_HOME/llmasos/onnx`` (``~/.cache/...``)."""
    configured = os.environ.get("LLMASOS_ONNX_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "llmasos" / "onnx"


def weights_key(path: Path, digest: str = "") -> str:
    """The model's identity: its store digest, else its files' names, sizes and times."""
    if digest:
        return digest.removeprefix("sha256:")[:16]
    stamp = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        info = file.stat()
        stamp.update(f"{file.relative_to(path)}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    return stamp.hexdigest()[:16]


class _Outputs(torch.nn.Module):
    """The transformer called with named inputs, returning its token states only."""

    def __init__(self, model: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        state: torch.Tensor = self.model(**dict(zip(self.names, inputs, strict=True)))[0]
        return state


class OnnxEncoder:
    """One ONNX Runtime session over an exported transformer, with the model's pooling."""

    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        names: Sequence[str],
        pooling: str,
        max_length: int,
        path: Path,
    ) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._names = tuple(names)
        self._pooling = pooling
        self._max_length = max_length
        self.path = path

    @classmethod
    def build(cls, model: Any, *, key: str, threads: int, cache: Path | None = None) -> OnnxEncoder:
        """An encoder for this sentence-transformers model, exported on first use."""
        try:
            import onnxruntime
        except ImportError:
            raise OnnxUnavailable("onnxruntime is not installed") from None
        modules = [type(m).__name__ for m in model]
        if modules[:2] != ["Transformer", "Pooling"] or set(modules[2:]) - {"Normalize"}:
            raise OnnxUnavailable(f"modules {modules}: only Transformer, Pooling[, Normalize]")
        pooling = str(model[1].get_config_dict().get("pooling_mode", ""))
        if pooling not in SUPPORTED_POOLING:
            raise OnnxUnavailable(f"pooling {pooling!r} is not one of {SUPPORTED_POOLING}")
        tokenizer = model.tokenizer
        names = [n for n in tokenizer.model_input_names if n != "position_ids"]
        directory = cache or onnx_cache_dir()
        path = directory / f"{key}-torch{torch.__version__}-v{EXPORT_VERSION}.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        # no busy-waiting after a call: the cores are shared with the language models
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        session = None
        for attempt in (1, 2):  # a truncated or foreign cached file is exported again, once
            if not path.is_file():
                _export(model[0].auto_model, tokenizer, names, path)
            try:
                session = onnxruntime.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
                break
            except Exception as error:
                path.unlink(missing_ok=True)
                if attempt == 2:
                    raise OnnxUnavailable(f"ONNX Runtime cannot load the export: {error}") from None
        encoder = cls(
            session,
            tokenizer,
            names,
            pooling,
            int(model.max_seq_length or tokenizer.model_max_length),
            path,
        )
        with torch.inference_mode():
            expected = model.encode(list(PROBE), normalize_embeddings=True, show_progress_bar=False)
        difference = float(np.abs(encoder.encode(PROBE) - expected).max())
        if not difference <= MAX_DIFFERENCE:
            path.unlink(missing_ok=True)
            raise OnnxUnavailable(f"the exported graph differs from torch by {difference:.2e}")
        return encoder

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` (float32, one row each), pooled as the model says and
        L2-normalized (as the backend's every vector is)."""
        batch = self._tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self._max_length,
            return_tensors="np",
        )
        feeds = {name: np.asarray(batch[name], dtype=np.int64) for name in self._names}
        states: np.ndarray = self._session.run(None, feeds)[0]
        if self._pooling == "cls":
            pooled = states[:, 0]
        else:
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (states * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        result: np.ndarray = (pooled / norms).astype(np.float32)
        return result


def _export(transformer: torch.nn.Module, tokenizer: Any, names: Sequence[str], path: Path) -> None:
    """Export with torch's TorchScript exporter (it needs the ``onnx`` package) to a
    temporary file beside ``path``, renamed into place when complete."""
    try:
        import onnx  # noqa: F401  (the exporter writes through it)
    except ImportError:
        raise OnnxUnavailable("the onnx package (needed to export once) is not installed") from None
    sample = tokenizer(["an example input", "two"], padding=True, return_tensors="pt")
    inputs = tuple(sample[name] for name in names)
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    axes["states"] = {0: "batch", 1: "tokens"}
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Outputs(transformer, names).eval(),
                inputs,
                temporary,
                input_names=list(names),
                output_names=["states"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        os.replace(temporary, path)
    except Exception as error:
        raise OnnxUnavailable(f"exporting to ONNX failed: {error}") from None
    finally:
        Path(temporary).unlink(missing_ok=True)
