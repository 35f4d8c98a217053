"""Index terms: words of a text, lightly normalised, then blinded with a keyed hash.

`words` lowercases, splits on anything that is not a letter or digit, drops single
characters (the ``s`` of "user's") and stop words, and strips common English suffixes (a
deliberately small stemmer: plural ``s``/``es``, ``ing``, ``ed``), so "cooking" finds
"cooks". `TermBlinder` maps each word to 12 letters of an
HMAC-SHA256 under a key derived from the master key: the full-text index (FTS5 or
tsvector) then counts and ranks terms exactly as it would the words — BM25 needs only
equality and frequencies — without a copy of the database revealing them. Its `fingerprint`
names the key, so entries blinded under an older master key are found and re-indexed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "ours",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "too",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
    ]
)
_TERM_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")
TERM_CHARS = 12


def stem(word: str) -> str:
    """A small suffix stripper: enough to join plurals and -ing/-ed forms."""
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ied"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """The normalised words of ``text`` that are worth indexing, in order."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [stem(w) for w in _WORD.findall(folded) if len(w) > 1 and w not in STOP_WORDS]


def normalize_text(text: str) -> str:
    """Text reduced to its words (for duplicate detection): case, spacing and punctuation
    do not make two facts different."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD.findall(folded))


class TermBlinder:
    """Blinds words with one key; equal words give equal terms."""

    def __init__(self, master_key: bytes) -> None:
        self._key = hmac.new(master_key, b"llmasos retrieval terms v1", hashlib.sha256).digest()
        self.fingerprint = hashlib.sha256(self._key).hexdigest()[:8]
        self._cache: dict[str, str] = {}

    def term(self, word: str) -> str:
        cached = self._cache.get(word)
        if cached is None:
            digest = hmac.new(self._key, word.encode(), hashlib.sha256).hexdigest()
            cached = digest[:TERM_CHARS].translate(_TERM_LETTERS)
            if len(self._cache) < 100_000:
                self._cache[word] = cached
        return cached

    def document_terms(self, text: str) -> str:
        """The space-separated terms of a text to index (order kept, repeats kept)."""
        return " ".join(self.term(w) for w in words(text))

    def query_terms(self, text: str) -> list[str]:
        """The distinct terms of a query, in order."""
        return list(dict.fromkeys(self.term(w) for w in words(text)))

    def keyed_hash(self, text: str) -> str:
        """A keyed hash of the normalised text (64 hex characters)."""
        return hmac.new(self._key, normalize_text(text).encode(), hashlib.sha256).hexdigest()
