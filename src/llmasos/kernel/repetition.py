"""The repetition guard: stop a generation that has fallen into a loop.

Small models (and big ones at temperature 0) can repeat the same phrase until the context is
full, spending a batch slot on nothing. `RepetitionGuard` watches one request's output
tokens and fires when their tail is periodic: the same block of ``period`` tokens
(``1 <= period <= MAX_PERIOD``) repeated at least ``MIN_REPEATS`` times back to back,
covering at least ``MIN_SPAN`` tokens. It keeps, for every period, how many tokens in a row
have equalled the token ``period`` places earlier, so each new token costs ``MAX_PERIOD``
comparisons and nothing is rescanned. Text that merely reuses words, lists with a shared
prefix or a short run of identical lines does not fire; 4 copies of the same 30-token
sentence do. The engine runs it on every sampled token of every request whose
``SamplingParams.repetition_guard`` is on (the default; ``ignore_eos`` turns it off, and
grammar-constrained output, which max_tokens bounds, is not watched: cut short it would be
invalid JSON).
"""

from __future__ import annotations

MAX_PERIOD = 256
"""The longest repeated block recognised, in tokens (about a paragraph)."""
MIN_REPEATS = 4
"""Copies of the block, back to back, before the guard fires."""
MIN_SPAN = 64
"""Tokens the repeated text must cover before the guard fires (short runs are not loops)."""


class RepetitionGuard:
    """Per-request loop detector; feed it each output token with `add`."""

    __slots__ = ("_runs", "_tokens", "fired_period")

    def __init__(self) -> None:
        self._tokens: list[int] = []
        self._runs = [0] * (MAX_PERIOD + 1)
        """``_runs[p]``: tokens in a row equal to the token ``p`` places before them."""
        self.fired_period: int | None = None
        """The period of the loop that fired the guard, once it has."""

    def add(self, token: int) -> bool:
        """Record one output token; True when the output now ends in a loop."""
        tokens = self._tokens
        tokens.append(token)
        last = len(tokens) - 1
        runs = self._runs
        fired = False
        for period in range(1, min(MAX_PERIOD, last) + 1):
            if tokens[last - period] == token:
                run = runs[period] + 1
                runs[period] = run
                # ``run + period`` tokens are periodic with this period.
                span = run + period
                if not fired and span >= MIN_SPAN and span >= MIN_REPEATS * period:
                    fired = True
                    self.fired_period = period
            else:
                runs[period] = 0
        if len(tokens) > 2 * MAX_PERIOD:
            del tokens[: len(tokens) - MAX_PERIOD - 1]
        return fired
