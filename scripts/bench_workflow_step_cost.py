"""What pricing and metering add to writing a finished workflow step.

Writes ``--steps`` finished steps of one run (owned by a user, the model priced) through
`WorkflowStore.finish_step` on a fresh SQLite database: once with no tokens (nothing to
price or meter) and once with tokens (the price lookup, the owner lookup and the usage row,
all in the step's transaction). Prints p50/p95 of wall time and of this process's CPU time
per write, for ``--rounds`` rounds.

    .venv/bin/python scripts/bench_workflow_step_cost.py --steps 300 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from llmasos.access.usage import PriceTable
from llmasos.access.users import UserManager
from llmasos.config import Settings
from llmasos.storage import open_database
from llmasos.storage.schema import utcnow
from llmasos.workflows.definition import load_workflow
from llmasos.workflows.store import StepWrite, WorkflowStore


def percentiles(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):.2f} ms p95 {statistics.quantiles(values, n=20)[18]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        database = open_database(Settings(home=Path(home)))
        user = UserManager(database).create("alice")
        PriceTable(database).set("smollm2", prompt_per_1k=1.0, completion_per_1k=2.0)
        store = WorkflowStore(database)
        workflow = load_workflow("name: b\nnodes:\n  a: {type: transform, expression: '1'}\n")
        run = store.create_run(user.id, workflow, {}, "manual")

        def write(tokens: int, index: int) -> tuple[float, float]:
            step = StepWrite(
                f"n{tokens}_{index}", "llm", "succeeded", output="x", model="smollm2:135m",
                prompt_tokens=tokens, completion_tokens=tokens, started_at=utcnow(),
            )  # fmt: skip
            wall, cpu = time.perf_counter(), time.process_time()
            store.finish_step(run.id, step)
            return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000

        for round_ in range(args.rounds):
            for tokens, label in ((0, "no tokens"), (20, "tokens: priced and metered")):
                times = [write(tokens, round_ * args.steps + i) for i in range(args.steps)]
                print(
                    f"{label:28} wall {percentiles([t[0] for t in times])}"
                    f" | cpu {percentiles([t[1] for t in times])}"
                )
        database.close()
    print("load average", " ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
