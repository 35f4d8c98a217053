"""The workflow engine benchmark: overhead per node, concurrency, resume after a crash.

``llmasos bench workflows [--runs N] [--concurrent N] [--json FILE]`` (or ``python -m
llmasos.workflows.benchmark``) runs in this process against a fresh SQLite database in a
temporary home (or ``--database-url``), with transform nodes only, so what is measured is
the engine and its database writes, never a model:

* **overhead** — sequential runs of a 10-node chain; per node, the engine's own time (the
  skip check, resolving the parameters, recording the step, the events) excluding the
  node's work: p50 and p95, against the goal of 5 ms. Transform rows wait for the run's
  next commit; the same chain is then run with every node committed when it starts and
  when it ends, which is what an llm, service or tool node costs;
* **concurrency** — ``--concurrent`` runs of a 10-node workflow started at once: wall time,
  and whether every run succeeded with exactly one execution and one step row per node
  (lost or duplicated executions are counted, and must be 0);
* **resume** — runs left half done as a crash leaves them (5 of 10 steps finished, one
  running), then resumed as a server start does: time until all have finished, and how
  many finished nodes ran again (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmasos.workflows.definition import Node, load_workflow
from llmasos.workflows.engine import PURE, WorkflowEngine
from llmasos.workflows.nodes import NodeOutcome, NodeRuntime
from llmasos.workflows.store import StepWrite, WorkflowStore

NODES = 10
CHAIN = "name: chain\ninputs: {n: {type: integer, default: 1}}\nnodes:\n" + "".join(
    f"  n{i}: {{type: transform, expression: "
    f'"{"inputs.n" if i == 0 else f"nodes.n{i - 1}.output"} + 1"}}\n'
    for i in range(NODES)
)
FANOUT = (
    "name: fanout\nnodes:\n  root: {type: transform, expression: '1'}\n"
    + "".join(
        f"  leaf{i}: {{type: transform, expression: 'nodes.root.output + {i}'}}\n"
        for i in range(NODES - 2)
    )
    + "  join: {type: transform, expression: '"
    + " + ".join(f"nodes.leaf{i}.output" for i in range(NODES - 2))
    + "'}\n"
)


class CountingEngine(WorkflowEngine):
    """The engine, counting each node execution per run (what lost or doubled work shows in)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.executions: Counter[tuple[str, str]] = Counter()

    async def _work(self, graph: Any, node: Node, key: str, params: Any, scope: Any) -> Any:
        self.executions[(graph.run.id, key)] += 1
        outcome: NodeOutcome = await super()._work(graph, node, key, params, scope)
        return outcome


@dataclass
class WorkflowBenchReport:
    database: str
    machine: dict[str, Any]
    overhead_ms: dict[str, float] = field(default_factory=dict)
    run_ms: dict[str, float] = field(default_factory=dict)
    committed_overhead_ms: dict[str, float] = field(default_factory=dict)
    concurrency: dict[str, Any] = field(default_factory=dict)
    resume: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)}


async def _bench(database_url: str | None, runs: int, concurrent: int) -> WorkflowBenchReport:
    from llmasos.config import load_settings
    from llmasos.storage import open_database

    home = Path(tempfile.mkdtemp(prefix="llmasos-wf-bench-"))
    settings = load_settings(home=str(home), database_url=database_url)
    database = open_database(settings)
    store = WorkflowStore(database)
    engine = CountingEngine(store, NodeRuntime())
    report = WorkflowBenchReport(database=database.url.get_backend_name(), machine=_machine())
    chain = load_workflow(CHAIN)
    fanout = load_workflow(FANOUT)
    store.create(None, CHAIN)
    store.create(None, FANOUT)

    # overhead: sequential runs of the chain
    engine.measure = True
    walls: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        run = engine.start(None, chain, {"n": 1})
        await engine.wait(run.id)
        walls.append((time.perf_counter() - started) * 1000)
        assert store.run(None, run.id).status == "succeeded"
    engine.measure = False
    timings = [t * 1000 for t in engine.node_timings]
    report.overhead_ms = {
        "p50": round(_percentile(timings, 0.5), 3),
        "p95": round(_percentile(timings, 0.95), 3),
        "nodes": len(timings),
    }
    report.run_ms = {
        "p50": round(_percentile(walls, 0.5), 2),
        "p95": round(_percentile(walls, 0.95), 2),
    }

    # the same with every node committed as it starts and ends (what a tool, llm or service
    # node costs: the figure to compare with a library that records every step)
    engine.deferred_types = ()
    engine.node_timings.clear()
    engine.measure = True
    for _ in range(runs):
        run = engine.start(None, chain, {"n": 1})
        await engine.wait(run.id)
    engine.measure = False
    engine.deferred_types = PURE
    committed = [t * 1000 for t in engine.node_timings]
    report.committed_overhead_ms = {
        "p50": round(_percentile(committed, 0.5), 3),
        "p95": round(_percentile(committed, 0.95), 3),
        "nodes": len(committed),
    }

    # concurrency: many runs at once
    engine.executions.clear()
    started = time.perf_counter()
    ids = [
        engine.start(None, chain if i % 2 else fanout, {"n": i} if i % 2 else {}).id
        for i in range(concurrent)
    ]
    await asyncio.gather(*(engine.wait(run_id) for run_id in ids))
    wall = time.perf_counter() - started
    succeeded = sum(store.run(None, run_id).status == "succeeded" for run_id in ids)
    rows = sum(len(store.steps(run_id)) for run_id in ids)
    executed = {(run_id, key) for run_id, key in engine.executions if run_id in set(ids)}
    duplicated = sum(1 for count in engine.executions.values() if count > 1)
    report.concurrency = {
        "runs": concurrent,
        "nodes_per_run": NODES,
        "succeeded": succeeded,
        "wall_s": round(wall, 3),
        "nodes_per_s": round(concurrent * NODES / wall, 1),
        "step_rows": rows,
        "lost_executions": concurrent * NODES - len(executed),
        "duplicated_executions": duplicated,
    }

    # resume: half-done runs, as a crash leaves them
    engine.executions.clear()
    interrupted = []
    for _ in range(concurrent):
        run = store.create_run(None, chain, {"n": 1}, "manual")
        store.set_status(run.id, "running")
        for i in range(NODES // 2):
            store.finish_step(run.id, StepWrite(f"n{i}", "transform", "succeeded", output=2 + i))
        store.start_step(run.id, f"n{NODES // 2}", "transform", {}, "running")
        interrupted.append(run.id)
    started = time.perf_counter()
    resumed = await engine.resume_unfinished()
    await asyncio.gather(*(engine.wait(run_id) for run_id in interrupted))
    wall = time.perf_counter() - started
    repeated = sum(
        1 for (_run, key), _count in engine.executions.items() if int(key[1:]) < NODES // 2
    )
    report.resume = {
        "runs": resumed,
        "wall_s": round(wall, 3),
        "per_run_ms": round(wall * 1000 / max(resumed, 1), 2),
        "succeeded": sum(store.run(None, r).status == "succeeded" for r in interrupted),
        "finished_nodes_run_again": repeated,
        "outputs_correct": all(store.run(None, r).output == {"n9": 11} for r in interrupted),
    }
    report.machine["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    database.close()
    return report


def run_workflow_bench(
    *, database_url: str | None = None, runs: int = 30, concurrent: int = 100
) -> WorkflowBenchReport:
    return asyncio.run(_bench(database_url, runs, concurrent))


def table_rows(report: WorkflowBenchReport) -> list[tuple[str, str, str]]:
    c, r = report.concurrency, report.resume
    return [
        (
            "engine overhead per node",
            f"p50 {report.overhead_ms['p50']} ms",
            f"p95 {report.overhead_ms['p95']} ms over {report.overhead_ms['nodes']} nodes "
            "(goal p50 < 5 ms)",
        ),
        (
            "overhead per committed node",
            f"p50 {report.committed_overhead_ms['p50']} ms",
            f"p95 {report.committed_overhead_ms['p95']} ms (two commits: started, finished)",
        ),
        (
            "10-node run, sequential",
            f"p50 {report.run_ms['p50']} ms",
            f"p95 {report.run_ms['p95']} ms",
        ),
        (
            f"{c['runs']} concurrent runs x {c['nodes_per_run']} nodes",
            f"{c['wall_s']} s",
            f"{c['succeeded']} succeeded, {c['nodes_per_s']} nodes/s, lost "
            f"{c['lost_executions']}, duplicated {c['duplicated_executions']}",
        ),
        (
            f"resume {r['runs']} half-done runs",
            f"{r['wall_s']} s",
            f"{r['per_run_ms']} ms per run, {r['succeeded']} succeeded, finished nodes run "
            f"again {r['finished_nodes_run_again']}",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run_workflow_bench(
        database_url=args.database_url, runs=args.runs, concurrent=args.concurrent
    )
    for name, figure, detail in table_rows(report):
        print(f"{name:<36} {figure:<14} {detail}")
    print(f"database {report.database}; machine {report.machine}")
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
