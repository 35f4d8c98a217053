"""Loading a causal LM with transformers: device and dtype choice, GGUF de-quantization cache.

`load_causal_lm` reads either an HF model directory (``config.json`` + safetensors +
tokenizer) or a GGUF file. A GGUF is de-quantized once (slow: the weights are unpacked and
the tokenizer rebuilt from the file's metadata) and the result is saved as a plain
safetensors directory under the cache directory, so the next load reads that instead. The
cache is complete only once its ``llmasos-source.json`` marker exists (it is written into a
temporary directory that is renamed into place); a cache that fails to load is rebuilt.

Device: CUDA when available (unless ``options["device"]`` says otherwise), in bf16 if the
GPU supports it, else fp16. CPU: bf16 when the CPU has native bf16 instructions
(AVX512-BF16 or AMX; about twice as fast as fp32 for small models), else fp32.
``options["dtype"]`` overrides (``float32``, ``bfloat16``, ``float16``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    GgufConfig,
)
from transformers.utils import logging as hf_logging

from llmasos.backends.interface import LoadSpec
from llmasos.errors import ConfigError, ModelFormatError

logger = logging.getLogger(__name__)

CACHE_MARKER = "llmasos-source.json"
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedCausalLM:
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    seconds: float
    """Wall time of the load."""
    source: str
    """``safetensors``, ``gguf`` (de-quantized now) or ``gguf-cache`` (from the cache)."""
    cache_dir: Path | None
    processor: Any = None
    """A vision-language model's ``AutoProcessor`` (None for a text-only model)."""


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        check = getattr(torch.cpu, name, None)
        if check is not None:
            try:
                if check():
                    return True
            except RuntimeError:
                continue
    return False


def choose_device_and_dtype(options: dict[str, Any]) -> tuple[torch.device, torch.dtype]:
    requested = str(options.get("device", "auto")).lower()
    if requested not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device={requested!r} is not one of auto, cpu, cuda")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' was asked for, but torch sees no CUDA device")
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    dtype_name = options.get("dtype")
    if dtype_name is not None and dtype_name != "auto":
        if dtype_name not in DTYPES:
            raise ConfigError(f"dtype={dtype_name!r} is not one of {', '.join(DTYPES)}")
        return device, DTYPES[dtype_name]
    if use_cuda:
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def default_cache_dir(gguf_path: Path) -> Path:
    """``~/.cache/llmasos/transformers/<key>``, keyed by the file's path, size and mtime."""
    stat = gguf_path.stat()
    key = f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return Path.home() / ".cache" / "llmasos" / "transformers" / digest


def _from_pretrained(directory: Path, dtype: torch.dtype, **kwargs: Any) -> tuple[Any, Any]:
    model = AutoModelForCausalLM.from_pretrained(
        directory, dtype=dtype, attn_implementation="sdpa", local_files_only=True, **kwargs
    )
    tokenizer = AutoTokenizer.from_pretrained(
        directory, local_files_only=True, gguf_file=kwargs.get("gguf_file")
    )
    return model, tokenizer


def _is_vision_dir(directory: Path) -> bool:
    """A vision-language model directory: a ``vision_config`` beside the text model and an
    image processor (the test the model store's ``vision`` capability makes too)."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    processor = any((directory / name).is_file() for name in PROCESSOR_FILES)
    return isinstance(config, dict) and isinstance(config.get("vision_config"), dict) and processor


def _vision_from_pretrained(directory: Path, dtype: torch.dtype) -> tuple[Any, Any, Any]:
    """A vision-language model, its processor (images to pixel inputs) and its tokenizer."""
    model = AutoModelForImageTextToText.from_pretrained(
        directory, dtype=dtype, attn_implementation="sdpa", local_files_only=True
    )
    processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
        directory, local_files_only=True
    )
    return model, processor, processor.tokenizer


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise ModelFormatError(f"{path} is not a file")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelFormatError(f"{path} is not a GGUF file (bad magic number)")


def cache_is_complete(cache_dir: Path) -> bool:
    return (cache_dir / CACHE_MARKER).is_file() and any(cache_dir.glob("*.safetensors"))


def _write_cache(model: Any, tokenizer: Any, cache_dir: Path, source: Path) -> None:
    """Save the de-quantized model atomically; a failure only costs the next load time."""
    staging = cache_dir.with_name(f"{cache_dir.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        stat = source.stat()
        marker = {"source": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        (staging / CACHE_MARKER).write_text(json.dumps(marker))
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.replace(staging, cache_dir)
    except (OSError, ValueError, RuntimeError) as error:
        logger.warning("could not cache the de-quantized model in %s: %s", cache_dir, error)
        shutil.rmtree(staging, ignore_errors=True)


def load_causal_lm(spec: LoadSpec) -> LoadedCausalLM:
    """Load ``spec``'s model and tokenizer; raise `ModelFormatError` if they cannot be read."""
    device, dtype = choose_device_and_dtype(spec.options)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    started = time.perf_counter()
    path = Path(spec.path)
    cache_dir: Path | None = None
    processor: Any = None
    try:
        if spec.format == "gguf":
            _check_gguf(path)
            option = spec.options.get("cache_dir")
            cache_dir = Path(option) if option else default_cache_dir(path)
            if cache_is_complete(cache_dir):
                try:
                    model, tokenizer = _from_pretrained(cache_dir, dtype)
                    source = "gguf-cache"
                except (OSError, ValueError, RuntimeError) as error:
                    logger.warning("ignoring a broken cache %s: %s", cache_dir, error)
                    shutil.rmtree(cache_dir, ignore_errors=True)
            if not cache_is_complete(cache_dir):
                model, tokenizer = _from_pretrained(
                    path.parent,
                    dtype,
                    gguf_file=path.name,
                    quantization_config=GgufConfig(dequantize=True),
                )
                source = "gguf"
                _write_cache(model, tokenizer, cache_dir, path)
        elif spec.format == "safetensors":
            if not (path / "config.json").is_file():
                raise ModelFormatError(f"{path} is not a model directory (no config.json)")
            if _is_vision_dir(path):
                model, processor, tokenizer = _vision_from_pretrained(path, dtype)
            else:
                model, tokenizer = _from_pretrained(path, dtype)
            source = "safetensors"
        else:
            raise ModelFormatError(
                f"the transformers backend loads gguf or safetensors, not {spec.format!r}"
            )
    except ModelFormatError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        raise ModelFormatError(f"transformers cannot load {path}: {error}") from None
    model.to(device)
    model.eval()
    seconds = time.perf_counter() - started
    logger.info("loaded %s (%s) in %.2fs on %s as %s", path, source, seconds, device, dtype)
    return LoadedCausalLM(model, tokenizer, device, dtype, seconds, source, cache_dir, processor)
