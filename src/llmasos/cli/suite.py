"""``llmasos bench tasks``: the task suite (`llmasos.agents.suite_bench`) on a real model, in
this process, with and without grammar-constrained tool calls; a table, JSON and a PNG."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from llmasos.cli.bench import bench_app
from llmasos.cli.root import console, err_console, state


@bench_app.command("tasks")
def bench_tasks(
    model: Annotated[
        str | None, typer.Option("--model", help="Model to run (default: the default model).")
    ] = None,
    trials: Annotated[
        int, typer.Option("--trials", "-k", min=1, max=10, help="Trials per task (pass^k).")
    ] = 3,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Run only the first N tasks.")
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option("--category", help="Only tasks of this category (repeatable)."),
    ] = None,
    mode: Annotated[
        list[str] | None,
        typer.Option(
            "--mode", help="constrained and/or unconstrained (repeatable; default: both)."
        ),
    ] = None,
    max_steps: Annotated[
        int, typer.Option("--max-steps", min=1, max=50, help="Step budget of each task.")
    ] = 6,
    max_seconds: Annotated[
        float, typer.Option("--max-seconds", min=1, help="Running-time budget of each task.")
    ] = 600,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=64, help="Tasks run at once.")
    ] = 4,
    tool_choice: Annotated[
        str,
        typer.Option(
            "--tool-choice",
            help="The first turn's tool_choice: auto, or required (a call, as the "
            "openai-agents SDK forces it); later turns are auto.",
        ),
    ] = "auto",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every trial and the summary as JSON.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw success rate and pass^k as a PNG.")
    ] = None,
) -> None:
    """Task suite: 40+ tasks over the personal tools, graded by the apps' final state (and no
    collateral changes), k trials each, grammar-constrained tool calls against unconstrained."""
    from llmasos.agents.interface import Budget
    from llmasos.agents.suite_bench import (
        MODES,
        SuiteReport,
        plot_suite,
        run_task_suite,
        write_json,
    )
    from llmasos.kernel.client import InProcessEngineClient
    from llmasos.models import open_model_store

    settings = state.settings
    chosen_model = model or settings.default_model
    modes = tuple(mode) if mode else MODES

    async def run() -> SuiteReport:
        engine = InProcessEngineClient(settings, open_model_store(settings))
        try:
            return await run_task_suite(
                engine=engine,
                model=chosen_model,
                trials=trials,
                modes=modes,
                limit=limit,
                categories=category,
                concurrency=concurrency,
                tool_choice=tool_choice,
                budget=Budget(max_steps=max_steps, max_tokens=16_000, max_seconds=max_seconds),
                progress=lambda message: err_console.print(message, highlight=False),
            )
        finally:
            await engine.close()

    report = asyncio.run(run())
    k = report.k
    table = Table(
        "mode", "category", "tasks", "success rate", f"pass^{k}",
        title=f"task suite: {report.model}, {report.tasks} tasks x {k} trials, first turn "
        f"{report.settings['tool_choice']} ({report.seconds:.0f} s)",
    )  # fmt: skip
    for summary in report.modes:
        for name, row in summary.by_category.items():
            table.add_row(
                summary.mode, name, str(int(row["tasks"])),
                f"{row['success_rate']:.0%}", f"{row['pass_k']:.0%}",
            )  # fmt: skip
        table.add_row(
            summary.mode, "all", str(report.tasks),
            f"{summary.success_rate:.0%}", f"{summary.pass_k:.0%}", end_section=True,
        )  # fmt: skip
    console.print(table, highlight=False)
    if json_path is not None:
        write_json(report, json_path)
    if plot is not None:
        plot_suite(report, plot)
