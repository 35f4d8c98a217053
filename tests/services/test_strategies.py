"""Sentence handling, question-matched context and calibration (`services.strategies`)."""

from __future__ import annotations

import math

import pytest

from llmasos.services import strategies


def test_sentences_split_at_ends_but_not_inside_numbers_or_before_lower_case() -> None:
    text = "It costs 3.50 euros. Dr. Smith agreed! Was it e.g. cheap? 我头疼。我发烧。"
    assert strategies.split_sentences(text) == [
        "It costs 3.50 euros.",
        "Dr.",
        "Smith agreed!",
        "Was it e.g. cheap?",
        "我头疼。",
        "我发烧。",
    ]
    assert strategies.keep_sentences("A b. C d. E f.", 2) == "A b. C d."
    assert strategies.keep_sentences("A b. C d.", 5) == "A b. C d."


def test_best_sentences_keep_the_context_order() -> None:
    context = "Bees dance. The angle gives the direction. The length gives the distance."
    assert strategies.best_sentences(context, "What does the length tell?") == (
        "The length gives the distance."
    )
    two = strategies.best_sentences(context, "What do length and angle give?", 2)
    assert two == "The angle gives the direction. The length gives the distance."
    assert strategies.best_sentences("Only one.", "anything", 2) == "Only one."


def test_calibration_divides_out_the_content_free_preference() -> None:
    scores = [math.log(0.6), math.log(0.3), math.log(0.1)]
    probabilities = strategies.calibrate(scores, [0.0, 0.0, 0.0])  # a uniform prior
    assert probabilities == pytest.approx([0.6, 0.3, 0.1])
    leaning = strategies.calibrate(scores, [math.log(0.8), math.log(0.1), math.log(0.1)])
    assert sum(leaning) == pytest.approx(1.0) and leaning.index(max(leaning)) == 1


def test_prior_cache_drops_the_least_recently_used() -> None:
    cache = strategies.PriorCache(size=2)
    cache.put("a", [1.0])
    cache.put("b", [2.0])
    assert cache.get("a") == [1.0]
    cache.put("c", [3.0])
    assert cache.get("b") is None and cache.get("a") == [1.0] and cache.get("c") == [3.0]
