"""Images for the llama.cpp backend: a vision projector (``mmproj`` GGUF) run through libmtmd.

A GGUF vision model is two files, the language model and its projector. libmtmd (llama.cpp's
multimodal library, built only with ``LLMASOS_LLAMA_VISION=1``) loads the projector beside
the loaded language model, splits a prompt at its media markers into text and image chunks
(`mtmd_tokenize`: each image resized, cut into patches and framed by whatever tokens the
model's format puts around an image), and encodes an image chunk into one embedding per image
token, in the language model's input space (`mtmd_encode_chunk`).

`Projector.encode` does both off the engine loop: the result is the prompt's tokens, with a
placeholder id at each image position, and the embeddings of those positions. The backend
decodes the embeddings into the sequence's own slot when a prefill step reaches them, so an
image sequence is batched, preempted and prefix-cached like any other. Projectors whose
images need more than a flat run of causal positions (M-RoPE's 2-D positions, images attended
non-causally, as in Gemma 3) are refused with a clear error: the backend's steps do not
compute those.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmasos.errors import BackendError, InvalidRequestError, ModelFormatError, UnsupportedError

VISION_BUILD_HINT = (
    "llama-cpp-python was built without libmtmd, llama.cpp's multimodal library; "
    "rebuild it with `LLMASOS_LLAMA_VISION=1 make setup`"
)


def load_mtmd() -> Any:
    """llama-cpp-python's libmtmd bindings, or `UnsupportedError` when the library is missing."""
    try:
        from llama_cpp import mtmd_cpp
    except (OSError, RuntimeError, FileNotFoundError):
        raise UnsupportedError(VISION_BUILD_HINT) from None
    return mtmd_cpp


@dataclass(frozen=True)
class ImageEmbeddings:
    """One image of a prompt: where its tokens start and their embeddings ``[tokens, n_embd]``."""

    start: int
    embeddings: np.ndarray


@dataclass(frozen=True)
class EncodedPrompt:
    tokens: list[int]
    images: tuple[ImageEmbeddings, ...]

    @property
    def image_tokens(self) -> int:
        return sum(len(image.embeddings) for image in self.images)


class Projector:
    """A loaded ``mmproj`` GGUF bound to a loaded llama.cpp language model."""

    def __init__(self, mtmd: Any, handle: Any, n_embd: int, placeholder: int) -> None:
        self._mtmd = mtmd
        self._handle = handle
        self._n_embd = n_embd
        self._placeholder = placeholder
        self._lock = threading.Lock()
        self.marker = mtmd.mtmd_default_marker().decode()

    @classmethod
    def load(
        cls, path: Path, model: Any, n_embd: int, threads: int, placeholder: int, log: Any
    ) -> Projector:
        mtmd = load_mtmd()
        mtmd.mtmd_log_set(log, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(log, ctypes.c_void_p(0))
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = threads
        params.warmup = False
        handle = mtmd.mtmd_init_from_file(str(path).encode(), model, params)
        if not handle:
            raise ModelFormatError(
                f"libmtmd could not load the vision projector {path}: it is not an mmproj GGUF, "
                "or it was made for a language model of another size"
            )
        if not mtmd.mtmd_support_vision(handle):
            mtmd.mtmd_free(handle)
            raise ModelFormatError(f"{path} is a projector without a vision encoder")
        return cls(mtmd, handle, n_embd, placeholder)

    def encode(self, prompt: str, images: Sequence[bytes]) -> EncodedPrompt:
        """Tokenize ``prompt`` (one `marker` per image, in order) and encode its images."""
        if prompt.count(self.marker) != len(images):
            raise InvalidRequestError(
                f"the prompt has {prompt.count(self.marker)} image markers for {len(images)} images"
            )
        mtmd = self._mtmd
        with self._lock:
            if self._handle is None:
                raise BackendError("the model was unloaded")
            bitmaps = [self._bitmap(data, index) for index, data in enumerate(images)]
            chunks = mtmd.mtmd_input_chunks_init()
            try:
                text = prompt.encode("utf-8")
                request = mtmd.mtmd_input_text(text, len(text), True, True)
                array = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
                status = mtmd.mtmd_tokenize(
                    self._handle, chunks, ctypes.byref(request), array, len(bitmaps)
                )
                if status != 0:
                    raise InvalidRequestError(f"libmtmd could not tokenize the prompt ({status})")
                return self._encode_chunks(chunks)
            finally:
                mtmd.mtmd_input_chunks_free(chunks)
                for bitmap in bitmaps:
                    mtmd.mtmd_bitmap_free(bitmap)

    def _bitmap(self, data: bytes, index: int) -> Any:
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bitmap = self._mtmd.mtmd_helper_bitmap_init_from_buf(self._handle, buffer, len(data), False)
        if not bitmap:
            raise InvalidRequestError(
                f"image {index + 1} cannot be read: libmtmd could not decode it",
                param="messages",
            )
        return bitmap

    def _encode_chunks(self, chunks: Any) -> EncodedPrompt:
        mtmd = self._mtmd
        tokens: list[int] = []
        images: list[ImageEmbeddings] = []
        for index in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, index)
            kind = mtmd.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t()
                ids = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                tokens.extend(int(t) for t in ids[: count.value])
                continue
            if kind != mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                raise UnsupportedError("only images are taken, not audio")
            n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
            if mtmd.mtmd_decode_use_mrope(self._handle):
                raise UnsupportedError(
                    "this projector places image tokens with multimodal rotary positions "
                    "(M-RoPE), which the llama.cpp backend's batched steps do not compute"
                )
            if mtmd.mtmd_decode_use_non_causal(self._handle, chunk):
                raise UnsupportedError(
                    "this projector's images are attended non-causally, which the llama.cpp "
                    "backend's batched steps do not compute"
                )
            if int(mtmd.mtmd_input_chunk_get_n_pos(chunk)) != n_tokens:
                raise UnsupportedError("this projector's image positions are not one per token")
            status = mtmd.mtmd_encode_chunk(self._handle, chunk)
            if status != 0:
                raise BackendError(f"libmtmd failed to encode an image ({status})")
            output = mtmd.mtmd_get_output_embd(self._handle)
            embeddings = np.ctypeslib.as_array(output, shape=(n_tokens, self._n_embd)).copy()
            images.append(ImageEmbeddings(len(tokens), embeddings))
            tokens.extend([self._placeholder] * n_tokens)
        if not images:
            raise InvalidRequestError("the prompt has no image marker for its images")
        return EncodedPrompt(tokens, tuple(images))

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._mtmd.mtmd_free(self._handle)
                self._handle = None
