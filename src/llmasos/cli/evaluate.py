"""``llmasos eval TARGET``: measure quality of a model or a named service; the history.

- ``eval MODEL --task perplexity|bleu|chrf|rouge|exact-match|accuracy [--data DS]
  [--backend llamacpp|transformers]``: the model (the version the store serves) on a
  registered dataset or a file, on either backend (`llmasos.toolchain.model_eval`); prints
  e.g. ``perplexity 9.58`` and what it was measured with, writes the report (every answer)
  and appends the result to the model's history.
- ``eval service:NAME [--task service] [--data PATH]``: the service, its content-free
  baseline and the same task asked plainly in chat on every item of the dataset (the
  service's shipped development set unless ``--data`` names one) on an in-process kernel; the
  scores print as a table, the whole report is written as JSON, and the service's main
  metric is recorded as its last measured quality (``GET /v1/services/{name}``).
- ``eval history MODEL [--json] [--plot PNG]``: every result recorded for MODEL, by version.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmasos.cli.jobs import BACKGROUND_HELP, start_in_background
from llmasos.cli.output import print_json
from llmasos.cli.root import app, console, err_console, state
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
    target: Annotated[
        str,
        typer.Argument(help="A model name, service:NAME, or `history` (then MODEL follows)."),
    ],
    history_model: Annotated[
        str | None, typer.Argument(metavar="[MODEL]", help="With `history`: the model.")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="A model: perplexity (default), bleu, chrf, rouge, exact-match, accuracy. "
            "A service: service.",
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="A prepared dataset (`llmasos data prep`) or a file (.txt, .jsonl, .csv, "
            ".parquet); a service: a JSON-lines file. Default: the shipped public-domain "
            "text (perplexity) or the service's dev set.",
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="A model: llamacpp or transformers (float32).")
    ] = "llamacpp",
    split: Annotated[
        str, typer.Option("--split", help="The dataset's split to evaluate on.")
    ] = "test",
    window: Annotated[
        int, typer.Option("--window", help="Perplexity: tokens per scoring window.")
    ] = 1024,
    max_tokens: Annotated[
        int,
        typer.Option(
            "--max-tokens",
            help="Generation: answer length (0: the longest reference + 8 for accuracy and "
            "exact-match, else 256).",
        ),
    ] = 0,
    threads: Annotated[int, typer.Option("--threads", help="Threads (0: the backend's).")] = 0,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="A service: the model to use.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Use only N items, spread evenly.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Report file (default: $LLMASOS_HOME/eval/)."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="With `history`: write a PNG of the results.")
    ] = None,
    background: Annotated[bool, typer.Option("--background", help=BACKGROUND_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    references: Annotated[
        bool,
        typer.Option(
            "--references/--no-references",
            help="A service: also run the content-free baseline and plain chat (to record).",
        ),
    ] = True,
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record",
            help="Record the result (a model's history, a service's quality).",
        ),
    ] = True,
) -> None:
    """Measure a model's quality (perplexity, BLEU, chrF, ROUGE, exact match, accuracy) or a
    service's; `eval history MODEL` lists and plots a model's results across versions.

    A model is measured as the store serves it (its current or tuned version), on the
    llama.cpp backend or in float32 torch (--backend transformers; a GGUF is de-quantized
    and cached). Perplexity is token-level with the model's own tokenizer (no BOS forced),
    in half-overlapping windows, and byte-level (per UTF-8 byte, comparable across
    tokenizers). Generation tasks answer each row greedily with the model's chat template.

    JSON fields (a model): model, version, task, backend, dataset, dataset_digest, value,
    items, details, predictions, seconds, date.
    """
    if target != "history" and start_in_background(background):
        return
    if target == "history":
        if not history_model:
            raise InvalidRequestError("give the model: llmasos eval history MODEL")
        _history(history_model, as_json, plot)
        return
    if history_model is not None:
        raise InvalidRequestError(
            f"unexpected argument {history_model!r} (only `eval history MODEL` takes two)"
        )
    if target.startswith("service:") or (target.partition(":")[0] == "service"):
        _service(target, task, data, model, limit, output, as_json, references, record)
        return
    _model(target, task or "perplexity", data, backend, split, window, max_tokens, threads,
           limit, output, as_json, record)  # fmt: skip


def _model(
    name: str,
    task: str,
    data: str | None,
    backend: str,
    split: str,
    window: int,
    max_tokens: int,
    threads: int,
    limit: int | None,
    output: Path | None,
    as_json: bool,
    record: bool,
) -> None:
    from llmasos.cli.data import registry
    from llmasos.toolchain.model_eval import History, check_backend, check_task, evaluate_model

    task, backend = check_task(task), check_backend(backend)
    settings = state.settings
    from llmasos.errors import ModelNotFoundError

    try:
        state.store.manifest(name)
    except ModelNotFoundError as error:
        raise InvalidRequestError(
            f"{error.message}; to evaluate a service, give service:NAME (e.g. service:summarize)"
        ) from None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as progress:
        bar = progress.add_task(f"{name}: {task} on {backend}", total=None)
        report = evaluate_model(
            state.store,
            registry(),
            name,
            task,
            home=settings.home,
            data=data,
            backend=backend,
            split=split,
            window=window,
            max_tokens=max_tokens,
            limit=limit,
            threads=threads,
            advance=lambda: progress.advance(bar),
            total=lambda n: progress.update(bar, total=n),
        )
    short = report.version.removeprefix("sha256:")[:12]
    stem = f"{report.model.replace('/', '_').replace(':', '-')}-{short}-{task}-{backend}"
    destination = output or settings.home / "eval" / "reports" / f"{stem}.json"
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    if record:
        History(settings.home).record(report, destination)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(report.summary(), markup=False, highlight=False)
    details = report.details
    if task == "perplexity":
        console.print(
            f"token-level: {details['tokens_scored']} tokens scored (tokenizer: "
            f"{details['tokenizer']}; BOS {'added' if details['bos_added'] else 'not added'}, "
            f"as the model's tokenizer says), window {details['window']} tokens\n"
            f"byte-level: {details['byte_perplexity']:.4f} ({details['bits_per_byte']:.4f} "
            f"bits per byte over {details['bytes_scored']} bytes)",
            markup=False,
            highlight=False,
        )
    console.print(
        f"{report.model}@{short} on {backend}, {report.dataset} ({report.items} items), "
        f"{report.seconds:.1f} s; report: {destination}",
        markup=False,
        highlight=False,
    )


def _history(name: str, as_json: bool, plot: Path | None) -> None:
    from llmasos.errors import ModelNotFoundError
    from llmasos.toolchain.model_eval import History, plot_history, version_order

    try:
        canonical = state.store.manifest(name.split("@")[0]).name
    except ModelNotFoundError:  # removed since: its history stays
        canonical = state.store.canonical_name(name.split("@")[0])
    entries = History(state.settings.home).entries(canonical)
    if not entries:
        raise InvalidRequestError(
            f"no evaluation recorded for {canonical} (run `llmasos eval {name} --task perplexity`)"
        )
    order = version_order(state.store, canonical, entries)
    if plot is not None:
        plot_history(entries, order, plot)
    if as_json:
        print_json(entries)
        return
    table = Table(title=f"evaluations of {canonical} (versions oldest first)")
    for column in ("date", "version", "task", "dataset", "backend", "value", "items"):
        table.add_column(column, justify="right" if column in ("value", "items") else "left")
    for entry in sorted(entries, key=lambda e: (order.index(e["version"]), e["date"])):
        table.add_row(
            entry["date"],
            entry["version"].removeprefix("sha256:")[:12],
            entry["task"],
            Path(entry["dataset"]).name,
            entry["backend"],
            f"{entry['value']:.4g}",
            str(entry["items"]),
        )
    console.print(table)
    if plot is not None:
        console.print(f"plot: {plot}", markup=False, highlight=False)


def _service(
    target: str,
    task: str | None,
    data_name: str | None,
    model: str | None,
    limit: int | None,
    output: Path | None,
    as_json: bool,
    references: bool,
    record: bool,
) -> None:
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
    data = Path(data_name) if data_name is not None else None
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
