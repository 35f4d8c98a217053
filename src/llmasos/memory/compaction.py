"""Fit a conversation into the model's context window without silently dropping anything.

`fit_context` assembles the chat messages for the next turn: the instructions, the running
summary of turns compacted earlier, earlier turns recalled for this input, the turns not
yet summarized, and the new input. Every size is counted exactly, with the model's own
tokenizer and chat template, through the kernel's `count_prompt` system call, never
estimated. When the prompt plus the output reserved (``max_output_tokens``) exceeds the
window, the oldest unsummarized turns are folded into a new running summary written by the
model itself: a kernel request under the user's tenant like any other (scheduled,
fair-shared; its token usage is returned so the caller meters it). Folding leaves half of
the free room free, so compaction does not fire again on the very next turn. The compacted
turns stay stored: the summary is a new item that says which position it covers, and
a recaller brings back the compacted turns most relevant to the new input: the shared hybrid
index's (`llmasos.memory.recall`) where the conversation is indexed, else `recall`, which
ranks by the rare words they share with it.
A turn that does not fit even with everything before it compacted is a
`ContextLengthExceededError` (400) that names both numbers.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmasos.errors import ContextLengthExceededError, LLMasOSError
from llmasos.kernel.interface import EngineClientInterface, GenerateRequest
from llmasos.memory.conversations import NewItem, StoredItem
from llmasos.memory.items import item_text, items_to_messages, summary_item, transcript_line
from llmasos.retrieval.terms import words
from llmasos.types import ChatMessage, SamplingParams

logger = logging.getLogger(__name__)

SUMMARY_MAX_TOKENS = 128
"""The longest summary the model is asked for (less on small windows: a window / 8)."""
DEFAULT_OUTPUT_RESERVE = 256
"""Output tokens kept free when the request gives no ``max_output_tokens`` (at most a
quarter of the window)."""
Recaller = Callable[[str, list[StoredItem], int], Awaitable[list[StoredItem]]]
"""``recall(query, compacted, limit)``: the compacted turns most relevant to ``query``, in
conversation order (`llmasos.memory.recall.ConversationIndex.recaller` searches the shared
index; without one, `recall` ranks by words alone)."""
RECALL_LIMIT = 3
RECALL_CHARS = 400
SUMMARY_HEADER = "Summary of the earlier conversation:"
RECALL_HEADER = "Earlier messages that may be relevant:"
SUMMARIZER_INSTRUCTIONS = (
    "You keep notes of a conversation for later. Write a short summary of it that keeps "
    "every fact, name, number, date and preference the user stated and every decision made. "
    "Write plain sentences, no preamble."
)


@dataclass(frozen=True)
class CompactionReport:
    """What one compaction did; the response reports it to the client."""

    summarized_items: int
    """Turns folded into the summary by this compaction."""
    summarized_through: int
    """Position of the last item the new summary covers."""
    tokens_before: int
    """Prompt tokens the turn would have needed without compaction."""
    tokens_after: int
    summary_requests: int
    prompt_tokens: int
    """Tokens the summarization requests read and wrote: metered to the user."""
    completion_tokens: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "summarized_items": self.summarized_items,
            "summarized_through_position": self.summarized_through,
            "prompt_tokens_before": self.tokens_before,
            "prompt_tokens_after": self.tokens_after,
            "summary_requests": self.summary_requests,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ContextPlan:
    """The messages for the next turn and how they were made to fit."""

    model: str
    messages: list[ChatMessage]
    prompt_tokens: int
    context_length: int
    output_reserve: int
    compaction: CompactionReport | None = None
    new_summary: NewItem | None = None
    """The summary item to store with the turn (when compaction ran)."""
    recalled: list[str] = field(default_factory=list)
    """Ids of compacted items brought back into the prompt for this input."""


@dataclass
class _Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ContextFitter:
    """One turn's fitting work: counts, summaries and recall over one conversation."""

    def __init__(
        self,
        engine: EngineClientInterface,
        *,
        model: str | None,
        tenant: str,
        tools: Sequence[dict[str, Any]] | None,
        instructions: str | None,
        keep_alive: float | str | None = "",
    ) -> None:
        self.engine = engine
        self.model = model
        self.tenant = tenant
        self.tools = tools
        self.instructions = instructions
        self.keep_alive = keep_alive
        self.usage = _Usage()
        self.counts = 0

    async def count(self, messages: list[ChatMessage], tools: bool = True) -> tuple[int, int, str]:
        """Exact prompt tokens of ``messages``; also the window and the model's name."""
        self.counts += 1
        result = await self.engine.count_prompt(
            GenerateRequest(
                model=self.model,
                messages=messages,
                tools=self.tools if tools else None,
                tenant=self.tenant,
                keep_alive=self.keep_alive,
            )
        )
        return result.prompt_tokens, result.context_length, result.model

    def assemble(
        self,
        summary: str,
        recalled: list[StoredItem],
        turns: list[StoredItem],
        new_items: list[dict[str, Any]],
    ) -> list[ChatMessage]:
        parts = [self.instructions] if self.instructions else []
        if summary:
            parts.append(f"{SUMMARY_HEADER}\n{summary}")
        if recalled:
            lines = [transcript_line(item.body)[:RECALL_CHARS] for item in recalled]
            parts.append(RECALL_HEADER + "\n" + "\n".join(lines))
        system: list[ChatMessage] = [{"role": "system", "content": "\n\n".join(parts)}]
        body = items_to_messages([i.body for i in turns] + new_items)
        return (system if parts else []) + body

    async def summarize(
        self, previous: str, items: list[StoredItem], budget: int, window: int
    ) -> str:
        """Fold ``items`` into ``previous``, as many per request as the window allows."""
        lines = [transcript_line(item.body) for item in items]
        summary = previous
        while lines:
            take = await self._lines_that_fit(summary, lines, budget, window)
            if take == 0:  # one line alone is too long for the summarizer: halve it
                half = len(lines[0]) // 2
                lines[:1] = [lines[0][:half], lines[0][half:]]
                continue
            summary = await self._summarize_once(summary, lines[:take], budget)
            lines = lines[take:]
        return summary

    def _summarizer_messages(self, previous: str, lines: list[str]) -> list[ChatMessage]:
        text = (f"Summary so far:\n{previous}\n\n" if previous else "") + "Conversation:\n"
        text += "\n".join(lines) + "\n\nUpdated summary:"
        return [
            {"role": "system", "content": SUMMARIZER_INSTRUCTIONS},
            {"role": "user", "content": text},
        ]

    async def _lines_that_fit(
        self, previous: str, lines: list[str], budget: int, window: int
    ) -> int:
        """The most leading lines whose summarization request fits the window (binary search)."""
        low, high = 0, len(lines)
        while low < high:
            middle = (low + high + 1) // 2
            tokens, _, _ = await self.count(
                self._summarizer_messages(previous, lines[:middle]), tools=False
            )
            if tokens + budget <= window:
                low = middle
            else:
                high = middle - 1
        return low

    async def _summarize_once(self, previous: str, lines: list[str], budget: int) -> str:
        request = GenerateRequest(
            model=self.model,
            messages=self._summarizer_messages(previous, lines),
            sampling=SamplingParams(temperature=0.0, max_tokens=budget),
            explicit=frozenset({"temperature", "max_tokens"}),
            tenant=self.tenant,
            keep_alive=self.keep_alive,
        )
        pieces: list[str] = []
        async for output in self.engine.generate(request):
            pieces.append(output.text)
            if output.finished:
                self.usage.requests += 1
                self.usage.prompt_tokens += output.prompt_tokens
                self.usage.completion_tokens += output.completion_tokens
        text = "".join(pieces).strip()
        return text or previous


def recall(query: str, candidates: list[StoredItem], limit: int = RECALL_LIMIT) -> list[StoredItem]:
    """The compacted items sharing the rarest words with ``query`` (BM25-like), in order."""
    terms = set(words(query))
    if not terms or not candidates:
        return []
    documents = [Counter(words(item_text(item.body))) for item in candidates]
    total = len(documents)
    average = sum(sum(d.values()) for d in documents) / total or 1.0
    scores: list[tuple[float, int]] = []
    for index, document in enumerate(documents):
        length = sum(document.values())
        score = 0.0
        for term in terms:
            frequency = document.get(term, 0)
            if not frequency:
                continue
            present = sum(1 for d in documents if term in d)
            idf = math.log(1 + (total - present + 0.5) / (present + 0.5))
            score += idf * frequency * 2.2 / (frequency + 1.2 * (0.25 + 0.75 * length / average))
        if score > 0:
            scores.append((score, index))
    best = sorted(scores, reverse=True)[:limit]
    return [candidates[index] for _, index in sorted(best, key=lambda pair: pair[1])]


async def _recall(
    recaller: Recaller | None, query: str, compacted: list[StoredItem]
) -> list[StoredItem]:
    if recaller is not None:
        try:
            return await recaller(query, compacted, RECALL_LIMIT)
        except LLMasOSError as error:  # no embedding model, say: words alone still recall
            logger.warning("recall through the shared index failed (%s); by words alone", error)
    return recall(query, compacted)


def _query_text(new_items: list[dict[str, Any]]) -> str:
    return " ".join(item_text(item) for item in new_items if item.get("role", "user") == "user")


async def fit_context(
    engine: EngineClientInterface,
    *,
    model: str | None,
    tenant: str,
    history: list[StoredItem],
    new_items: list[dict[str, Any]],
    instructions: str | None = None,
    tools: Sequence[dict[str, Any]] | None = None,
    max_output_tokens: int | None = None,
    keep_alive: float | str | None = "",
    label: str = "",
    recaller: Recaller | None = None,
) -> ContextPlan:
    """The messages for the next turn of ``history`` with ``new_items``, fitted to the window.

    ``history`` is every stored item in order (summaries included). Raises
    `ContextLengthExceededError` when the new turn cannot fit even after compaction.
    """
    fitter = ContextFitter(
        engine, model=model, tenant=tenant, tools=tools, instructions=instructions,
        keep_alive=keep_alive,
    )  # fmt: skip
    summaries = [item for item in history if item.is_summary]
    summary = summaries[-1] if summaries else None
    summary_text = _text(summary) if summary else ""
    covered = summary.summary_through if summary and summary.summary_through is not None else -1
    turns = [item for item in history if not item.is_summary and item.position > covered]
    compacted = [item for item in history if not item.is_summary and item.position <= covered]
    query = _query_text(new_items)
    recalled = await _recall(recaller, query, compacted)

    tokens, window, name = await fitter.count(
        fitter.assemble(summary_text, recalled, turns, new_items)
    )
    reserve = max_output_tokens or min(DEFAULT_OUTPUT_RESERVE, window // 4)
    plan = ContextPlan(name, [], tokens, window, reserve)
    if tokens + reserve <= window:
        plan.messages = fitter.assemble(summary_text, recalled, turns, new_items)
        plan.recalled = [item.id for item in recalled]
        return plan

    started = time.monotonic()
    before = tokens
    base, _, _ = await fitter.count(fitter.assemble("", [], [], new_items))
    if base + reserve > window:
        raise ContextLengthExceededError(
            f"this turn alone is {base} prompt tokens; with {reserve} output tokens reserved "
            f"(max_output_tokens) it needs {base + reserve}, more than {name}'s context window "
            f"of {window} tokens, even with every earlier turn compacted into a summary",
            param="input",
        )
    budget = max(16, min(SUMMARY_MAX_TOKENS, window // 8, (window - base - reserve) // 2))
    folded_through = covered
    folded = 0
    while True:
        # Fold the fewest oldest turns that leave half of the free room free.
        room = window - reserve - budget
        goal = base + max(0, room - base) // 2
        cut = await _smallest_cut(fitter, turns, new_items, goal)
        while cut < len(turns) and turns[cut].type == "function_call_output":
            cut += 1  # a call and its output stay together
        fold, turns = turns[:cut], turns[cut:]
        if fold:
            summary_text = await fitter.summarize(summary_text, fold, budget, window)
            folded += len(fold)
            folded_through = fold[-1].position
            compacted += fold
        recalled = await _recall(recaller, query, compacted)
        while True:
            messages = fitter.assemble(summary_text, recalled, turns, new_items)
            tokens, _, _ = await fitter.count(messages)
            if tokens + reserve <= window or not recalled:
                break
            recalled = recalled[:-1]
        if tokens + reserve <= window:
            break
        if not turns:
            raise ContextLengthExceededError(
                f"this turn needs {tokens} prompt tokens with the summary of the earlier "
                f"conversation; with {reserve} output tokens reserved that is more than "
                f"{name}'s context window of {window} tokens",
                param="input",
            )
    plan.messages = messages
    plan.prompt_tokens = tokens
    plan.recalled = [item.id for item in recalled]
    if folded:
        plan.new_summary = NewItem(summary_item(summary_text), summary_through=folded_through)
        plan.compaction = CompactionReport(
            summarized_items=folded,
            summarized_through=folded_through,
            tokens_before=before,
            tokens_after=tokens,
            summary_requests=fitter.usage.requests,
            prompt_tokens=fitter.usage.prompt_tokens,
            completion_tokens=fitter.usage.completion_tokens,
            seconds=time.monotonic() - started,
        )
        logger.info(
            "compacted %d items of %s into a running summary: %d -> %d prompt tokens "
            "(window %d, %d summary requests, %.1f s)",
            folded, label or "a conversation", before, tokens, window,
            fitter.usage.requests, plan.compaction.seconds,
        )  # fmt: skip
    return plan


async def _smallest_cut(
    fitter: ContextFitter, turns: list[StoredItem], new_items: list[dict[str, Any]], goal: int
) -> int:
    """The fewest leading turns to fold so the rest (with the input) is at most ``goal``
    tokens; all of them when no cut reaches it. Binary search over exact counts."""
    low, high = 1, len(turns)
    if high == 0:
        return 0
    while low < high:
        middle = (low + high) // 2
        tokens, _, _ = await fitter.count(fitter.assemble("", [], turns[middle:], new_items))
        if tokens <= goal:
            high = middle
        else:
            low = middle + 1
    return low


def _text(item: StoredItem) -> str:
    return "\n".join(str(p.get("text", "")) for p in item.body.get("content", []))
