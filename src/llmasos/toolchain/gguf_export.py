"""Write torch weights back to a GGUF that llama.cpp serves, from the GGUF they came from.

A fine-tuned, pruned or distilled model of a GGUF base has the base's tokenizer, chat
template and architecture, only other weights (and, pruned, fewer blocks). `export_gguf`
therefore copies every metadata key of the template GGUF (the tokenizer and template
included; ``<arch>.block_count`` set to the model's layer count) and writes the model's
tensors under llama.cpp's names (`gguf.TensorNameMap`), matrices in F16 and vectors in F32.
llama.cpp's converter stores the query and key projections of llama-architecture models
with their rotary halves interleaved, and transformers undoes that when it de-quantizes a
GGUF; `export_gguf` redoes it. Only the ``llama`` architecture (SmolLM2, Llama, Mistral
layouts) is written: other layouts need llama.cpp's own converter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llmasos.errors import ModelFormatError

SUPPORTED = ("llama",)


def _permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's query/key row order: each head's two rotary halves interleaved."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _field_value(field: Any) -> Any:
    import gguf

    kind = field.types[0]
    if kind == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    if kind == gguf.GGUFValueType.ARRAY:
        item = field.types[-1]
        if item == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    return field.parts[field.data[0]].tolist()[0]


def _architecture(reader: Any) -> str:
    field = reader.fields.get("general.architecture")
    return str(_field_value(field)) if field is not None else "?"


def export_gguf(
    state: dict[str, Any], config: Any, template: Path, destination: Path, *, name: str = ""
) -> None:
    """Write ``state`` (an HF causal LM's state dict) as a GGUF like ``template``."""
    import gguf

    reader = gguf.GGUFReader(template)  # parses the tokenizer's arrays: read it once
    arch = _architecture(reader)
    if arch not in SUPPORTED:
        raise ModelFormatError(
            f"writing a GGUF for the {arch!r} architecture is not supported yet "
            f"(supported: {', '.join(SUPPORTED)}); the safetensors version still serves"
        )
    blocks = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, blocks)
    template_names = {t.name for t in reader.tensors}
    writer = gguf.GGUFWriter(destination, arch)
    try:
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":
                continue
            value: Any = _field_value(field)
            if key == f"{arch}.block_count":
                value = blocks
            elif key == "general.file_type":
                value = int(gguf.LlamaFileType.MOSTLY_F16)
            elif key == "general.name" and name:
                value = name
            sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, value, field.types[0], sub_type=sub_type)
        written = 0
        for hf_name, tensor in state.items():
            target = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if target is None:
                raise ModelFormatError(f"no GGUF name for the tensor {hf_name}")
            if target == "output.weight" and target not in template_names:
                continue  # tied to the token embeddings, as in the template
            array = tensor.detach().float().cpu().numpy()
            if hf_name.endswith("q_proj.weight"):
                array = _permute(array, heads)
            elif hf_name.endswith("k_proj.weight"):
                array = _permute(array, kv_heads)
            array = array.astype(np.float16 if array.ndim > 1 else np.float32)
            writer.add_tensor(target, array)
            written += 1
        if written == 0:
            raise ModelFormatError("the model has no tensors to write")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        destination.unlink(missing_ok=True)
        raise
    writer.close()
