"""The conversation store and compaction, measured: ``python -m llmasos.bench.conversations``.

Three figures, each on a fresh database (SQLite in a temporary home by default, or the
PostgreSQL ``--database-url`` names):

- appending one item to a conversation (one encrypted row, one transaction): p50/p95;
- reading a whole 60-turn conversation (120 items, decrypted, in order): p50/p95;
- compacting that conversation for one more turn on the embedded model with a 2,048-token
  window: wall time, summarization requests, exact token counts made, tokens before/after
  (skipped with ``--no-model``).

It prints a table and writes the numbers as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmasos.bench.metrics import percentile
from llmasos.config import Settings
from llmasos.memory import ConversationStore, fit_context, input_items
from llmasos.memory.items import message_item
from llmasos.storage import ContentCipher, open_database

FACT = "Please remember this: my locker code is 4812."
TOPICS = ("gardening", "bicycles", "weather", "cooking", "music", "chess", "trains", "rivers")


def sixty_turns() -> list[dict[str, Any]]:
    """The 60-turn conversation of the compaction test (2,085 tokens with SmolLM2's
    template, just over a 2,048-token window): a fact first, then short chatter."""
    turns = [message_item("user", FACT), message_item("assistant", "Noted, I will remember it.")]
    for n in range(1, 60):
        topic = TOPICS[n % len(TOPICS)]
        turns.append(message_item("user", f"Turn {n}: one short thing about {topic}, please."))
        turns.append(message_item("assistant", f"Turn {n}: {topic} is a pleasant subject."))
    return turns


def timed(work: Any, repeat: int) -> dict[str, float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    ms = [s * 1000 for s in seconds]
    return {"count": repeat, "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95)}


def measure_store(settings: Settings, appends: int, reads: int) -> dict[str, Any]:
    with open_database(settings) as database:
        store = ConversationStore(database, ContentCipher.from_settings(settings))
        target = store.create(None)
        counter = iter(range(appends))
        append = timed(
            lambda: store.add_items(None, target.id, input_items(f"note {next(counter)}")),
            appends,
        )
        conversation = store.create(None)
        turns = sixty_turns()
        for start in range(0, len(turns), 20):
            store.add_items(None, conversation.id, turns[start : start + 20])
        read = timed(lambda: store.items(None, conversation.id), reads)
        return {"append_item": append, "read_60_turns": read, "backend": database.url.drivername}


def measure_compaction(settings: Settings) -> dict[str, Any]:
    from llmasos.kernel.client import InProcessEngineClient
    from llmasos.memory.conversations import StoredItem

    async def run() -> dict[str, Any]:
        engine = InProcessEngineClient(settings)
        try:
            await engine.load(None)
            created = datetime.now(UTC)
            history = [
                StoredItem(f"msg_{n}", n, body, created) for n, body in enumerate(sixty_turns())
            ]
            started = time.perf_counter()
            plan = await fit_context(
                engine, model=None, tenant="bench", history=history,
                new_items=input_items("What is my locker code?"), max_output_tokens=24,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            report = plan.compaction
            assert report is not None, "the 60-turn conversation fit without compaction"
            return {
                "context_length": plan.context_length,
                "seconds": seconds,
                "summarized_items": report.summarized_items,
                "summary_requests": report.summary_requests,
                "prompt_tokens_before": report.tokens_before,
                "prompt_tokens_after": report.tokens_after,
                "summary_prompt_tokens": report.prompt_tokens,
                "summary_completion_tokens": report.completion_tokens,
                "fact_recalled": "msg_0" in plan.recalled,
            }
        finally:
            await engine.close()

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llmasos.bench.conversations", description=__doc__
    )
    parser.add_argument("--database-url", default="", help="PostgreSQL URL (default: SQLite)")
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--reads", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-model", action="store_true", help="skip the compaction figure")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llmasos-bench-conversations-") as home:
        settings = Settings.model_validate(
            {"home": Path(home), "database_url": args.database_url, "threads": args.threads,
             "context_length": 2048}
        )  # fmt: skip
        results: dict[str, Any] = {"store": measure_store(settings, args.appends, args.reads)}
        if not args.no_model:
            results["compaction"] = measure_compaction(settings)
    store = results["store"]
    print(f"{'figure':<34} {'p50 ms':>9} {'p95 ms':>9}  (n)")
    for name in ("append_item", "read_60_turns"):
        row = store[name]
        print(f"{name + ' (' + store['backend'] + ')':<34} {row['p50_ms']:>9.2f} "
              f"{row['p95_ms']:>9.2f}  ({row['count']})")  # fmt: skip
    if "compaction" in results:
        c = results["compaction"]
        print(
            f"compaction, 60 turns, {c['context_length']}-token window: {c['seconds']:.1f} s, "
            f"{c['summary_requests']} summary requests, {c['summarized_items']} items folded, "
            f"{c['prompt_tokens_before']} -> {c['prompt_tokens_after']} prompt tokens, "
            f"fact recalled: {c['fact_recalled']}"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
