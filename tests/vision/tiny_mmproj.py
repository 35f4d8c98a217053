"""A tiny llama.cpp vision projector (``mmproj`` GGUF), written with random weights.

A GGUF vision model is two files: the language model and a projector that libmtmd loads
beside it. No such pair can be downloaded here, so the tests pair the embedded SmolLM2 GGUF
(hidden size 576) with this projector: a LLaVA-style CLIP encoder (projector type ``mlp``),
two transformer blocks of width 32 over 14-pixel patches of a 28-pixel image, and a two-layer
MLP into 576 dimensions. An image becomes four embeddings in the language model's input
space. The weights are random (fixed seed), so the model's answers mean nothing, but an image
changes them, which is what the tests check.

Tensor names, shapes and metadata keys follow what llama.cpp's ``tools/mtmd/clip.cpp`` reads
for that projector type (numpy shapes are ggml's ``ne`` reversed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEXT_HIDDEN = 576
"""SmolLM2-135M's hidden size: the projector's output width must equal it."""

WIDTH = 32
HEADS = 2
FFN = 64
BLOCKS = 2
IMAGE_SIZE = 28
PATCH_SIZE = 14
PATCHES = (IMAGE_SIZE // PATCH_SIZE) ** 2
"""Image tokens per image."""


def write_tiny_mmproj(path: Path, seed: int = 0, text_hidden: int = TEXT_HIDDEN) -> Path:
    """Write the projector GGUF to ``path`` and return it."""
    from gguf import GGUFWriter

    rng = np.random.default_rng(seed)

    def weight(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), "clip")
    writer.add_string("general.name", "tiny-mmproj")
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_audio_encoder", False)
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
    writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
    writer.add_uint32("clip.vision.embedding_length", WIDTH)
    writer.add_uint32("clip.vision.feed_forward_length", FFN)
    writer.add_uint32("clip.vision.block_count", BLOCKS)
    writer.add_uint32("clip.vision.projection_dim", text_hidden)
    writer.add_uint32("clip.vision.attention.head_count", HEADS)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])

    tensors: dict[str, np.ndarray] = {
        "v.patch_embd.weight": weight(WIDTH, 3, PATCH_SIZE, PATCH_SIZE, scale=0.05),
        "v.patch_embd.bias": weight(WIDTH),
        "v.position_embd.weight": weight(PATCHES, WIDTH),
        "v.pre_ln.weight": np.ones(WIDTH, dtype=np.float32),
        "v.pre_ln.bias": np.zeros(WIDTH, dtype=np.float32),
    }
    for block in range(BLOCKS):
        prefix = f"v.blk.{block}"
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensors[f"{prefix}.{name}.weight"] = weight(WIDTH, WIDTH)
            tensors[f"{prefix}.{name}.bias"] = weight(WIDTH)
        for norm in ("ln1", "ln2"):
            tensors[f"{prefix}.{norm}.weight"] = np.ones(WIDTH, dtype=np.float32)
            tensors[f"{prefix}.{norm}.bias"] = np.zeros(WIDTH, dtype=np.float32)
        tensors[f"{prefix}.ffn_up.weight"] = weight(FFN, WIDTH)
        tensors[f"{prefix}.ffn_up.bias"] = weight(FFN)
        tensors[f"{prefix}.ffn_down.weight"] = weight(WIDTH, FFN)
        tensors[f"{prefix}.ffn_down.bias"] = weight(WIDTH)
    tensors["mm.0.weight"] = weight(text_hidden, WIDTH)
    tensors["mm.0.bias"] = weight(text_hidden)
    tensors["mm.2.weight"] = weight(text_hidden, text_hidden, scale=0.05)
    tensors["mm.2.bias"] = weight(text_hidden)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
