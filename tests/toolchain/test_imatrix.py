"""Importance matrices from llama.cpp's forward pass (`cb_eval`), and quantizing with one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmasos.errors import InvalidRequestError
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.gguf_info import read_gguf
from llmasos.toolchain.imatrix import compute_imatrix, quantizer_entries, write_imatrix_gguf
from llmasos.toolchain.perplexity import public_domain_text
from llmasos.toolchain.quantize import quantize_gguf

SMOLLM2 = package_path(BUILTINS[0])
pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(SMOLLM2 is None, reason="the embedded model package is missing"),
]


def test_the_matrix_covers_every_block_weight_and_feeds_the_quantizer(tmp_path: Path) -> None:
    assert SMOLLM2 is not None
    text = public_domain_text()[:1000]  # ~200 tokens: three chunks of 64
    matrix = compute_imatrix(SMOLLM2, [text], chunk_size=64, threads=2, dataset="gettysburg")
    assert matrix.chunks == 3 and matrix.tokens == 192
    layers = 30  # SmolLM2-135M's decoder blocks
    # seven matrices per block (q, k, v, output, gate, up, down), every row of every chunk
    assert len(matrix.sums) == 7 * layers
    assert set(matrix.counts.values()) == {192}
    assert matrix.sums["blk.0.ffn_down.weight"].shape == (1536,)
    assert matrix.sums["blk.0.attn_q.weight"].shape == (576,)
    entries = quantizer_entries(matrix)
    assert all(np.isfinite(v).all() and (v >= 0).all() and v.any() for v in entries.values())
    # q, k and v read the same normed input, so their statistics are the same numbers
    assert np.array_equal(entries["blk.3.attn_q.weight"], entries["blk.3.attn_v.weight"])

    plain, weighted = tmp_path / "plain.gguf", tmp_path / "weighted.gguf"
    quantize_gguf(SMOLLM2, plain, "Q4_0", threads=2)
    quantize_gguf(SMOLLM2, weighted, "Q4_0", threads=2, imatrix=entries)
    assert read_gguf(weighted).quantization == "Q4_0"
    # the matrix changes the rounding (and, as llama.cpp does with one, guards the first
    # blocks' ffn_down with a wider type)
    assert plain.read_bytes() != weighted.read_bytes()

    import gguf

    saved = tmp_path / "imatrix.gguf"
    write_imatrix_gguf(matrix, saved)
    reader = gguf.GGUFReader(str(saved))
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 * len(matrix.sums)
    assert np.allclose(
        np.asarray(tensors["blk.0.ffn_down.weight.in_sum2"].data).ravel(),
        matrix.sums["blk.0.ffn_down.weight"],
        rtol=1e-6,
    )
    assert float(np.asarray(tensors["blk.0.ffn_down.weight.counts"].data).ravel()[0]) == 192


def test_too_little_calibration_text_is_one_line() -> None:
    assert SMOLLM2 is not None
    with pytest.raises(InvalidRequestError, match="needs at least one chunk of 512"):
        compute_imatrix(SMOLLM2, ["Four score and seven years ago."], threads=1)
