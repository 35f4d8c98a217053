"""The evaluation metrics (`llmasos.toolchain.metrics`): pure functions, no model."""

from __future__ import annotations

import pytest

from llmasos.toolchain import metrics


def test_answer_metrics_normalize_case_punctuation_and_articles() -> None:
    assert metrics.normalize_answer("The  Ming Dynasty!") == "ming dynasty"
    assert metrics.exact_match("the Ming dynasty.", "Ming dynasty") == 100.0
    assert metrics.exact_match("Ming", "Ming dynasty") == 0.0
    assert metrics.contains("It was built under the Ming dynasty.", "the Ming dynasty") == 100.0
    assert metrics.contains("Mingle", "Ming") == 0.0  # whole words only
    assert metrics.token_f1("Ming dynasty", "the Ming dynasty") == 100.0
    assert metrics.token_f1("the Ming", "Ming dynasty") == pytest.approx(66.667, abs=0.01)
    assert metrics.token_f1("", "x") == 0.0 and metrics.token_f1("", "") == 100.0


def test_rouge_l_chrf_and_bleu_use_the_reference_implementations() -> None:
    assert metrics.rouge_l("the cat sat on the mat", "the cat sat on the mat") == 100.0
    assert metrics.rouge_l("dogs bark", "the cat sat on the mat") == 0.0
    partial = metrics.rouge_l("the cat sat", "the cat sat on the mat")
    assert 0 < partial < 100
    assert metrics.chrf(["Le chat dort."], ["Le chat dort."]) == pytest.approx(100.0)
    assert metrics.chrf(["xyz"], ["Le chat dort."]) < 10
    assert metrics.bleu(["我喜欢喝茶。"], ["我喜欢喝茶。"]) == pytest.approx(100.0)
    assert metrics.bleu(["a b c d"], ["w x y z"]) == 0.0


def test_json_and_field_accuracy() -> None:
    assert metrics.parse_json_object('{"a": 1}') == {"a": 1}
    assert metrics.parse_json_object('Here: {"a": 1} done') == {"a": 1}
    assert metrics.parse_json_object("[1, 2]") is None and metrics.parse_json_object("no") is None
    reference = {"name": "Maria Lopez", "age": 34, "price": 39.99}
    same = {"name": "maria lopez", "age": "34", "price": 39.99}
    assert metrics.field_accuracy(same, reference) == 100.0
    assert metrics.field_accuracy({"name": "Maria", "age": 34}, reference) == pytest.approx(100 / 3)
    assert metrics.field_accuracy(None, reference) == 0.0
    assert metrics.field_accuracy({"age": True}, {"age": 1}) == 0.0


def test_accuracy_and_sentences() -> None:
    assert metrics.accuracy(["a", "b", None], ["a", "a", "a"]) == pytest.approx(100 / 3)
    assert metrics.split_sentences("One. Two! Three? ") == ["One.", "Two!", "Three?"]
    assert metrics.count_sentences("我头疼。我发烧了。") == 2
    assert metrics.count_sentences("") == 0 and metrics.mean([]) == 0.0


def test_paired_lower_p_counts_only_the_items_that_differ() -> None:
    same = [100.0] * 10
    assert metrics.paired_lower_p(same, same) == 1.0
    assert metrics.paired_lower_p([0.0, *same], [100.0, *same]) == 0.5  # one item: a coin
    assert metrics.paired_lower_p([100.0, *same], [0.0, *same]) == 1.0
    # McNemar's exact one-sided test: 3 lost and 2 won of 5 differing items, then 9 lost
    assert metrics.paired_lower_p([0.0] * 3 + [100.0] * 2, [100.0] * 3 + [0.0] * 2) == 0.5
    assert metrics.paired_lower_p([0.0] * 9, [100.0] * 9) == pytest.approx(1 / 512)
    with pytest.raises(ValueError):
        metrics.paired_lower_p([1.0], [1.0, 2.0])
