"""The transformers backend's KV pool: one fixed slot per resident sequence.

`SlotKVCache` keeps, for every decoder layer, a key and a value tensor shaped
``[slots, kv_heads, capacity, head_dim]``. A step is described by a `StepLayout` (which rows
of the padded batch go to which slot, at which positions); the model calls `update` once per
layer during the forward pass, the new keys/values are scattered into their slots and the
layer gets back the gathered ``[rows, kv_heads, kv_length, head_dim]`` history of its rows.
Masking is the caller's job: rows see only their own slot, causally, through the 4-D mask
built by `build_step`. Capacity grows on demand (doubling), up to the context length.

A slot outlives its sequence: `SlotTable` remembers which tokens a free slot still holds so
the next sequence with the same prefix can skip recomputing it (prefix caching).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

MIN_CAPACITY = 256


@dataclass
class StepLayout:
    """Tensors describing one batched forward step over left-padded rows."""

    input_ids: torch.Tensor
    """``[rows, width]`` token ids, left-padded."""
    position_ids: torch.Tensor
    """``[rows, width]`` absolute positions (0 for padding)."""
    query_positions: torch.Tensor
    """``[rows, width]`` the position each query may see up to (0 for padding)."""
    row_slots: torch.Tensor
    """``[rows]`` the slot of each row."""
    write_slots: torch.Tensor
    write_positions: torch.Tensor
    source_rows: torch.Tensor
    source_columns: torch.Tensor
    kv_length: int
    """Keys each row sees this step: the longest slot after the step."""

    def attention_mask(self, sliding_window: int | None = None) -> torch.Tensor:
        """``[rows, 1, width, kv_length]`` boolean mask: True where a query may attend."""
        keys = torch.arange(self.kv_length, device=self.query_positions.device)
        query = self.query_positions.unsqueeze(-1)
        mask = keys.view(1, 1, -1) <= query
        if sliding_window is not None:
            mask &= keys.view(1, 1, -1) > query - sliding_window
        return mask.unsqueeze(1)


def build_step(
    rows: Sequence[tuple[int, int, Sequence[int]]], *, pad_token: int, device: torch.device
) -> StepLayout:
    """Lay out ``(slot, start_position, new_tokens)`` rows as one left-padded batch."""
    width = max(len(tokens) for _, _, tokens in rows)
    input_ids = torch.full((len(rows), width), pad_token, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    write_slots: list[int] = []
    write_positions: list[int] = []
    source_rows: list[int] = []
    source_columns: list[int] = []
    kv_length = 0
    for row, (slot, start, tokens) in enumerate(rows):
        count = len(tokens)
        offset = width - count
        input_ids[row, offset:] = torch.tensor(list(tokens), dtype=torch.long)
        positions[row, offset:] = torch.arange(start, start + count)
        write_slots.extend([slot] * count)
        write_positions.extend(range(start, start + count))
        source_rows.extend([row] * count)
        source_columns.extend(range(offset, width))
        kv_length = max(kv_length, start + count)

    def as_tensor(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    positions = positions.to(device)
    return StepLayout(
        input_ids=input_ids.to(device),
        position_ids=positions,
        query_positions=positions,
        row_slots=as_tensor([slot for slot, _, _ in rows]),
        write_slots=as_tensor(write_slots),
        write_positions=as_tensor(write_positions),
        source_rows=as_tensor(source_rows),
        source_columns=as_tensor(source_columns),
        kv_length=kv_length,
    )


class SlotKVCache:
    """Per-layer slot tensors; quacks like a transformers ``Cache`` for one step at a time."""

    is_compileable = False

    def __init__(
        self, *, slots: int, max_length: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.slots = slots
        self.max_length = max_length
        self.device = device
        self.dtype = dtype
        self.capacity = 0
        self._keys: dict[int, torch.Tensor] = {}
        self._values: dict[int, torch.Tensor] = {}
        self._layout: StepLayout | None = None

    # --- step protocol -------------------------------------------------------------------

    @torch.inference_mode()
    def begin_step(self, layout: StepLayout) -> None:
        self._grow(layout.kv_length)
        self._layout = layout

    def end_step(self) -> None:
        self._layout = None

    def update(
        self,
        key_states: torch.Tensor,
        value_states: torch.Tensor,
        layer_idx: int,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values for ``layer_idx``; return each row's full history."""
        layout = self._layout
        if layout is None:
            raise RuntimeError("SlotKVCache.update called outside a step")
        keys = self._layer(self._keys, layer_idx, key_states)
        values = self._layer(self._values, layer_idx, value_states)
        new_keys = key_states[layout.source_rows, :, layout.source_columns]
        new_values = value_states[layout.source_rows, :, layout.source_columns]
        keys[layout.write_slots, :, layout.write_positions] = new_keys.to(keys.dtype)
        values[layout.write_slots, :, layout.write_positions] = new_values.to(values.dtype)
        length = layout.kv_length
        return (
            keys[:, :, :length].index_select(0, layout.row_slots),
            values[:, :, :length].index_select(0, layout.row_slots),
        )

    def get_seq_length(self, layer_idx: int = 0) -> int:
        # Positions are always passed explicitly; nothing should rely on this.
        return 0

    # --- slot maintenance ----------------------------------------------------------------

    @torch.inference_mode()
    def copy_prefix(self, source: int, target: int, length: int) -> None:
        """Copy the first ``length`` positions of slot ``source`` into slot ``target``."""
        for store in (self._keys, self._values):
            for tensor in store.values():
                tensor[target, :, :length] = tensor[source, :, :length]

    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for t in (*self._keys.values(), *self._values.values())
        )

    def _layer(
        self, store: dict[int, torch.Tensor], layer_idx: int, like: torch.Tensor
    ) -> torch.Tensor:
        tensor = store.get(layer_idx)
        if tensor is None:
            # zeros, not empty: stale positions are masked, but must never hold NaN
            tensor = torch.zeros(
                (self.slots, like.shape[1], self.capacity, like.shape[3]),
                dtype=like.dtype,
                device=self.device,
            )
            store[layer_idx] = tensor
        return tensor

    def _grow(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        capacity = min(self.max_length, max(needed, self.capacity * 2, MIN_CAPACITY))
        for store in (self._keys, self._values):
            for layer_idx, old in store.items():
                new = old.new_zeros((old.shape[0], old.shape[1], capacity, old.shape[3]))
                new[:, :, : self.capacity] = old
                store[layer_idx] = new
        self.capacity = capacity


@dataclass
class Slot:
    """What one KV slot holds: the tokens in it, and the live sequence using it (if any)."""

    index: int
    tokens: list[int] = field(default_factory=list)
    seq_id: int | None = None
    last_used: int = 0
    shareable: int | None = None
    """How many leading tokens another sequence may reuse (None: all). A prompt with images
    stops at its first image placeholder: the same placeholder ids stand for any image."""

    def prefix_with(self, tokens: Sequence[int]) -> int:
        length = common_prefix_length(self.tokens, tokens)
        return length if self.shareable is None else min(length, self.shareable)


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    limit = min(len(a), len(b))
    for i in range(limit):
        if a[i] != b[i]:
            return i
    return limit


class SlotTable:
    """Assigns slots to sequences and finds the longest cached prefix for a new one."""

    def __init__(self, slots: int) -> None:
        self.slots = [Slot(i) for i in range(slots)]
        self._clock = 0

    def tick(self) -> int:
        self._clock += 1
        return self._clock

    def live_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.slots if s.seq_id is not None)

    def free_slots(self) -> list[Slot]:
        return [s for s in self.slots if s.seq_id is None]

    def claim(
        self, seq_id: int, tokens: Sequence[int], *, shareable: int | None = None
    ) -> tuple[Slot, Slot | None, int]:
        """Pick a free slot for ``tokens``; return it, a slot to copy a prefix from, the length.

        At least one token is always left to feed. A free slot holding the longest prefix is
        reused in place; if a live slot holds a longer one, its prefix is copied instead.
        Among slots with no useful prefix the least recently used is evicted. ``shareable``
        limits what of ``tokens`` may be taken from, or later given to, another sequence.
        """
        free = self.free_slots()
        if not free:
            raise LookupError("no free slot")
        limit = len(tokens) - 1 if shareable is None else min(shareable, len(tokens) - 1)
        wanted = list(tokens[:limit])
        best_free = max(free, key=lambda s: (s.prefix_with(wanted), -s.last_used))
        free_length = best_free.prefix_with(wanted)
        copy_from: Slot | None = None
        copy_length = 0
        for slot in self.slots:
            if slot.seq_id is not None:
                length = slot.prefix_with(wanted)
                if length > copy_length:
                    copy_from, copy_length = slot, length
        if copy_from is not None and copy_length > free_length:
            target = min(free, key=lambda s: s.last_used) if free_length == 0 else best_free
            reused, source = copy_length, copy_from
        else:
            target = best_free if free_length > 0 else min(free, key=lambda s: s.last_used)
            reused, source = free_length, None
        target.seq_id = seq_id
        target.tokens = wanted[:reused]
        target.shareable = shareable
        target.last_used = self.tick()
        return target, source, reused
