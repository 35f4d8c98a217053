"""How services do better than one sampled reply: scored choices, sentence-wise runs, text
helpers for templates.

* `calibrated_choice`: each option's likelihood as the model's reply, from the kernel's
  teacher-forced scores (`EngineClientInterface.score`), divided by its likelihood after a
  content-free input and normalized (Zhao et al., "Calibrate Before Use", 2021). The
  content-free scores depend only on the prompt template and the options, so they are kept
  per (model, messages) in a small cache.
* `split_sentences` / `keep_sentences`: sentence boundaries (. ! ? and the CJK 。！？) that
  never split inside a decimal number or an abbreviation followed by a lower-case word.
* `central_sentences`: which sentences' embeddings are closest to the whole text's (the
  extractive summary);
* `best_sentences`: the sentences of a context that share the most words with a question,
  in their original order (the ``best_sentences`` Jinja filter of service templates);
  `supported`: whether an answer's content words come from the context.
"""

from __future__ import annotations

import math
import re
from collections import Counter, OrderedDict
from collections.abc import Sequence

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[^a-z\s])|(?<=[。！？])\s*")
_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "by",
        "with",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "do",
        "does",
        "did",
        "what",
        "who",
        "whom",
        "which",
        "when",
        "where",
        "why",
        "how",
        "much",
        "many",
        "long",
        "far",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "from",
        "as",
        "into",
        "than",
        "then",
        "there",
        "their",
        "they",
        "he",
        "she",
        "his",
        "her",
        "you",
        "your",
        "i",
        "we",
        "our",
        "us",
        "will",
        "would",
        "should",
        "can",
        "could",
        "has",
        "have",
        "had",
        "not",
        "no",
    ]
)
CONTENT_FREE_TEXT = "N/A"
"""The input that says nothing (the calibration reference)."""


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, in order; a text without an end mark is one."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def keep_sentences(text: str, limit: int) -> str:
    """``text`` cut after its ``limit``-th sentence (unchanged when it has no more)."""
    sentences = split_sentences(text)
    if len(sentences) <= limit:
        return text.strip()
    return " ".join(sentences[:limit])


def central_sentences(
    whole: Sequence[float], sentences: Sequence[Sequence[float]], count: int
) -> list[int]:
    """The indexes, in order, of the ``count`` sentence embeddings with the highest cosine to
    the embedding of the ``whole`` text (earlier sentences win ties)."""

    def norm(vector: Sequence[float]) -> float:
        return math.sqrt(sum(x * x for x in vector)) or 1.0

    centre = norm(whole)

    def cosine(vector: Sequence[float]) -> float:
        return sum(a * b for a, b in zip(whole, vector, strict=True)) / (centre * norm(vector))

    ranked = sorted(range(len(sentences)), key=lambda i: (-cosine(sentences[i]), i))
    return sorted(ranked[:count])


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def best_sentences(context: str, question: str, count: int = 1) -> str:
    """The ``count`` sentences of ``context`` that best match ``question`` (shared content
    words, rarer words weighing more), joined in the context's order."""
    sentences = split_sentences(context)
    if len(sentences) <= count:
        return context.strip()
    wanted = set(_content_words(question))
    frequency = Counter(w for s in sentences for w in set(_content_words(s)))

    def score(sentence: str) -> float:
        words = set(_content_words(sentence))
        return sum(1.0 / frequency[w] for w in words & wanted)

    ranked = sorted(range(len(sentences)), key=lambda i: (-score(sentences[i]), i))[:count]
    return " ".join(sentences[i] for i in sorted(ranked))


def supported(answer: str, context: str, share: float = 0.75) -> bool:
    """Whether at least ``share`` of the answer's content words occur in ``context`` (an
    answer a small model invents fails this; a larger model's faithful answer passes)."""
    words = _content_words(answer)
    if not words:
        return False
    known = set(_content_words(context))
    return sum(1 for w in words if w in known) >= share * len(words)


def normalize(logprobs: Sequence[float]) -> list[float]:
    """Probabilities proportional to ``exp(logprobs)`` (summing to 1)."""
    top = max(logprobs)
    weights = [math.exp(v - top) for v in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


def calibrate(scores: Sequence[float], content_free: Sequence[float]) -> list[float]:
    """Probabilities of the options after dividing out their content-free likelihood."""
    prior = normalize(content_free)
    return normalize([s - math.log(max(p, 1e-12)) for s, p in zip(scores, prior, strict=True)])


class PriorCache:
    """Content-free option scores by key (least recently used dropped past ``size``)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[str, list[float]] = OrderedDict()

    def get(self, key: str) -> list[float] | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: list[float]) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
