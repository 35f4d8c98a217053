"""Incremental detokenization with stop strings.

Tokens arrive one at a time as bytes that may split a UTF-8 character; text is released
only once complete. Text that could be the start of a stop string is held back until it is
known not to be one, so a stop string never reaches the client, not even in part.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence


class IncrementalDetokenizer:
    def __init__(self, token_bytes: Callable[[int], bytes], stop: Sequence[str] = ()) -> None:
        self._token_bytes = token_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = [s for s in stop if s]
        self._held = ""
        self.stopped = False

    def add(self, token: int) -> str:
        """Feed a token; return the text that is now safe to emit."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(self._token_bytes(token))
        if not self._stop:
            self._held = ""
            return text
        hits = [(text.find(s), s) for s in self._stop if s in text]
        if hits:
            index = min(i for i, _ in hits)
            self.stopped = True
            self._held = ""
            return text[:index]
        hold = 0
        for stop in self._stop:
            for length in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:length]):
                    hold = max(hold, length)
                    break
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """At the end of generation: whatever is held back, plus any partial character."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return text
