"""``llmasos kg build|status|query``: a knowledge base's knowledge graph from the shell.

Like ``llmasos kb``, every command talks to the running server: ``kg build`` starts the
server's background build and follows it with a progress bar; ``kg query`` prints the edges
that answer a question, each with the file and chunk that says it. Errors are one line;
``--json`` prints what the API returns.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from llmasos.cli.kb import POLL_SECONDS, STORE_HELP, api, resolve_store
from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.root import app, console, err_console

kg_app = typer.Typer(
    help="Knowledge graphs: entities and relations extracted from a knowledge base, with "
    "citations.",
    no_args_is_help=True,
)
app.add_typer(kg_app, name="kg")


def describe(info: dict[str, Any]) -> str:
    return (
        f"{info['entities']} entities, {info['relations']} relations from "
        f"{info['chunks_extracted']} chunks ({info['chunks_pending']} not read yet)"
    )


@kg_app.command("build")
def kg_build(
    store: Annotated[str, typer.Argument(help=STORE_HELP)],
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the build until it ends.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Extract entities and relations from the chunks of a knowledge base not read yet.

    The model reads each chunk under a JSON schema; every triple cites its chunk. Chunks
    edited, disabled or re-indexed since the last build are read again; files still being
    indexed are skipped (said so). Exit code 1 when the build fails.

    --json fields: object, vector_store_id, status, progress (chunks_total,
    chunks_done), triples_added, files_in_progress, entities, relations, chunks_extracted,
    chunks_pending, model, last_error, started_at, finished_at.
    """
    target = resolve_store(store)
    info = api("POST", f"/v1/vector_stores/{target['id']}/graph")
    if info["files_in_progress"]:
        err_console.print(
            f"({info['files_in_progress']} file(s) still being indexed: the graph uses the "
            "chunks indexed so far; build again when they are done)"
        )
    if wait:
        with Progress(
            TextColumn(target["name"] or target["id"]),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks"),
            TimeElapsedColumn(),
            console=err_console,
            transient=as_json,
        ) as progress:
            task = progress.add_task("graph", total=info["progress"]["chunks_total"] or None)
            while info["status"] == "in_progress":
                done = info["progress"]["chunks_done"]
                progress.update(task, completed=done, total=info["progress"]["chunks_total"] or 1)
                time.sleep(POLL_SECONDS)
                info = api("GET", f"/v1/vector_stores/{target['id']}/graph")
            total = info["progress"]["chunks_total"]
            progress.update(task, completed=info["progress"]["chunks_done"], total=total or 1)
    if as_json:
        print_json(info)
    elif info["status"] == "in_progress":
        console.print(f"building ({info['progress']['chunks_total']} chunks to read)")
    elif info["status"] == "completed":
        if not info["progress"]["chunks_total"] and not info["chunks_extracted"]:
            err_console.print("the knowledge base has no indexed chunks: add files first")
        console.print(f"{info['triples_added']} new triples; {describe(info)}", highlight=False)
    if info["status"] == "failed":
        err_console.print(f"graph build failed: {info['last_error']['message']}", highlight=False)
        raise typer.Exit(1)


@kg_app.command("status")
def kg_status(
    store: Annotated[str, typer.Argument(help=STORE_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Show a knowledge base's graph: its size and its latest build.

    --json fields: object, vector_store_id, status, progress (chunks_total,
    chunks_done), triples_added, files_in_progress, entities, relations, chunks_extracted,
    chunks_pending, model, last_error, started_at, finished_at.
    """
    target = resolve_store(store)
    info = api("GET", f"/v1/vector_stores/{target['id']}/graph")
    if as_json:
        print_json(info)
        return
    build = info["status"] if info["status"] != "none" else "never built"
    console.print(f"{build}; {describe(info)}", highlight=False)
    if info["status"] == "failed":
        err_console.print(f"last build failed: {info['last_error']['message']}", highlight=False)


@kg_app.command("query")
def kg_query(
    question: Annotated[
        str, typer.Argument(help='"What is connected to X", "how is X related to Y".')
    ],
    store: Annotated[str, typer.Option("--store", "-s", help=STORE_HELP)],
    mode: Annotated[
        str,
        typer.Option(
            "--mode", help="auto (path when two entities are named), neighbourhood, path."
        ),
    ] = "auto",
    hops: Annotated[int, typer.Option("--hops", min=1, max=4, help="Neighbourhood depth.")] = 1,
    max_hops: Annotated[
        int, typer.Option("--max-hops", min=1, max=4, help="Longest path looked for.")
    ] = 4,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Answer a question from a knowledge base's graph, every edge with its source.

    Entities are found in the question by name, else by meaning. An entity the graph does
    not hold is a "not found" answer (exit code 0).

    --json fields: object, query, mode, found, message, entities (id, name, type, mentions,
    matched_by, similarity), edges (subject, predicate, object, hop, citation with chunk_id,
    file_id, filename, quote), graph_status.
    """
    target = resolve_store(store)
    body = {"query": question, "mode": mode, "hops": hops, "max_hops": max_hops}
    answer = api("POST", f"/v1/vector_stores/{target['id']}/graph/query", json=body)
    if as_json:
        print_json(answer)
        return
    if not answer["found"]:
        err_console.print(answer["message"], highlight=False)
        return
    console.print(answer["message"], highlight=False)
    rows = table("hop", "subject", "predicate", "object", Column("source", key=True), "quote")
    for edge in answer["edges"]:
        cite = edge["citation"]
        rows.add_row(
            str(edge["hop"]),
            Text(edge["subject"]),
            Text(edge["predicate"]),
            Text(edge["object"]),
            f"{cite['filename']} {cite['chunk_id']}",
            Text(cite["quote"]),
        )
    print_table(rows, highlight=False)
