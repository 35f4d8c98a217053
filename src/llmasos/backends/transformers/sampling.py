"""Per-sequence token sampling in torch for the transformers backend.

`SequenceSampler` turns one row of raw logits into a token, following `SamplingParams`:

1. ``logit_bias`` is added;
2. ``repetition_penalty`` (HF style, multiplicative) over the last ``penalty_last_n``
   tokens of the whole sequence (prompt and output);
3. ``presence_penalty`` / ``frequency_penalty`` (OpenAI style, additive) over the last
   ``penalty_last_n`` *generated* tokens;
4. the structured-output constraint (if any) masks tokens the grammar forbids;
5. greedy argmax when ``temperature == 0``; otherwise temperature, then ``top_k``,
   ``top_p`` and ``min_p`` truncation, and a draw from the sequence's own seeded
   ``torch.Generator`` (same seed, same tokens).

``penalty_last_n`` follows llama.cpp: 0 disables the penalties' window, -1 means all tokens.
Log-probabilities are those of the raw logits (before any of the steps above), as in
OpenAI's API. The sampler remembers the generated tokens; after a preemption the kernel
replays them through the constructor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from llmasos.backends.interface import TokenLogprob
from llmasos.errors import InvalidRequestError
from llmasos.types import SamplingParams

if TYPE_CHECKING:
    from llmasos.backends.transformers.structured import TokenConstraint


def _window(tokens: Sequence[int], last_n: int) -> Sequence[int]:
    if last_n == 0:
        return ()
    if last_n < 0:
        return tokens
    return tokens[-last_n:]


class SequenceSampler:
    """Sampling state of one sequence: its parameters, RNG and generated tokens."""

    def __init__(
        self,
        params: SamplingParams,
        *,
        vocab_size: int,
        device: torch.device,
        generated: Sequence[int] = (),
        constraint: TokenConstraint | None = None,
    ) -> None:
        bad = [t for t in params.logit_bias if not 0 <= int(t) < vocab_size]
        if bad:
            raise InvalidRequestError(
                f"logit_bias names token {bad[0]}, outside the vocabulary (0-{vocab_size - 1})",
                param="logit_bias",
            )
        self.params = params
        self.vocab_size = vocab_size
        self.device = device
        self.generated: list[int] = list(generated)
        self.constraint = constraint
        if constraint is not None:
            constraint.replay(generated)
        self.generator = torch.Generator(device=device)
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()
        self._bias_ids: torch.Tensor | None = None
        self._bias_values: torch.Tensor | None = None
        if params.logit_bias:
            self._bias_ids = torch.tensor(
                [int(t) for t in params.logit_bias], dtype=torch.long, device=device
            )
            self._bias_values = torch.tensor(
                list(params.logit_bias.values()), dtype=torch.float32, device=device
            )

    def sample(
        self, logits: torch.Tensor, context: Sequence[int]
    ) -> tuple[int, float | None, tuple[TokenLogprob, ...]]:
        """Choose the next token from ``logits`` (``[vocab]``) given the sequence so far.

        Returns the token, its log-probability and the top alternatives (when asked for).
        The token is recorded as generated.
        """
        params = self.params
        raw = logits.float()
        scores = self._penalized(raw.clone(), context)
        if self.constraint is not None:
            self.constraint.apply(scores)
        token = int(torch.argmax(scores).item()) if params.greedy else self._draw(scores)
        if self.constraint is not None:
            self.constraint.accept(token)
        self.generated.append(token)
        if params.logprobs is None:
            return token, None, ()
        logprobs = torch.log_softmax(raw, dim=-1)
        chosen = float(logprobs[token].item())
        top: tuple[TokenLogprob, ...] = ()
        if params.logprobs > 0:
            values, ids = torch.topk(logprobs, params.logprobs)
            top = tuple(
                TokenLogprob(token=int(i), logprob=float(v))
                for v, i in zip(values.tolist(), ids.tolist(), strict=True)
            )
        return token, chosen, top

    def _penalized(self, scores: torch.Tensor, context: Sequence[int]) -> torch.Tensor:
        params = self.params
        if self._bias_ids is not None and self._bias_values is not None:
            scores.index_add_(0, self._bias_ids, self._bias_values)
        if params.repetition_penalty != 1.0:
            seen = _window(context, params.penalty_last_n)
            if seen:
                ids = torch.tensor(sorted(set(seen)), dtype=torch.long, device=scores.device)
                ids = ids[ids < scores.shape[0]]
                picked = scores[ids]
                penalty = params.repetition_penalty
                scores[ids] = torch.where(picked > 0, picked / penalty, picked * penalty)
        if params.presence_penalty != 0.0 or params.frequency_penalty != 0.0:
            recent = _window(self.generated, params.penalty_last_n)
            if recent:
                ids_list = torch.tensor(list(recent), dtype=torch.long, device=scores.device)
                ids, counts = torch.unique(ids_list, return_counts=True)
                keep = ids < scores.shape[0]
                ids, counts = ids[keep], counts[keep]
                scores[ids] -= counts.float() * params.frequency_penalty + params.presence_penalty
        return scores

    def _draw(self, scores: torch.Tensor) -> int:
        params = self.params
        scores = scores / params.temperature
        if 0 < params.top_k < scores.shape[0]:
            threshold = torch.topk(scores, params.top_k).values[-1]
            scores = scores.masked_fill(scores < threshold, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if params.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            cumulative = torch.cumsum(sorted_probs, dim=-1)
            # drop a token when the tokens before it already reach top_p (the first stays)
            drop_sorted = (cumulative - sorted_probs) >= params.top_p
            drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
            probs = probs.masked_fill(drop, 0.0)
        if params.min_p > 0.0:
            probs = probs.masked_fill(probs < params.min_p * probs.max(), 0.0)
        total = probs.sum()
        if not torch.isfinite(total) or total <= 0:
            return int(torch.argmax(scores).item())
        return int(torch.multinomial(probs / total, 1, generator=self.generator).item())
