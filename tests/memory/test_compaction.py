"""`fit_context` over a scripted kernel: when it compacts, what it keeps, what it refuses.

The fake kernel counts one token per word (plus 3 per message) and "summarizes" by keeping
the words that contain a digit, so every assertion is about the fitting logic, not a model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from llmasos.errors import ContextLengthExceededError
from llmasos.kernel.interface import (
    EmbedResult,
    EngineClientInterface,
    GenerateOutput,
    GenerateRequest,
    JobRequest,
    PromptCount,
    ResidentModel,
)
from llmasos.kernel.lanes import JobLanes
from llmasos.memory import StoredItem, fit_context, input_items
from llmasos.memory.items import item_text, message_item


def words(messages: Sequence[dict[str, Any]]) -> int:
    return sum(3 + len(str(m.get("content", "")).split()) for m in messages)


T = TypeVar("T")


class CountingKernel(EngineClientInterface):
    def __init__(self, window: int) -> None:
        self.lanes = JobLanes(workers=1, max_waiting=64, tokens_per_second=0.0)
        self.window = window
        self.generated: list[GenerateRequest] = []

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        return PromptCount("fake", words(request.messages or []), self.window)

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        self.generated.append(request)
        text = str((request.messages or [{}])[-1]["content"])
        kept = " ".join(w for w in text.split() if any(c.isdigit() for c in w))

        async def run() -> AsyncIterator[GenerateOutput]:
            yield GenerateOutput(
                request_id=request.request_id, model="fake", text=kept or "nothing",
                finished=True, finish_reason="stop", prompt_tokens=words(request.messages or []),
                completion_tokens=len(kept.split()),
            )  # fmt: skip

        return run()

    async def abort(self, request_id: str) -> None:
        pass

    async def embed(self, model: str | None, texts: Sequence[str]) -> EmbedResult:
        raise NotImplementedError

    async def tokenize(self, model: str | None, text: str) -> list[int]:
        return list(range(len(text.split())))

    async def run_job(self, request: JobRequest[T]) -> T:
        return await self.lanes.run(request)

    async def load(self, model: str | None, keep_alive: float | str | None = "") -> None:
        pass

    async def unload(self, model: str) -> bool:
        return False

    def resident_models(self) -> list[ResidentModel]:
        return []

    async def close(self) -> None:
        pass


def history(turns: int, filler: int = 10) -> list[StoredItem]:
    now = datetime.now(UTC)
    items = []
    for n in range(turns):
        role = "user" if n % 2 == 0 else "assistant"
        text = "my locker code is 4812." if n == 0 else " ".join(["chatter"] * filler) + f" t{n}"
        items.append(StoredItem(f"msg_{n}", n, message_item(role, text), now))
    return items


def fit(kernel: CountingKernel, items: list[StoredItem], text: str, **kwargs: Any) -> Any:
    return asyncio.run(
        fit_context(
            kernel, model=None, tenant="alice", history=items, new_items=input_items(text),
            **kwargs,
        )
    )  # fmt: skip


def test_a_conversation_that_fits_is_sent_whole() -> None:
    kernel = CountingKernel(window=2048)
    plan = fit(kernel, history(10), "hello", instructions="Be brief.")
    assert plan.compaction is None and plan.new_summary is None and not kernel.generated
    assert len(plan.messages) == 1 + 10 + 1 and plan.messages[0]["role"] == "system"
    assert plan.prompt_tokens == words(plan.messages)


def test_overflow_compacts_the_oldest_turns_and_keeps_the_fact_reachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kernel = CountingKernel(window=400)
    items = history(60)
    with caplog.at_level(logging.INFO, logger="llmasos.memory.compaction"):
        plan = fit(kernel, items, "What is my locker code?", max_output_tokens=50, label="conv_x")
    assert plan.compaction is not None and plan.new_summary is not None
    assert plan.prompt_tokens + 50 <= 400 == plan.context_length
    assert plan.compaction.tokens_before > 400 and plan.compaction.summary_requests >= 1
    folded = plan.compaction.summarized_items
    assert plan.new_summary.summary_through == folded - 1
    kept = [m["content"] for m in plan.messages[1:-1]]
    assert kept == [item_text(i.body) for i in items[folded:]]  # the newest turns, in order
    assert "4812" in plan.messages[0]["content"]  # through the summary and recall
    assert plan.recalled == ["msg_0"]
    assert any("compacted" in r.message and "conv_x" in r.message for r in caplog.records)
    assert all(r.tenant == "alice" for r in kernel.generated)  # the user's own requests
    # Half of the free room stays free: the next turn does not compact again.
    summary = StoredItem("msg_s", 60, plan.new_summary.body, items[0].created_at,
                         summary_through=plan.new_summary.summary_through)  # fmt: skip
    later = [*items, summary]
    kernel.generated.clear()
    again = fit(kernel, later, "and then?", max_output_tokens=50)
    assert again.compaction is None and not kernel.generated


def test_a_turn_too_long_even_after_compaction_names_both_numbers() -> None:
    kernel = CountingKernel(window=100)
    with pytest.raises(ContextLengthExceededError) as caught:
        fit(kernel, history(4), " ".join(["word"] * 120), max_output_tokens=20)
    message = caught.value.message
    assert caught.value.status_code == 400
    assert "123 prompt tokens" in message and "100 tokens" in message


def test_a_function_call_and_its_output_are_folded_together() -> None:
    kernel = CountingKernel(window=70)
    now = datetime.now(UTC)
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "c1", "output": "42 42"}
    bodies = [message_item("user", "a " * 40), call, output, message_item("user", "b " * 10)]
    items = [StoredItem(f"i{n}", n, body, now) for n, body in enumerate(bodies)]
    plan = fit(kernel, items, "next", max_output_tokens=10)
    assert plan.compaction is not None
    # The fewest turns to fold would be two, which would part the call from its output.
    assert plan.compaction.summarized_items == 3
