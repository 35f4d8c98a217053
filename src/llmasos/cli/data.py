"""``llmasos data prep|ls|show|rm``: prepared datasets, on this machine (no server needed).

Datasets live under ``$LLMASOS_HOME/datasets`` (`llmasos.toolchain.datasets`); ``prep`` runs
`llmasos.toolchain.dataprep.prepare_dataset` and prints its report in short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.root import app, console, state
from llmasos.errors import InvalidRequestError

data_app = typer.Typer(
    help="Datasets for fine-tuning and evaluation: prepare, list, show, remove.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


def registry() -> Any:
    from llmasos.toolchain.datasets import DatasetRegistry

    return DatasetRegistry(state.settings.home / "datasets")


def parse_fractions(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise InvalidRequestError(
            f"--split {text!r}: give three fractions, e.g. 0.8,0.1,0.1"
        ) from None


@data_app.command("prep")
def data_prep(
    source: Annotated[Path, typer.Argument(help="A .jsonl, .json, .csv, .txt or .parquet file.")],
    task: Annotated[str, typer.Option("--task", help="chat, completion or classification.")],
    out: Annotated[str, typer.Option("--out", help="The dataset's name.")],
    model: Annotated[
        str, typer.Option("--model", help="The model whose tokenizer counts the tokens.")
    ] = "smollm2",
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="Drop rows longer than this many tokens.")
    ] = 2048,
    near_duplicates: Annotated[
        float,
        typer.Option(
            "--near-duplicates",
            help="Jaccard similarity of word 3-grams above which a row is a near duplicate "
            "(MinHash); 1 keeps near duplicates.",
        ),
    ] = 0.85,
    split: Annotated[
        str, typer.Option("--split", help="Train, validation and test fractions.")
    ] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the shuffle before the split.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace a dataset of that name.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Clean, deduplicate, split and register a dataset, with a report.

    Cleans every field (Unicode NFC, whitespace), drops empty rows, rows over --max-tokens,
    exact and near duplicates; splits with --seed; converts chat and classification rows to
    the chat format; counts tokens with --model's tokenizer; writes report.json and a
    histogram tokens.png next to the splits. Columns: chat reads 'messages' or
    prompt/response, classification 'text' and 'label', completion 'text' (a .txt file: one
    row per paragraph).

    JSON fields: the report (dataset, digest, task, source, tokenizer, rows_read, removed,
    near_duplicate_threshold, near_duplicate_examples, max_tokens, seed, fractions, splits,
    tokens, labels, histogram, seconds).
    """
    from llmasos.toolchain.dataprep import prepare_dataset

    datasets = registry()
    with console.status("preparing ...") as status:
        manifest, report = prepare_dataset(
            datasets,
            state.store,
            source,
            task=task,
            name=out,
            model=model,
            max_tokens=max_tokens,
            near_duplicate_threshold=near_duplicates,
            fractions=parse_fractions(split),
            seed=seed,
            replace=force,
            progress=lambda line: status.update(line),
        )
    if as_json:
        print_json(report)
        return
    removed = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report["removed"].items())
    splits = ", ".join(f"{v} {k}" for k, v in report["splits"].items())
    console.print(
        f"dataset '{manifest.name}' ({manifest.short_id}): {splits}\n"
        f"read {report['rows_read']} rows; removed {removed}\n"
        f"tokens ({report['tokenizer']}): {report['tokens']['train'].get('total', 0)} in train; "
        f"report: {datasets.path(manifest.name) / 'report.json'}",
        highlight=False,
    )


@data_app.command("ls")
def data_ls(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List the prepared datasets.

    JSON fields: a list of datasets (name, task, digest, source, source_digest, model,
    splits {train, validation, test: rows, digest, tokens}, labels, created_at).
    """
    found = registry().list()
    if as_json:
        print_json([m.to_dict() for m in found])
        return
    listing = table(
        Column("NAME", key=True),
        Column("ID", key=True),
        "TASK",
        "TRAIN",
        "VAL",
        "TEST",
        "TOKENS",
        "CREATED",
    )
    for m in found:
        listing.add_row(
            m.name,
            m.short_id,
            m.task,
            str(m.splits["train"].rows),
            str(m.splits["validation"].rows),
            str(m.splits["test"].rows),
            str(sum(s.tokens for s in m.splits.values())),
            m.created_at,
        )
    print_table(listing)


@data_app.command("show")
def data_show(
    name: Annotated[str, typer.Argument(help="A dataset.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Show a dataset: its splits with their digests, and its data-prep report.

    JSON fields: manifest (as in `data ls --json`), report (as in `data prep --json`), path.
    """
    datasets = registry()
    manifest = datasets.get(name)
    report = datasets.report(name)
    if as_json:
        print_json(
            {"manifest": manifest.to_dict(), "report": report, "path": str(datasets.path(name))}
        )
        return
    lines = [
        f"name      {manifest.name}",
        f"digest    {manifest.digest}",
        f"task      {manifest.task}",
        f"source    {manifest.source} ({manifest.source_digest})",
        f"tokenizer {manifest.model}",
        f"path      {datasets.path(name)}",
    ]
    if manifest.labels:
        lines.append(f"labels    {', '.join(manifest.labels)}")
    for split, info in manifest.splits.items():
        lines.append(f"{split:<10}{info.rows} rows, {info.tokens} tokens, {info.digest}")
    if report:
        removed = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report["removed"].items())
        lines.append(f"removed   {removed} (of {report['rows_read']} read)")
    console.print("\n".join(lines), highlight=False)


@data_app.command("rm")
def data_rm(name: Annotated[str, typer.Argument(help="A dataset.")]) -> None:
    """Remove a prepared dataset."""
    registry().remove(name)
    console.print(f"removed dataset '{name}'", highlight=False)
