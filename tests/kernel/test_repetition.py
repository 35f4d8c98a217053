"""The repetition guard: which token streams it stops, and which it lets through."""

from __future__ import annotations

import random

from llmasos.kernel.repetition import MAX_PERIOD, MIN_REPEATS, MIN_SPAN, RepetitionGuard


def feed(tokens: list[int]) -> int | None:
    """The position (1-based count of tokens fed) at which the guard fires, or None."""
    guard = RepetitionGuard()
    for count, token in enumerate(tokens, 1):
        if guard.add(token):
            return count
    return None


def test_a_single_token_repeated_fires_after_min_span() -> None:
    assert feed([5] * 200) == MIN_SPAN


def test_a_repeated_sentence_fires_on_its_fourth_copy() -> None:
    sentence = list(range(100, 130))  # 30 tokens
    prefix = list(range(1, 40))
    fired = feed(prefix + sentence * 6)
    assert fired == len(prefix) + MIN_REPEATS * len(sentence)


def test_a_paragraph_up_to_max_period_is_recognised() -> None:
    paragraph = list(range(1000, 1000 + MAX_PERIOD))
    assert feed(paragraph * 5) == MIN_REPEATS * MAX_PERIOD
    longer = list(range(1000, 1000 + MAX_PERIOD + 1))
    assert feed(longer * 5) is None


def test_varied_text_and_short_runs_do_not_fire() -> None:
    rng = random.Random(7)
    assert feed([rng.randrange(50) for _ in range(5000)]) is None
    # three copies of a long line, then something else: a list, not a loop
    line = list(range(200, 240))
    assert feed(line * 3 + list(range(300, 400))) is None
    # a short run of identical tokens (a separator line) below the span
    assert feed([1, 2, 3] + [9] * (MIN_SPAN - 2) + [4, 5]) is None


def test_the_guard_keeps_working_past_its_trimmed_window() -> None:
    rng = random.Random(3)
    text = [rng.randrange(10_000) for _ in range(3 * MAX_PERIOD)]
    fired = feed(text + [42] * 100)
    assert fired == len(text) + MIN_SPAN
