"""CPU per streamed token of the Ray path alone, for several ``cluster_stream_interval`` values.

    .venv/bin/python scripts/ray_stream_cost.py [--streams 8] [--tokens 64] [--step 0.08]
                                                [--intervals 0 0.05 0.1 0.25]

The engine is replaced by a paced source (each of ``--streams`` requests gets one token every
``--step`` seconds, the decode pace of the embedded model at c=8 on a quiet 2-core machine),
so what is measured is only what the cluster path adds per token: an async actor yields the
deltas through `coalesce` as a replica does, and this process reads them the way the cluster
client does. It prints tokens per stream item and the CPU-seconds per token of both
processes (all their threads). CPU time, unlike throughput, is roughly comparable between a
busy machine and a quiet one, so this places the cost even when a timing run cannot be made.

It starts a private local Ray instance (no dashboard) and shuts it down; ``RAY_AUTH_MODE`` is
set to ``disabled`` so that ``ray.init`` writes no ``~/.ray/auth_token`` (with one present, a
later ``ray start`` turns token authentication on for every cluster of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from collections.abc import AsyncIterator
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import ray

from llmasos.distributed.coalesce import coalesce
from llmasos.kernel.interface import GenerateOutput, TokenInfo


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@ray.remote
class PacedReplica:
    """A replica whose engine produces one token every ``step`` seconds."""

    async def generate(
        self, tokens: int, step: float, interval: float
    ) -> AsyncIterator[GenerateOutput]:
        async def engine() -> AsyncIterator[GenerateOutput]:
            for n in range(tokens):
                await asyncio.sleep(step)
                yield GenerateOutput(
                    request_id="r",
                    model="m",
                    text=" word",
                    tokens=[TokenInfo(n, " word", -0.5)],
                    finished=n == tokens - 1,
                )

        async for output in coalesce(engine(), interval):
            yield output

    def cpu(self) -> float:
        return cpu_seconds()


async def read(replica: Any, tokens: int, step: float, interval: float) -> tuple[int, int]:
    """One request's stream, read as `ClusterEngineClient._stream` does: (items, tokens)."""
    stream = replica.generate.options(num_returns="streaming").remote(tokens, step, interval)
    items = received = 0
    while True:
        try:
            ref = await asyncio.wait_for(stream.__anext__(), timeout=600)
            output = await asyncio.wait_for(ref, timeout=600)
        except StopAsyncIteration:
            return items, received
        items += 1
        received += len(output.tokens)


async def measure(args: argparse.Namespace) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        replica: Any = PacedReplica.remote()  # type: ignore[attr-defined]
        await read(replica, 16, 0.0, 0.0)  # warm: the actor and the stream path
        print(f"{args.streams} streams x {args.tokens} tokens, one every {args.step:g} s")
        for interval in args.intervals:
            ours, theirs = cpu_seconds(), await replica.cpu.remote()
            started = time.perf_counter()
            results = await asyncio.gather(
                *(read(replica, args.tokens, args.step, interval) for _ in range(args.streams))
            )
            wall = time.perf_counter() - started
            ours, theirs = cpu_seconds() - ours, await replica.cpu.remote() - theirs
            items = sum(r[0] for r in results)
            tokens = sum(r[1] for r in results)
            print(
                f"  interval {interval:5.3f} s: {tokens / items:5.2f} tokens/item, CPU per "
                f"token: reader {1000 * ours / tokens:6.3f} ms, replica "
                f"{1000 * theirs / tokens:6.3f} ms, both {1000 * (ours + theirs) / tokens:6.3f} "
                f"ms ({wall:.1f} s)"
            )
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--step", type=float, default=0.08)
    parser.add_argument("--intervals", type=float, nargs="+", default=[0, 0.05, 0.1, 0.25])
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
