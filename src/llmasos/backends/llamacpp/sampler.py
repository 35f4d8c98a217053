"""Per-sequence sampling for the llama.cpp backend: one native sampler chain per sequence.

`SamplerChain.build` turns `SamplingParams` into a llama.cpp chain, in this order: logit
bias, penalties, then greedy, or top-k, top-p, min-p, temperature and a seeded ``dist``
sampler. A grammar (structured output) is a separate native sampler beside the chain: the
token is sampled unconstrained and only that one token is checked against the grammar; the
whole vocabulary is masked only when it is rejected (see `SamplerChain.sample`). The chain and
grammar keep what makes sampling resumable: penalty history, grammar parse state, the RNG.

The accept hazard: ``llama_sampler_sample`` already *accepts* the token it returns into the
chain. Accepting a token twice advances a grammar past a piece that is not there, and
llama.cpp answers with a C++ exception that aborts the process. So every path accepts each
token exactly once, and `replay` (re-feeding tokens generated before a preemption) checks each
token against the grammar first, so that a bad one gives `InvalidRequestError`, not a crash.

`token_logprobs` computes log-softmax of raw logits with numpy, for sequences that ask.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from typing import Any

import llama_cpp
import numpy as np

from llmasos.backends.grammar import structured_output_to_gbnf
from llmasos.backends.interface import TokenLogprob
from llmasos.errors import BackendError, InvalidRequestError
from llmasos.types import SamplingParams

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
"""The memory layout of ``llama_token_data``, so numpy can fill candidate arrays."""


class SamplerChain:
    """A native llama.cpp sampler chain owned by one sequence; call `free` when done."""

    def __init__(self, chain: Any, n_vocab: int) -> None:
        self._chain = chain
        self._grammar: Any | None = None  # kept out of the chain, see `sample`
        self._n_vocab = n_vocab
        self._candidates: np.ndarray[Any, Any] | None = None

    @classmethod
    def build(cls, params: SamplingParams, vocab: Any, n_vocab: int) -> SamplerChain:
        """The chain for ``params``; `InvalidRequestError` for a grammar llama.cpp rejects."""
        grammar_text = (
            structured_output_to_gbnf(params.structured) if params.structured is not None else None
        )
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if not chain:
            raise BackendError("llama.cpp could not create a sampler chain")
        self = cls(chain, n_vocab)
        try:
            self._add_stages(params, vocab, n_vocab, grammar_text)
        except BaseException:
            self.free()
            raise
        return self

    def _add(self, sampler: Any) -> None:
        if not sampler:
            raise BackendError("llama.cpp could not create a sampler")
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def _add_stages(
        self, params: SamplingParams, vocab: Any, n_vocab: int, grammar_text: str | None
    ) -> None:
        if params.logit_bias:
            valid = {t: b for t, b in params.logit_bias.items() if 0 <= int(t) < n_vocab}
            if len(valid) != len(params.logit_bias):
                raise InvalidRequestError(
                    f"logit_bias names a token outside the vocabulary (0..{n_vocab - 1})",
                    param="logit_bias",
                )
            biases = (llama_cpp.llama_logit_bias * len(valid))()
            for i, (token, bias) in enumerate(valid.items()):
                biases[i].token = int(token)  # type: ignore[assignment]
                biases[i].bias = -math.inf if bias <= -100 else float(bias)
            self._add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(valid), biases))
        if (
            params.repetition_penalty != 1.0
            or params.frequency_penalty != 0.0
            or params.presence_penalty != 0.0
        ):
            self._add(
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab,
                    params.penalty_last_n,
                    params.repetition_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                )
            )
        if grammar_text is not None:
            grammar = llama_cpp.llama_sampler_init_grammar(
                vocab, grammar_text.encode("utf-8"), b"root"
            )
            if not grammar:
                raise InvalidRequestError(
                    "the grammar does not parse as llama.cpp GBNF (it needs a 'root' rule)",
                    param="grammar",
                )
            self._grammar = grammar
        if params.greedy:
            self._add(llama_cpp.llama_sampler_init_greedy())
            return
        if params.top_k > 0:
            self._add(llama_cpp.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            self._add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            self._add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        self._add(llama_cpp.llama_sampler_init_temp(params.temperature))
        seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
        self._add(llama_cpp.llama_sampler_init_dist(seed))

    def sample(self, ctx: Any, index: int) -> int:
        """Sample from output row ``index`` of the last decode and accept it, exactly once."""
        if self._grammar is None:
            # llama_sampler_sample accepts the token into the chain itself.
            return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))
        # Grammar: sample unconstrained, then check only that token against the grammar;
        # only if it is rejected, mask the whole vocabulary with the grammar and sample again.
        # Checking one token is cheap, masking 50k is not; the resulting distribution is the
        # same (p(t) for an allowed t, plus (1 - Z) * p(t) / Z from the resample, is p(t) / Z).
        logits = llama_cpp.llama_get_logits_ith(ctx, index)
        token = self._apply(logits, with_grammar=False)
        if not self._grammar_allows(token):
            token = self._apply(logits, with_grammar=True)
        llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token

    def _apply(self, logits: Any, *, with_grammar: bool) -> int:
        """Run the chain (the grammar first, if asked) over the whole vocabulary's logits."""
        if self._candidates is None:
            self._candidates = np.zeros(self._n_vocab, dtype=_TOKEN_DATA)
        candidates = self._candidates
        candidates["id"] = np.arange(self._n_vocab, dtype=np.int32)
        candidates["logit"] = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        candidates["p"] = 0.0
        array = llama_cpp.llama_token_data_array(
            data=candidates.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=self._n_vocab,
            selected=-1,
            sorted=False,
        )
        if with_grammar:
            llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(array))
        if not 0 <= array.selected < array.size:
            raise BackendError("the sampler chain selected no token")
        # Samplers may replace the data pointer, so read through the struct, not the buffer.
        return int(array.data[array.selected].id)

    def replay(self, tokens: Sequence[int]) -> None:
        """Accept previously generated tokens so penalties and grammar resume after them."""
        for token in tokens:
            if self._grammar is not None and not self._grammar_allows(int(token)):
                raise InvalidRequestError(
                    f"generated token {token} does not fit the request's grammar",
                    param="generated",
                )
            if self._grammar is not None:
                llama_cpp.llama_sampler_accept(self._grammar, int(token))
            llama_cpp.llama_sampler_accept(self._chain, int(token))

    def _grammar_allows(self, token: int) -> bool:
        candidate = llama_cpp.llama_token_data(id=token, logit=0.0, p=0.0)
        array = llama_cpp.llama_token_data_array(
            data=ctypes.pointer(candidate), size=1, selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return bool(candidate.logit != -math.inf)

    def free(self) -> None:
        if self._grammar:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None
        if self._chain:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None


def token_logprobs(
    logits_pointer: Any, n_vocab: int, token: int, top_n: int
) -> tuple[float, tuple[TokenLogprob, ...]]:
    """The chosen token's log-probability and the ``top_n`` most likely, best first."""
    logits = np.ctypeslib.as_array(logits_pointer, shape=(n_vocab,)).astype(np.float64)
    shifted = logits - logits.max()
    logprobs = shifted - math.log(float(np.exp(shifted).sum()))
    chosen = float(logprobs[token])
    if top_n <= 0:
        return chosen, ()
    top = np.argpartition(-logprobs, top_n - 1)[:top_n]
    top = top[np.argsort(-logprobs[top], kind="stable")]
    return chosen, tuple(TokenLogprob(int(t), float(logprobs[t])) for t in top)
