"""Structured output for the transformers backend: a token mask from llguidance.

`ConstraintCompiler` turns a `StructuredOutput` into a `TokenConstraint`, one per sequence:
``json_object`` and ``json_schema`` become llguidance JSON-schema grammars (``", "`` and
``": "`` separators and no other whitespace, so a small model cannot wander into endless
spaces), ``grammar`` (a llama.cpp GBNF text) is translated to Lark, and ``regex`` is used
as is. Before each draw
the constraint masks every token the grammar cannot accept next; once the value is
complete only end-of-generation remains allowed. A schema or grammar llguidance rejects
raises `InvalidRequestError` when the sequence is added.

llguidance is optional: without it, structured output raises `UnsupportedError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from llmasos.errors import InvalidRequestError, UnsupportedError
from llmasos.types import StructuredOutput

logger = logging.getLogger(__name__)

COMPACT_JSON: Any = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
"""llguidance JSON options: the separators OpenAI's models print, and no other whitespace."""


class TokenConstraint:
    """One sequence's grammar state: masks logits, advances on each chosen token."""

    def __init__(self, matcher: Any, vocab_size: int, eos_token: int) -> None:
        import llguidance.torch as llg_torch

        self._torch = llg_torch
        self._matcher = matcher
        self._eos = eos_token
        self._bitmask = llg_torch.allocate_token_bitmask(1, vocab_size)

    def apply(self, scores: torch.Tensor) -> None:
        """Set the logits of every token the grammar forbids to -inf, in place."""
        if self._matcher.is_stopped():
            keep = scores[self._eos].clone()
            scores.fill_(float("-inf"))
            scores[self._eos] = keep
            return
        self._torch.fill_next_token_bitmask(self._matcher, self._bitmask, 0)
        self._torch.apply_token_bitmask_inplace(
            scores.unsqueeze(0), self._bitmask.to(scores.device)
        )

    def accept(self, token: int) -> None:
        if self._matcher.is_stopped():
            return
        if not self._matcher.consume_token(token):
            logger.warning("grammar rejected token %d: %s", token, self._matcher.get_error())

    def replay(self, tokens: Sequence[int]) -> None:
        """Advance over tokens generated before a preemption."""
        for token in tokens:
            self.accept(token)


class ConstraintCompiler:
    """Builds `TokenConstraint`s for one tokenizer (the llguidance tokenizer is made once)."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_token: int) -> None:
        self._hf_tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._eos = eos_token
        self._ll_tokenizer: Any = None

    def compile(self, structured: StructuredOutput) -> TokenConstraint:
        try:
            import llguidance
            import llguidance.hf
            from llguidance.gbnf_to_lark import GbnfToLarkError, gbnf_to_lark
        except ImportError:
            raise UnsupportedError(
                "structured output with the transformers backend needs the llguidance "
                "package; install it or use the llama.cpp backend"
            ) from None
        matcher_class = llguidance.LLMatcher
        if structured.kind == "json_object":
            grammar = matcher_class.grammar_from_json_schema(
                {"type": "object"}, defaults=COMPACT_JSON
            )
        elif structured.kind == "json_schema":
            if structured.schema is None:
                raise InvalidRequestError("json_schema output needs a schema", param="schema")
            grammar = matcher_class.grammar_from_json_schema(
                structured.schema, defaults=COMPACT_JSON
            )
        elif structured.kind == "grammar":
            if not structured.grammar:
                raise InvalidRequestError("grammar output needs a grammar", param="grammar")
            try:
                grammar = matcher_class.grammar_from_lark(gbnf_to_lark(structured.grammar))
            except GbnfToLarkError as error:
                raise InvalidRequestError(f"invalid GBNF grammar: {error}") from None
        else:
            if not structured.regex:
                raise InvalidRequestError("regex output needs a pattern", param="regex")
            grammar = matcher_class.grammar_from_regex(structured.regex)
        problem = matcher_class.validate_grammar(grammar)
        if problem:
            raise InvalidRequestError(f"invalid {structured.kind} constraint: {problem}")
        if self._ll_tokenizer is None:
            self._ll_tokenizer = llguidance.hf.from_tokenizer(
                self._hf_tokenizer, n_vocab=self._vocab_size
            )
        matcher = matcher_class(self._ll_tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise InvalidRequestError(
                f"invalid {structured.kind} constraint: {matcher.get_error()}"
            )
        return TokenConstraint(matcher, self._vocab_size, self._eos)
