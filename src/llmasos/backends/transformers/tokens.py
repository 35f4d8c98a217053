"""Token-level facts about a Hugging Face tokenizer: each token's bytes, and the stop tokens.

`token_byte_table` maps every token id to the exact bytes it stands for, so that a UTF-8
character split over several tokens re-joins when the kernel concatenates them. It reads the
tokenizer's own decoder: byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM) maps each character
of a token back through the GPT-2 byte alphabet; SentencePiece-style vocabularies (Llama 2,
Mistral) turn ``▁`` into a space and ``<0xNN>`` byte-fallback tokens into their byte. Added
(special) tokens stand for their text. Anything else falls back to ``decode([id])``.

`end_of_generation_ids` collects EOS ids from the generation config and the tokenizer, plus
the common end-of-turn tokens (``<|im_end|>``, ``<|eot_id|>`` ...) when the vocabulary has them.
"""

from __future__ import annotations

import json
import re
from typing import Any

END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<|end|>",
    "<end_of_turn>",
    "</s>",
)
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def byte_level_alphabet() -> dict[str, int]:
    """The GPT-2 byte-level BPE alphabet: printable character -> the byte it encodes.

    Printable Latin-1 bytes stand for themselves; the remaining 68 bytes (controls, space,
    a few others) are given the characters from U+0100 upwards, in byte order.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {chr(b): b for b in printable}
    extra = 0
    for byte in range(256):
        if byte not in printable:
            mapping[chr(256 + extra)] = byte
            extra += 1
    return mapping


def _decoder_kinds(tokenizer: Any) -> set[str]:
    """The decoder types in the fast tokenizer's pipeline (``ByteLevel``, ``ByteFallback`` ...)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    try:
        decoder = json.loads(backend.to_str()).get("decoder") or {}
    except (ValueError, AttributeError):
        return set()
    kinds: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str):
                kinds.add(node["type"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(decoder)
    return kinds


def token_byte_table(tokenizer: Any) -> list[bytes]:
    """Bytes for every id in ``range(len(tokenizer))``."""
    size = len(tokenizer)
    pieces: list[str | None] = tokenizer.convert_ids_to_tokens(list(range(size)))
    added = {int(i): t.content for i, t in tokenizer.added_tokens_decoder.items()}
    kinds = _decoder_kinds(tokenizer)
    alphabet = byte_level_alphabet() if "ByteLevel" in kinds else None
    sentencepiece = "Metaspace" in kinds or "ByteFallback" in kinds or "Replace" in kinds
    table: list[bytes] = []
    for token_id, piece in enumerate(pieces):
        if token_id in added:
            table.append(added[token_id].encode("utf-8"))
        elif piece is None:
            table.append(b"")
        elif alphabet is not None and all(ch in alphabet for ch in piece):
            table.append(bytes(alphabet[ch] for ch in piece))
        elif sentencepiece and (match := _BYTE_FALLBACK.fullmatch(piece)):
            table.append(bytes([int(match.group(1), 16)]))
        elif sentencepiece:
            table.append(piece.replace("▁", " ").encode("utf-8"))
        else:
            text = tokenizer.decode([token_id], skip_special_tokens=False)
            table.append(text.encode("utf-8"))
    return table


def end_of_generation_ids(tokenizer: Any, generation_config: Any) -> frozenset[int]:
    ids: set[int] = set()

    def add(value: Any) -> None:
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))

    add(getattr(generation_config, "eos_token_id", None))
    add(getattr(tokenizer, "eos_token_id", None))
    vocab = tokenizer.get_vocab()
    special = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    for name in END_OF_TURN_TOKENS:
        if name in vocab and name in special:
            ids.add(int(vocab[name]))
    return frozenset(ids)
