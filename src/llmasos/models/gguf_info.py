"""What a model file says about itself: facts read from GGUF metadata or an HF directory.

`read_gguf` uses the ``gguf`` package's `GGUFReader` and checks that every tensor's data
lies inside the file, so a corrupt or truncated file raises `ModelFormatError` here, before
anything is written to the store. `read_hf_dir` reads ``config.json``,
``tokenizer_config.json`` and sentence-transformers' ``modules.json``; a CTranslate2 whisper
directory (``model.bin``, ``config.json``, a vocabulary), the format faster-whisper loads, is
recognized by `is_ctranslate2_whisper` and read by `read_ctranslate2_whisper`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmasos.errors import ModelFormatError
from llmasos.models.manifest import ModelFormat, ModelKind

GGUF_MAGIC = b"GGUF"
PROJECTOR_ARCHITECTURE = "clip"
"""``general.architecture`` of llama.cpp's vision projectors (``mmproj`` GGUFs)."""

#: Files an HF model directory may hold that the store keeps (weights, config, tokenizer).
HF_WEIGHT_SUFFIXES = (".safetensors",)
#: The vocabulary file a CTranslate2 model directory carries beside ``model.bin``.
CT2_VOCABULARIES = ("vocabulary.txt", "vocabulary.json")
WHISPER_MULTILINGUAL_VOCABULARY = 51865
"""Whisper's multilingual models have at least this many tokens; the ``.en`` ones 51864."""


@dataclass
class ModelFacts:
    """Facts about a model, as much as its files tell."""

    format: ModelFormat
    kind: ModelKind
    family: str | None = None
    parameter_count: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    embedding_length: int | None = None
    chat_template: str | None = None
    license: str | None = None
    capabilities: tuple[str, ...] = ()
    """``("vision",)`` for a vision-language model (see `read_hf_dir`)."""
    extra: dict[str, Any] = field(default_factory=dict)


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _field_value(reader: Any, key: str) -> Any:
    item = reader.fields.get(key)
    if item is None:
        return None
    try:
        return item.contents()
    except Exception:
        return None


def _open_gguf(path: Path) -> Any:
    """A `GGUFReader` over a whole GGUF with tensors and an architecture, or
    `ModelFormatError`."""
    if not is_gguf(path):
        raise ModelFormatError(f"{path.name} is not a GGUF file (bad magic number)")
    try:
        from gguf import GGUFReader

        reader = GGUFReader(path, "r")
        size = path.stat().st_size
        end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    except ModelFormatError:
        raise
    except Exception as error:
        raise ModelFormatError(
            f"{path.name} is not a readable GGUF file (corrupt or truncated): {error}"
        ) from None
    if end > size:
        raise ModelFormatError(
            f"{path.name} is truncated: its tensors need {end} bytes but the file has {size}"
        )
    if not reader.tensors:
        raise ModelFormatError(f"{path.name} holds no tensors")
    arch = _field_value(reader, "general.architecture")
    if not isinstance(arch, str):
        raise ModelFormatError(f"{path.name} has no general.architecture in its metadata")
    return reader


def read_gguf(path: Path) -> ModelFacts:
    """Facts from a GGUF file; `ModelFormatError` if it is not a whole, readable GGUF."""
    from gguf import LlamaFileType

    reader = _open_gguf(path)
    parameter_count = sum(int(t.n_elements) for t in reader.tensors)
    arch = _field_value(reader, "general.architecture")
    if arch == PROJECTOR_ARCHITECTURE:
        raise ModelFormatError(
            f"{path.name} is a vision projector (mmproj), not a model: import the language "
            f"model with --mmproj {path.name}"
        )
    file_type = _field_value(reader, "general.file_type")
    quantization: str | None = None
    if isinstance(file_type, int):
        try:
            quantization = LlamaFileType(file_type).name.removeprefix("MOSTLY_")
        except ValueError:
            quantization = f"type {file_type}"
    kind: ModelKind = "generate"
    pooling = _field_value(reader, f"{arch}.pooling_type")
    if arch in {"bert", "nomic-bert", "jina-bert-v2"} or (isinstance(pooling, int) and pooling):
        kind = "embed"
    template = _field_value(reader, "tokenizer.chat_template")
    license_ = _field_value(reader, "general.license")
    return ModelFacts(
        format="gguf",
        kind=kind,
        family=arch,
        parameter_count=parameter_count,
        quantization=quantization,
        context_length=_int_or_none(_field_value(reader, f"{arch}.context_length")),
        embedding_length=_int_or_none(_field_value(reader, f"{arch}.embedding_length")),
        chat_template=template if isinstance(template, str) else None,
        license=license_ if isinstance(license_, str) else None,
    )


def check_projector(path: Path, model: ModelFacts) -> None:
    """`ModelFormatError` unless ``path`` is a vision projector GGUF (``mmproj``) whose
    output width fits ``model``'s embeddings."""
    if not path.is_file():
        raise ModelFormatError(f"vision projector not found: {path}")
    reader = _open_gguf(path)
    if _field_value(reader, "general.architecture") != PROJECTOR_ARCHITECTURE:
        raise ModelFormatError(f"{path.name} is not a vision projector (mmproj) GGUF")
    if not _field_value(reader, "clip.has_vision_encoder"):
        raise ModelFormatError(f"{path.name} is a projector without a vision encoder")
    width = _int_or_none(_field_value(reader, "clip.vision.projection_dim"))
    if width and model.embedding_length and width != model.embedding_length:
        raise ModelFormatError(
            f"{path.name} projects images to {width} dimensions, but the model's embeddings "
            f"have {model.embedding_length}: it belongs to another model"
        )


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"{path.name} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path.name} must hold a JSON object")
    return data


def is_ctranslate2_whisper(names: Iterable[str]) -> bool:
    """Whether a directory with these relative file names is a CTranslate2 model
    (``model.bin`` + ``config.json`` + a vocabulary) rather than a transformers one."""
    present = set(names)
    return (
        "model.bin" in present
        and "config.json" in present
        and any(v in present for v in CT2_VOCABULARIES)
        and not any(n.endswith(HF_WEIGHT_SUFFIXES) for n in present)
    )


def whisper_vocabulary_size(files: dict[str, Path]) -> int:
    """Tokens in a CTranslate2 whisper's vocabulary (one per line, or a JSON list)."""
    if "vocabulary.txt" in files:
        with files["vocabulary.txt"].open("rb") as handle:
            return sum(1 for _ in handle)
    data = json.loads(files["vocabulary.json"].read_text(encoding="utf-8"))
    return len(data) if isinstance(data, list) else 0


def read_ctranslate2_whisper(files: dict[str, Path], label: str) -> ModelFacts:
    """Facts from a whisper converted to CTranslate2 (what faster-whisper loads)."""
    config = _load_json(files["config.json"])
    if "suppress_ids" not in config and "alignment_heads" not in config:
        raise ModelFormatError(
            f"{label} is a CTranslate2 model but not a whisper (its config.json has no "
            "alignment_heads or suppress_ids); only whisper models are supported"
        )
    with files["model.bin"].open("rb") as handle:
        header = handle.read(4)
    if len(header) < 4:
        raise ModelFormatError(f"{label}: model.bin is empty or truncated")
    try:
        vocabulary = whisper_vocabulary_size(files)
    except (OSError, ValueError) as error:
        raise ModelFormatError(f"{label}: unreadable vocabulary: {error}") from None
    if vocabulary < 1000:
        raise ModelFormatError(f"{label}: its vocabulary has {vocabulary} tokens; not a whisper")
    return ModelFacts(
        format="ctranslate2",
        kind="transcribe",
        family="whisper",
        context_length=448,  # whisper's decoder positions: the longest text per 30 s window
    )


def read_hf_dir(files: dict[str, Path], label: str) -> ModelFacts:
    """Facts from an HF / sentence-transformers model given its files (relative path -> path);
    a CTranslate2 whisper directory is read by `read_ctranslate2_whisper`.

    ``label`` names the model in errors (the directory or repo).
    """
    if is_ctranslate2_whisper(files):
        return read_ctranslate2_whisper(files, label)
    if "config.json" not in files:
        raise ModelFormatError(
            f"{label} is not a model directory: no config.json (expected a Hugging Face "
            "transformers or sentence-transformers model, or a .gguf file)"
        )
    weights = [p for p in files if p.endswith(HF_WEIGHT_SUFFIXES)]
    if not weights:
        raise ModelFormatError(
            f"{label} has no .safetensors weights (pickled .bin weights are not supported)"
        )
    config = _load_json(files["config.json"])
    tokenizer_config = (
        _load_json(files["tokenizer_config.json"]) if "tokenizer_config.json" in files else {}
    )
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):  # a list of named templates: take "default"
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if "chat_template.json" in files:  # a processor's template (vision-language models)
        template = _load_json(files["chat_template.json"]).get("chat_template") or template
    if "chat_template.jinja" in files:
        template = files["chat_template.jinja"].read_text(encoding="utf-8")
    sentence_transformers = "modules.json" in files
    text_config = config.get("text_config")
    merged: dict[str, Any] = {**(text_config if isinstance(text_config, dict) else {}), **config}
    architectures = merged.get("architectures") or []
    model_type = merged.get("model_type")
    family = model_type if isinstance(model_type, str) else None
    kind: ModelKind = "generate"
    if sentence_transformers or not any(
        str(a).endswith(("ForCausalLM", "ForConditionalGeneration", "LMHeadModel"))
        for a in architectures
    ):
        kind = "embed"
    context = merged.get("max_position_embeddings") or merged.get("n_positions")
    st_config = files.get("sentence_bert_config.json")
    if st_config is not None:
        context = _load_json(st_config).get("max_seq_length") or context
    dtype = merged.get("torch_dtype") or merged.get("dtype")
    quant = merged.get("quantization_config")
    quantization = (
        str(quant.get("quant_method"))
        if isinstance(quant, dict)
        else (str(dtype) if dtype else None)
    )
    parameter_count = _safetensors_parameters([files[w] for w in weights])
    if is_vits(config):
        return read_vits(config, files, label, parameter_count)
    vision = kind == "generate" and is_vision_language(config, files)
    return ModelFacts(
        format="sentence-transformers" if sentence_transformers else "safetensors",
        kind=kind,
        family=family,
        parameter_count=parameter_count,
        quantization=quantization,
        context_length=_int_or_none(context),
        embedding_length=_int_or_none(merged.get("hidden_size") or merged.get("d_model")),
        chat_template=template if isinstance(template, str) and kind == "generate" else None,
        capabilities=("vision",) if vision else (),
    )


PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
VITS_VOCABULARY = "vocab.json"
"""The character vocabulary `VitsTokenizer` reads (MMS-TTS ships it beside the weights)."""


def is_vits(config: dict[str, Any]) -> bool:
    """A transformers VITS text-to-speech model (Meta's MMS-TTS and other VITS checkpoints)."""
    return config.get("model_type") == "vits" or "VitsModel" in (config.get("architectures") or [])


def read_vits(
    config: dict[str, Any], files: dict[str, Path], label: str, parameter_count: int | None
) -> ModelFacts:
    """Facts from a VITS directory: a voice (kind ``speak``) that ``/v1/audio/speech`` runs.
    Its tokenizer's character vocabulary must be there: without it no text becomes input."""
    if VITS_VOCABULARY not in files:
        raise ModelFormatError(
            f"{label} is a VITS model without its tokenizer's {VITS_VOCABULARY}; "
            "a VITS voice needs it (MMS-TTS repos ship it)"
        )
    return ModelFacts(
        format="safetensors",
        kind="speak",
        family="vits",
        parameter_count=parameter_count,
        quantization=str(config.get("torch_dtype") or config.get("dtype") or "") or None,
        embedding_length=_int_or_none(config.get("hidden_size")),
    )


def is_vision_language(config: dict[str, Any], files: dict[str, Path]) -> bool:
    """A transformers vision-language model: a ``vision_config`` beside the text model, and
    an image processor to turn pixels into its inputs (what ``AutoProcessor`` loads)."""
    return isinstance(config.get("vision_config"), dict) and any(
        f in files for f in PROCESSOR_FILES
    )


def _safetensors_parameters(paths: list[Path]) -> int | None:
    """Sum of tensor elements from safetensors headers (8-byte length + JSON header)."""
    total = 0
    for path in paths:
        try:
            with path.open("rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                if not 0 < length < 100_000_000:
                    raise ModelFormatError(f"{path.name} is not a valid safetensors file")
                header = json.loads(handle.read(length))
        except (OSError, ValueError) as error:
            raise ModelFormatError(
                f"{path.name} is not a valid safetensors file: {error}"
            ) from None
        for name, info in header.items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            count = 1
            for dim in info.get("shape", []):
                count *= int(dim)
            total += count
    return total or None
