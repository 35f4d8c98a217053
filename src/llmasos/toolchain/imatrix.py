"""Importance matrices for ``llmasos quantize --imatrix DS``, computed with llama.cpp itself.

An importance matrix holds, for every weight matrix the model multiplies activations by, the
mean square of each input column's activation over a calibration text; llama.cpp's quantizer
(``llama_model_quantize`` with ``params.imatrix``) then rounds the weights that meet large
activations more carefully. ``llama-imatrix`` (llama.cpp's tool) is not part of the library
that llama-cpp-python ships, but the mechanism it uses is: a context's ``cb_eval`` callback,
which llama.cpp's graph scheduler calls for every node it computes. `compute_imatrix`
installs that callback through ctypes, runs the calibration text through the model in chunks
(``llama_decode``, a fresh sequence per chunk as ``llama-imatrix`` does), and for every
``MUL_MAT`` node whose weight is a ``blk.*`` tensor (or ``output.weight``) adds the squares of
its input rows, column by column, and counts the rows: the same sums and counts as
``llama-imatrix`` (its ``collect_imatrix``; nodes with fewer than 16 rows are skipped there
too). The forward pass is llama.cpp's own, on the same weights the quantizer reads.

`quantizer_entries` turns the sums into what ``llama_model_imatrix_data`` wants (sum/count
per column, as ``llama-quantize`` computes from an imatrix file), and `write_imatrix_gguf`
saves them in ``llama-imatrix``'s GGUF format (``NAME.in_sum2`` and ``NAME.counts`` tensors,
``imatrix.*`` keys), so ``llama-quantize --imatrix FILE`` reads the same data.

The ``ggml_tensor`` layout below is the one of the ggml that llama-cpp-python 0.3.x vendors
(``ggml/include/ggml.h``). A wrong layout cannot pass unnoticed: every collected node must be
a weight named ``blk.*`` whose row length is the activations' width (`_collect`), or the
collection stops with an error.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmasos.errors import BackendError, InvalidRequestError

logger = logging.getLogger(__name__)

GGML_MAX_DIMS = 4
GGML_MAX_SRC = 10
GGML_MAX_OP_PARAMS = 64
GGML_MAX_NAME = 64
GGML_TYPE_F32 = 0
GGML_OP_MUL_MAT = 29
"""Position of ``GGML_OP_MUL_MAT`` in ``enum ggml_op`` (ggml.h of the vendored llama.cpp)."""
MIN_ROWS = 16
"""``llama-imatrix`` skips multiplications of fewer rows (its comment: small batches)."""


class _Tensor(ctypes.Structure):
    pass


_Tensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
    ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(_Tensor) * GGML_MAX_SRC),
    ("view_src", ctypes.POINTER(_Tensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * GGML_MAX_NAME),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]


def _weight_name(raw: bytes) -> str:
    """``llama-imatrix``'s ``filter_tensor_name``: the part between ``#`` marks, if any."""
    name = raw.decode(errors="replace")
    if "#" in name:
        name = name.split("#", 2)[1]
    return name


@dataclass
class Imatrix:
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    """Per weight tensor: the sum over rows of each input column's squared activation."""
    counts: dict[str, int] = field(default_factory=dict)
    """Per weight tensor: rows added."""
    chunks: int = 0
    chunk_size: int = 0
    tokens: int = 0
    dataset: str = ""


def _wanted(tensor: _Tensor, process_output: bool) -> bool:
    if tensor.op != GGML_OP_MUL_MAT:
        return False
    weight, activations = tensor.src[0], tensor.src[1]
    if not weight or not activations:
        return False
    inputs = activations.contents
    if inputs.type != GGML_TYPE_F32 or inputs.ne[1] < MIN_ROWS:
        return False
    name = _weight_name(weight.contents.name)
    return name.startswith("blk.") or (process_output and name == "output.weight")


def _collect(result: Imatrix, tensor: _Tensor) -> None:
    weight = tensor.src[0].contents
    inputs = tensor.src[1].contents
    if not inputs.data:
        raise BackendError("llama.cpp handed an activation tensor without host data")
    columns, rows = int(inputs.ne[0]), int(inputs.ne[1])
    if int(weight.ne[2]) * int(weight.ne[3]) != 1 or int(inputs.ne[2]) * int(inputs.ne[3]) != 1:
        raise InvalidRequestError(
            "importance matrices for mixture-of-experts models are not supported"
        )
    if int(weight.ne[0]) != columns:
        raise BackendError(f"unexpected shapes for {_weight_name(weight.name)}")
    stride = int(inputs.nb[1]) // 4
    buffer = (ctypes.c_float * (stride * (rows - 1) + columns)).from_address(inputs.data)
    flat = np.ctypeslib.as_array(buffer)
    values = np.lib.stride_tricks.as_strided(
        flat, shape=(rows, columns), strides=(stride * 4, 4)
    ).astype(np.float64)
    name = _weight_name(weight.name)
    squares = np.einsum("ij,ij->j", values, values)
    if name in result.sums:
        result.sums[name] += squares
    else:
        result.sums[name] = squares
    result.counts[name] = result.counts.get(name, 0) + rows


def calibration_tokens(vocab: object, texts: Sequence[str]) -> list[int]:
    """The calibration texts as one token stream (each with the model's special tokens)."""
    import llama_cpp

    tokens: list[int] = []
    for text in texts:
        data = text.encode()
        capacity = len(data) + 8
        buffer = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buffer, capacity, True, False)
        if n < 0:
            raise BackendError("llama.cpp failed to tokenize the calibration text")
        tokens.extend(buffer[:n])
    return tokens


def compute_imatrix(
    gguf: Path,
    texts: Sequence[str],
    *,
    chunk_size: int = 512,
    threads: int = 0,
    dataset: str = "",
    process_output: bool = False,
) -> Imatrix:
    """The importance matrix of ``gguf`` over ``texts``, from llama.cpp's forward pass."""
    import os

    import llama_cpp

    from llmasos.backends.llamacpp.backend import configure_native_logging

    configure_native_logging()
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(
        str(gguf).encode(), llama_cpp.llama_model_default_params()
    )
    if not model:
        raise BackendError(f"llama.cpp could not load {gguf}")
    result = Imatrix(chunk_size=chunk_size, dataset=dataset)
    failure: list[BaseException] = []

    def callback(pointer: int, ask: bool, _user: int) -> bool:
        try:
            tensor = ctypes.cast(pointer, ctypes.POINTER(_Tensor)).contents
            if ask:
                return _wanted(tensor, process_output)
            _collect(result, tensor)
            return True
        except BaseException as error:
            failure.append(error)
            return False  # stops the graph computation

    hook = llama_cpp.ggml_backend_sched_eval_callback(callback)
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = params.n_ubatch = chunk_size
    params.n_seq_max = 1
    params.n_threads = params.n_threads_batch = threads or os.cpu_count() or 1
    params.cb_eval = hook
    params.cb_eval_user_data = None
    params.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        llama_cpp.llama_model_free(model)
        raise BackendError("llama.cpp could not create a context for the importance matrix")
    batch = None
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        tokens = calibration_tokens(vocab, texts)
        if len(tokens) < chunk_size:
            raise InvalidRequestError(
                f"the calibration data has {len(tokens)} tokens; an importance matrix needs at "
                f"least one chunk of {chunk_size}",
                param="imatrix",
            )
        bos = llama_cpp.llama_vocab_bos(vocab)
        add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        memory = llama_cpp.llama_get_memory(ctx)
        batch = llama_cpp.llama_batch_init(chunk_size, 0, 1)
        for start in range(0, len(tokens) - chunk_size + 1, chunk_size):
            chunk = tokens[start : start + chunk_size]
            if add_bos:
                chunk[0] = bos  # as llama-imatrix does
            llama_cpp.llama_memory_clear(memory, True)
            for i, token in enumerate(chunk):  # logits for every row, as llama-imatrix asks:
                batch.token[i] = token  # the last block's FFN then sees every token
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = True
            batch.n_tokens = len(chunk)
            status = llama_cpp.llama_decode(ctx, batch)
            if failure:
                raise failure[0]
            if status != 0:
                raise BackendError(f"llama_decode failed with status {status}")
            result.chunks += 1
            result.tokens += len(chunk)
    finally:
        if batch is not None:
            llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
        del hook
    if not result.sums:
        raise BackendError("llama.cpp computed no matrix multiplication to collect")
    return result


SHIPPED_CALIBRATION = "summarize-dev"
"""The calibration `llmasos tune` uses: the 40 paragraphs of the shipped ``summarize``
development set (news, science, e-mail, stories, how-tos ...: 3,072 tokens of SmolLM2's),
written for LLMasOS and not the text perplexity is measured on."""


def shipped_calibration_texts() -> list[str]:
    """The shipped calibration as one text, its paragraphs separated by blank lines (as
    `quantize --imatrix FILE.txt` reads a file: the token stream then has the paragraph
    breaks a document has, not paragraphs run into each other)."""
    import json
    from importlib import resources

    path = resources.files("llmasos.toolchain") / "data" / "services" / "summarize.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return ["\n\n".join(json.loads(line)["input"]["text"] for line in lines if line.strip())]


def quantizer_entries(imatrix: Imatrix) -> dict[str, np.ndarray]:
    """Per tensor: the mean squared activation of each column (``llama-quantize``'s values)."""
    return {
        name: (sums / imatrix.counts[name]).astype(np.float32)
        for name, sums in imatrix.sums.items()
        if imatrix.counts.get(name)
    }


def quantize_params_imatrix(entries: dict[str, np.ndarray]) -> tuple[Any, list[object]]:
    """A ``llama_model_imatrix_data`` array (name = NULL terminated) for ``params.imatrix``,
    and the buffers it points into (keep them alive until the quantizer returns)."""
    import llama_cpp

    keep: list[object] = []
    array = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
    for i, (name, values) in enumerate(sorted(entries.items())):
        data = np.ascontiguousarray(values, dtype=np.float32)
        keep.append(data)
        array[i].name = name.encode()  # ctypes keeps the bytes alive with the array
        array[i].data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        array[i].size = data.size
    array[len(entries)].name = None
    keep.append(array)
    return array, keep


def write_imatrix_gguf(imatrix: Imatrix, path: Path) -> None:
    """``imatrix`` in ``llama-imatrix``'s GGUF format (``llama-quantize --imatrix`` reads it)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch="")
    writer.add_type("imatrix")
    writer.add_array("imatrix.datasets", [imatrix.dataset or "llmasos"])
    writer.add_uint32("imatrix.chunk_count", imatrix.chunks)
    writer.add_uint32("imatrix.chunk_size", imatrix.chunk_size)
    for name in sorted(imatrix.sums):
        writer.add_tensor(f"{name}.in_sum2", imatrix.sums[name].astype(np.float32)[None, :])
        writer.add_tensor(f"{name}.counts", np.array([[imatrix.counts[name]]], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
