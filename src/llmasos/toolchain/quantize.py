"""Derive a GGUF in another weight format with llama.cpp's own quantizer.

`quantize_gguf` calls ``llama_model_quantize`` of the llama.cpp library that serves the
model (the C function the ``llama-quantize`` tool wraps), with ``allow_requantize`` so an
already quantized source works: llama.cpp dequantizes each tensor to f32 and quantizes it
again. From a 4-bit source that compounds two roundings; `llmasos.toolchain.tune` measures
what it costs (perplexity) before serving the result. `FORMATS` lists the formats offered
and the llama.cpp file type of each. `quantize_model` is ``llmasos quantize``: the result
stored under a new name (with a warning when the source is already quantized) and its size
and perplexity on the shipped text next to the source's.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmasos.errors import BackendError, InvalidRequestError
from llmasos.models import ModelStoreInterface

logger = logging.getLogger(__name__)

FORMATS: dict[str, str] = {
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "BF16": "LLAMA_FTYPE_MOSTLY_BF16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q4_K_S": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "IQ4_NL": "LLAMA_FTYPE_MOSTLY_IQ4_NL",
}
"""Format name (as ``llama-quantize`` and GGUF file names spell it) -> llama.cpp file type."""

TOOL = "llama.cpp llama_model_quantize"


def format_name(name: str) -> str:
    """``q4_0`` -> ``Q4_0``; `InvalidRequestError` listing the formats for an unknown one."""
    upper = name.strip().upper()
    if upper not in FORMATS:
        raise InvalidRequestError(
            f"unknown weight format {name!r} (known: {', '.join(FORMATS)})", param="format"
        )
    return upper


def quantize_gguf(
    source: Path,
    destination: Path,
    weight_format: str,
    *,
    threads: int = 0,
    imatrix: dict[str, Any] | None = None,
) -> None:
    """Write ``source`` in ``weight_format`` to ``destination`` (`BackendError` on failure);
    ``imatrix``: per tensor, the mean squared activation of each column
    (`llmasos.toolchain.imatrix.quantizer_entries`)."""
    import llama_cpp

    from llmasos.backends.llamacpp.backend import configure_native_logging
    from llmasos.toolchain.imatrix import quantize_params_imatrix

    configure_native_logging()
    ftype = getattr(llama_cpp, FORMATS[format_name(weight_format)])
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads or os.cpu_count() or 1
    params.ftype = ftype
    params.allow_requantize = True
    keep: list[object] = []
    if imatrix:
        array, keep = quantize_params_imatrix(imatrix)
        params.imatrix = ctypes.cast(array, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    status = llama_cpp.llama_model_quantize(
        str(source).encode(), str(destination).encode(), ctypes.byref(params)
    )
    del keep
    if status != 0 or not destination.is_file():
        destination.unlink(missing_ok=True)
        raise BackendError(
            f"llama.cpp could not convert {source.name} to {weight_format} (status {status})"
        )


def llama_perplexity(path: Path, threads: int) -> float:
    """Token-level perplexity of a GGUF on the shipped public-domain text, in llama.cpp."""
    from llmasos.backends.interface import LoadSpec
    from llmasos.backends.llamacpp.backend import LlamaCppBackend
    from llmasos.toolchain.perplexity import perplexity, public_domain_text

    backend = LlamaCppBackend.load(
        LoadSpec(path=path, format="gguf", context_length=1024, max_sequences=1, threads=threads)
    )
    try:
        return perplexity(backend, public_domain_text(), window=1024).value
    finally:
        backend.close()


def quantize_model(
    store: ModelStoreInterface,
    name: str,
    weight_format: str,
    *,
    new_name: str,
    work_dir: Path,
    threads: int = 0,
    measure: bool = True,
    imatrix_texts: Sequence[str] = (),
    imatrix_dataset: str = "",
    imatrix_file: Path | None = None,
) -> dict[str, Any]:
    """``name`` in ``weight_format``, stored as ``new_name``; sizes and perplexities.

    With ``imatrix_texts`` (calibration text), an importance matrix is computed by llama.cpp's
    forward pass (`llmasos.toolchain.imatrix`) on the float source — an already quantized
    source is de-quantized to F16 first, and both the matrix and the result come from that
    F16 — and handed to the quantizer; ``imatrix_file`` keeps it in llama-imatrix's format.
    """
    weight_format = format_name(weight_format)
    source = store.manifest(name)
    if source.format != "gguf" or source.kind != "generate":
        raise InvalidRequestError(
            f"{source.name} is not a GGUF generation model; llama.cpp's quantizer reads GGUFs"
        )
    source_format = (source.quantization or "?").upper()
    warning = ""
    if source_format not in ("F32", "F16", "BF16"):
        warning = (
            f"{source.name} is already {source_format}: llama.cpp de-quantizes it first, so "
            f"the {weight_format} result cannot be better than the {source_format} source"
        )
        logger.warning(warning)
    resolved = store.resolve(name)
    target = work_dir / f"{weight_format}.gguf"
    float_copy = work_dir / "F16.gguf"
    imatrix_report: dict[str, Any] = {}
    try:
        origin = resolved.path
        entries = None
        if imatrix_texts:
            from llmasos.toolchain.imatrix import (
                compute_imatrix,
                quantizer_entries,
                write_imatrix_gguf,
            )

            if source_format not in ("F32", "F16", "BF16"):
                quantize_gguf(origin, float_copy, "F16", threads=threads)
                origin = float_copy
            matrix = compute_imatrix(
                origin, imatrix_texts, threads=threads, dataset=imatrix_dataset
            )
            entries = quantizer_entries(matrix)
            imatrix_report = {
                "dataset": imatrix_dataset,
                "chunks": matrix.chunks,
                "tokens": matrix.tokens,
                "tensors": len(entries),
            }
            if imatrix_file is not None:
                imatrix_file.parent.mkdir(parents=True, exist_ok=True)
                write_imatrix_gguf(matrix, imatrix_file)
                imatrix_report["file"] = str(imatrix_file)
        quantize_gguf(origin, target, weight_format, threads=threads, imatrix=entries)
        import llama_cpp

        how = f"{weight_format}:imatrix={imatrix_dataset}" if entries else weight_format
        made = store.add_derived(
            new_name,
            [target],
            like=f"{source.name}@{source.digest.removeprefix('sha256:')}",
            source=f"quantize:{source.digest}:{how}:{TOOL} {llama_cpp.__version__}",
        )
    finally:
        target.unlink(missing_ok=True)
        float_copy.unlink(missing_ok=True)
    report: dict[str, Any] = {
        "model": made.name,
        "digest": made.digest,
        "source": source.name,
        "source_format": source_format,
        "format": weight_format,
        "size_before": source.size,
        "size_after": made.size,
        "warning": warning,
        "imatrix": imatrix_report,
    }
    if measure:
        report["perplexity_before"] = llama_perplexity(resolved.path, threads)
        report["perplexity_after"] = llama_perplexity(store.resolve(made.name).path, threads)
    return report
