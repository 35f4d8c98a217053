"""``llmasos eval TARGET [--task T] [--data PATH] [--model M] [--limit N]``: measure quality.

The command is shaped ``eval TARGET --task TASK --data PATH`` so more kinds of evaluation can
join it. Today TARGET is ``service:NAME`` and the task is ``service`` (the default for that
target): the service, its content-free baseline and the same task asked plainly in chat run
on every item of the dataset (the service's shipped development set unless ``--data`` names
one) on an in-process kernel; the scores print as a table, the whole report (every
prediction) is written as JSON, and the service's main metric is recorded as its last
measured quality, which ``GET /v1/services/{name}`` reports.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmasos.cli.output import print_json
from llmasos.cli.root import app, console, state
from llmasos.errors import InvalidRequestError

TASKS = ("service",)


def _target(target: str, task: str | None) -> tuple[str, str]:
    kind, sep, name = target.partition(":")
    if not sep or kind != "service" or not name:
        raise InvalidRequestError(
            f"unknown evaluation target {target!r}: give service:NAME (e.g. service:summarize)",
            param="target",
        )
    task = task or "service"
    if task not in TASKS:
        raise InvalidRequestError(
            f"task {task!r} does not apply to {target} (tasks: {', '.join(TASKS)})",
            param="task",
        )
    return name, task


def _table(report: dict[str, Any]) -> Table:
    scores = report["scores"]
    names = list(scores["service"])
    table = Table(
        title=f"{report['service']} on {report['dataset']} ({report['items']} items, "
        f"model {report['model'] or 'default'}; main metric: {report['main']})"
    )
    table.add_column("system", overflow="fold")
    for name in names:
        table.add_column(name.replace("_", " "), justify="right", overflow="fold")
    rows = {"service": "the service", "baseline": "content-free baseline", "chat": "plain chat"}
    labelled = [(label, scores[system]) for system, label in rows.items() if system in scores]
    methods = [
        (f"  method {m}{' (used)' if m == report.get('method') else ''}", figures)
        for m, figures in report.get("methods", {}).items()
    ]
    labelled[1:1] = methods
    for label, figures in labelled:
        row = [figures.get(name) for name in names]
        table.add_row(label, *("" if v is None else f"{v:.2f}" for v in row))
    return table


@app.command(name="eval")
def evaluate(
    target: Annotated[str, typer.Argument(help="What to evaluate: service:NAME.")],
    task: Annotated[
        str | None, typer.Option("--task", help="Evaluation kind (default: service).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="JSON-lines dataset (default: the shipped dev set)."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model to use.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Use only the first N items.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Report file (default: $LLMASOS_HOME/eval/)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    references: Annotated[
        bool,
        typer.Option(
            "--references/--no-references",
            help="Also run the content-free baseline and plain chat (needed to record).",
        ),
    ] = True,
    record: Annotated[
        bool,
        typer.Option("--record/--no-record", help="Record the result as the service's quality."),
    ] = True,
) -> None:
    """Score a service against a content-free baseline and plain chat on a dataset."""
    from llmasos.kernel.client import InProcessEngineClient
    from llmasos.services.quality import record_quality
    from llmasos.services.runner import runner_for
    from llmasos.toolchain.evaluate import (
        SYSTEMS,
        dataset_path,
        evaluate_service,
        load_dataset,
        quality_entry,
    )

    service, _ = _target(target, task)
    settings = state.settings
    path = dataset_path(service, data)
    items = load_dataset(path, limit)
    dataset = path.name if data is None else str(path)

    async def go() -> dict[str, Any]:
        engine = InProcessEngineClient(settings, state.store)
        try:
            runner = runner_for(engine, settings.home, state.store, settings.default_model)
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
                disable=as_json,
            ) as progress:
                systems = SYSTEMS if references else ("service",)
                runs = {"service": len(runner.registry.get(service).methods)}
                bars = {
                    s: progress.add_task(f"{service}: {s}", total=len(items) * runs.get(s, 1))
                    for s in systems
                }
                return await evaluate_service(
                    engine,
                    runner,
                    service,
                    items,
                    model=model,
                    dataset=dataset,
                    advance=lambda system: progress.advance(bars[system]),
                    references=references,
                )
        finally:
            await engine.close()

    report = asyncio.run(go())
    destination = output or settings.home / "eval" / f"service-{service}.json"
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    if record and references:
        record_quality(settings.home, service, quality_entry(report))
    if as_json:
        print_json(report)
        return
    console.print(_table(report))
    for error in report["errors"]:
        console.print(f"item {error['id']} failed: {error['error']}", markup=False)
    console.print(f"report: {destination}", markup=False, highlight=False)
