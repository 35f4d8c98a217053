"""Scoring functions for evaluations: pure functions of predictions and references.

Every score is on a 0-100 scale (percent) so tables read alike. ROUGE-L comes from Google's
``rouge-score`` and chrF/BLEU from ``sacrebleu`` (the ``eval`` extra; imported lazily), so
the figures match what other tools report; the rest (SQuAD-style exact match and token F1,
containment, accuracy, JSON validity and field accuracy, sentence counting) are small enough
to state here. Nothing in this module calls a model.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation) | set("，。！？；：、（）“”‘’")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+|(?<=[。！？])")


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no English articles, single spaces (SQuAD's rule)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return 100.0 if normalize_answer(prediction) == normalize_answer(reference) else 0.0


def contains(prediction: str, reference: str) -> float:
    """100 when the normalized reference occurs in the normalized prediction."""
    wanted = normalize_answer(reference)
    return 100.0 if wanted and f" {wanted} " in f" {normalize_answer(prediction)} " else 0.0


def token_f1(prediction: str, reference: str) -> float:
    """F1 of the bag of normalized words (SQuAD)."""
    predicted = normalize_answer(prediction).split()
    wanted = normalize_answer(reference).split()
    if not predicted or not wanted:
        return 100.0 if predicted == wanted else 0.0
    common = sum((Counter(predicted) & Counter(wanted)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(wanted)
    return 100.0 * 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of stemmed words)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return 100.0 * float(scorer.score(reference, prediction)["rougeL"].fmeasure)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (character n-gram F-score; fair to Chinese, which has no spaces)."""
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU with sacrebleu's ``zh`` tokenizer: Chinese by character, the rest as 13a."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)], tokenize="zh").score)


def accuracy(predictions: Sequence[Any], references: Sequence[Any]) -> float:
    if not references:
        return 0.0
    hits = sum(1 for p, r in zip(predictions, references, strict=True) if p == r)
    return 100.0 * hits / len(references)


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in ``text`` (the whole text, else its first ``{...}`` block), or None."""
    candidates = [text.strip()]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _same_value(predicted: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(predicted, bool):
        return type(predicted) is type(wanted) and predicted == wanted
    if isinstance(wanted, int | float):
        try:
            return abs(float(predicted) - float(wanted)) < 1e-6
        except (TypeError, ValueError):
            return False
    if isinstance(wanted, str):
        return isinstance(predicted, str) and normalize_answer(predicted) == normalize_answer(
            wanted
        )
    return bool(predicted == wanted)


def field_accuracy(prediction: Mapping[str, Any] | None, reference: Mapping[str, Any]) -> float:
    """Percent of the reference's fields the prediction has with the same value (strings
    compared normalized, numbers numerically); an unparsable prediction scores 0."""
    if not reference:
        return 100.0
    if not isinstance(prediction, Mapping):
        return 0.0
    hits = sum(1 for k, v in reference.items() if k in prediction and _same_value(prediction[k], v))
    return 100.0 * hits / len(reference)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: breaks after . ! ? (and the CJK 。！？), blank-free."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s and s.strip()]


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def paired_lower_p(candidate: Sequence[float], reference: Sequence[float]) -> float:
    """One-sided p-value that ``candidate`` scores lower than ``reference`` on the same items.

    A paired permutation test (each item's two scores swapped or not; exact when the items
    that differ are few, else 9,999 seeded resamples) of the mean per-item difference, from
    SciPy. 1.0 when no item differs. For 0/100 scores (accuracy) it is McNemar's exact test
    in effect: only the items the two systems score differently count."""
    import numpy as np
    from scipy.stats import permutation_test

    if len(candidate) != len(reference):
        raise ValueError("paired scores need as many candidate scores as reference scores")
    differences = [c - r for c, r in zip(candidate, reference, strict=True) if c != r]
    if not differences:
        return 1.0
    if len(differences) == 1:  # two equally likely signs (SciPy wants two observations)
        return 0.5 if differences[0] < 0 else 1.0
    result = permutation_test(
        (differences,),
        lambda d, axis=-1: np.mean(d, axis=axis),
        permutation_type="samples",
        alternative="less",
        n_resamples=9_999,
        rng=0,
        vectorized=True,
    )
    return float(result.pvalue)
