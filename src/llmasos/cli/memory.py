"""``llmasos memory add|list|search|edit|forget|enable|disable``, ``llmasos recommend`` and
``llmasos bench memory``.

Each command talks to a running server when one answers (as the machine's owner, like the
other local commands), else opens the database and the kernel in this process. Tables keep
ids whole at any terminal width (the text column wraps instead); ``--json`` prints what the
API returns. ``forget`` asks before it deletes unless given ``--yes``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from llmasos.cli.bench import bench_app
from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.remote import call_server, in_process, server_url
from llmasos.cli.root import app, console, err_console, state
from llmasos.errors import InvalidRequestError

memory_app = typer.Typer(help="What the OS remembers about you.", no_args_is_help=True)
app.add_typer(memory_app, name="memory")

T = TypeVar("T")
KIND_HELP = "fact, preference, event or document_note."
META_HELP = "Metadata KEY=VALUE (repeatable; VALUE is JSON when it parses, else text)."


def parse_metadata(items: list[str] | None, option: str = "--meta") -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequestError(f"{option} takes KEY=VALUE, not {item!r}")
        try:
            result[key.strip()] = json.loads(value)
        except ValueError:
            result[key.strip()] = value
    return result


def run_local(work: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Run ``work(memory_store, owner)`` against the database and an in-process kernel."""
    from llmasos.memory.memories import MemoryOwner, MemoryStore

    settings = state.settings

    async def go(database: Any, engine: Any) -> T:
        return await work(MemoryStore.open(settings, database, engine), MemoryOwner.for_user(None))

    return in_process(settings, state.store, go)


def api(method: str, path: str, **kwargs: Any) -> Any | None:
    """The server's answer, or None when no server runs (then the caller works locally)."""
    if server_url(state.settings) is None:
        return None
    return call_server(state.settings, method, path, **kwargs)


ITEM_FIELDS = "id, object, text, kind, source, source_ref, metadata, created_at, updated_at"


def print_items(items: list[dict[str, Any]], *, scores: bool = False) -> None:
    if not items:
        err_console.print("no memories", highlight=False)
        return
    from datetime import UTC, datetime

    rows = table(Column("id", key=True), Column("kind", key=True), "text", "created")
    if scores:
        rows.add_column("score", no_wrap=True)
    for item in items:
        created = datetime.fromtimestamp(int(item["created_at"]), UTC).strftime("%Y-%m-%d")
        cells: list[Any] = [item["id"], item["kind"], Text(item["text"]), created]
        if scores:
            cells.append(f"{item.get('score') or 0:.3f}")
        rows.add_row(*cells)
    print_table(rows, highlight=False)


def emit(items: list[dict[str, Any]], as_json: bool, *, scores: bool = False) -> None:
    if as_json:
        print_json(items)
    else:
        print_items(items, scores=scores)


@memory_app.command("add")
def memory_add(
    text: Annotated[str, typer.Argument(help="The fact to remember.")],
    kind: Annotated[str, typer.Option("--kind", help=KIND_HELP)] = "fact",
    meta: Annotated[list[str] | None, typer.Option("--meta", help=META_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Remember a fact (adding one that is already remembered changes nothing).

    --json fields: id, object, text, kind, source, source_ref, metadata, created_at, updated_at,
    status.
    """
    body = {"text": text, "kind": kind, "metadata": parse_metadata(meta)}
    answer = api("POST", "/v1/memories", json=body)
    if answer is None:

        async def work(store: Any, owner: Any) -> dict[str, Any]:
            result = await store.add(owner, text, kind=kind, metadata=body["metadata"])
            return {
                "object": "list",
                "data": [
                    {**result.item.to_dict(), "status": "created" if result.created else "existing"}
                ],
            }

        answer = run_local(work)
    item = answer["data"][0]
    if as_json:
        print_json(item)
        return
    verb = "remembered" if item.get("status") == "created" else "already remembered"
    console.print(f"{verb} {item['id']}", highlight=False)


@memory_app.command("list")
def memory_list(
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind.")] = None,
    meta: Annotated[list[str] | None, typer.Option("--meta", help=META_HELP)] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="At most this many.")
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List what is remembered, newest first.

    --json fields: id, object, text, kind, source, source_ref, metadata, created_at, updated_at.
    """
    metadata = parse_metadata(meta)
    params: dict[str, Any] = {"limit": limit}
    if kind:
        params["kind"] = kind
    if metadata:
        params["metadata"] = json.dumps(metadata)
    answer = api("GET", "/v1/memories", params=params)
    if answer is None:

        async def work(store: Any, owner: Any) -> list[dict[str, Any]]:
            items = store.list_items(owner, kind=kind, metadata=metadata, limit=limit)
            return [item.to_dict() for item in items]

        items = run_local(work)
    else:
        items = answer["data"]
    emit(items, as_json)


@memory_app.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=100, help="How many results.")] = 10,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind.")] = None,
    meta: Annotated[list[str] | None, typer.Option("--meta", help=META_HELP)] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Created on or after (2025-01-31 or 7d).")
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, bm25 or vector.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Search what is remembered, by words and by meaning, best first.

    --json fields: id, object, text, kind, source, source_ref, metadata, created_at, updated_at,
    score.
    """
    from llmasos.access.usage import parse_since

    if mode not in ("hybrid", "bm25", "vector"):
        raise InvalidRequestError("--mode: use hybrid, bm25 or vector")
    moment = parse_since(since) if since else None
    metadata = parse_metadata(meta)
    body: dict[str, Any] = {"query": query, "k": k, "kind": kind, "filters": metadata}
    body["mode"] = mode
    if moment is not None:
        body["since"] = moment.isoformat()
    answer = api("POST", "/v1/memories/search", json=body)
    if answer is None:
        from llmasos.memory.memories import check_kind
        from llmasos.retrieval.interface import SearchFilters

        if kind is not None:
            check_kind(kind)
        filters = SearchFilters(kind=kind, since=moment, metadata=metadata)

        async def work(store: Any, owner: Any) -> list[dict[str, Any]]:
            found = await store.search(owner, query, k=k, filters=filters, mode=mode)
            return [item.to_dict() for item in found]

        items = run_local(work)
    else:
        items = answer["data"]
    emit(items, as_json, scores=True)


@memory_app.command("edit")
def memory_edit(
    memory_id: Annotated[str, typer.Argument(help="The memory id (mem_…).")],
    text: Annotated[str | None, typer.Option("--text", help="The new text.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help=KIND_HELP)] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", help=META_HELP + " Replaces the metadata.")
    ] = None,
) -> None:
    """Change a memory's text, kind or metadata."""
    if text is None and kind is None and meta is None:
        raise InvalidRequestError("nothing to change: give --text, --kind or --meta")
    metadata = parse_metadata(meta) if meta is not None else None
    body = {"text": text, "kind": kind, "metadata": metadata}
    answer = api("PATCH", f"/v1/memories/{memory_id}", json=body)
    if answer is None:

        async def work(store: Any, owner: Any) -> dict[str, Any]:
            item = await store.update(owner, memory_id, text=text, kind=kind, metadata=metadata)
            return dict(item.to_dict())

        answer = run_local(work)
    console.print(f"updated {answer['id']}", highlight=False)


@memory_app.command("forget")
def memory_forget(
    memory_id: Annotated[
        str | None, typer.Argument(help="The memory to forget; omit with --all.")
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Forget everything that is remembered.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Forget one memory, or everything with --all (asks first unless --yes)."""
    if (memory_id is None) == (not everything):
        raise InvalidRequestError("give a memory id, or --all to forget everything")
    what = "EVERYTHING that is remembered" if everything else memory_id
    if not yes and not typer.confirm(f"Forget {what}?", default=False):
        raise typer.Exit(1)
    path = "/v1/memories" if everything else f"/v1/memories/{memory_id}"
    answer = api("DELETE", path)
    if answer is None:

        async def work(store: Any, owner: Any) -> dict[str, Any]:
            if everything:
                return {"deleted": store.delete_all(owner)}
            store.delete(owner, memory_id)
            return {"id": memory_id}

        answer = run_local(work)
    if everything:
        console.print(f"forgot {answer['deleted']} memories", highlight=False)
    else:
        console.print(f"forgot {memory_id}", highlight=False)


def _set_chat(enabled: bool) -> None:
    answer = api("POST", "/v1/memories/settings", json={"chat": enabled})
    if answer is None:

        async def work(store: Any, owner: Any) -> None:
            store.set_chat_enabled(owner, enabled)

        run_local(work)
    state_word = "now use" if enabled else "no longer use"
    console.print(f"chat completions {state_word} your memories", highlight=False)


@memory_app.command("enable")
def memory_enable() -> None:
    """Put relevant memories into your chat completions (per request: metadata.memory)."""
    _set_chat(True)


@memory_app.command("disable")
def memory_disable() -> None:
    """Stop putting memories into your chat completions."""
    _set_chat(False)


@app.command("recommend")
def recommend(
    limit: Annotated[int, typer.Option("--limit", min=1, max=50, help="How many.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Suggest services, apps and next steps from your history and memories.

    --json fields: type, name, score, reason, detail.
    """
    answer = api("GET", "/v1/recommendations", params={"limit": limit})
    if answer is None:
        from llmasos.apps.offer import recommendation_candidates
        from llmasos.memory.recommend import Recommender

        async def work(store: Any, owner: Any) -> dict[str, Any]:
            result = await Recommender(store).recommend(
                owner, recommendation_candidates(state.settings), limit=limit
            )
            return {
                "object": "list",
                "data": [
                    {
                        "type": r.type,
                        "name": r.name,
                        "score": round(r.score, 4),
                        "reason": r.reason,
                        "detail": r.detail,
                    }
                    for r in result.items
                ],
                "cold_start": result.cold_start,
            }

        answer = run_local(work)
    if as_json:
        print_json(answer["data"])
        return
    rows = table(Column("type", key=True), Column("name", key=True), "why")
    for item in answer["data"]:
        rows.add_row(item["type"], item["name"], Text(item["reason"]))
    print_table(rows, highlight=False)
    if answer.get("cold_start"):
        err_console.print("(no history yet: these are popular picks)", highlight=False)


@bench_app.command("memory")
def bench_memory(
    adds: Annotated[int, typer.Option("--adds", min=0, help="Timed adds (0: skip).")] = 200,
    sizes: Annotated[
        str, typer.Option("--sizes", help="Item counts to time search at, comma separated.")
    ] = "1000,10000",
    queries: Annotated[int, typer.Option("--queries", min=1, help="Searches per size.")] = 100,
    embed_limit: Annotated[
        int,
        typer.Option(
            "--embed-limit", min=0, help="Embed this many corpus items; reuse vectors beyond."
        ),
    ] = 10_000,
    quality: Annotated[
        bool, typer.Option("--quality/--no-quality", help="Run the retrieval-quality set.")
    ] = True,
    clients: Annotated[
        int, typer.Option("--clients", min=0, help="Concurrent clients of the nothing-lost run.")
    ] = 32,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0, help="Length of the nothing-lost run (0: skip).")
    ] = 60.0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON to this file.")
    ] = None,
) -> None:
    """Memory: add and search latency, retrieval quality (recall@k), and nothing lost."""
    from llmasos.bench.memory import run_memory_bench

    try:
        size_list = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise InvalidRequestError(
            f"--sizes: {sizes!r} is not a comma-separated list of numbers"
        ) from None
    report = asyncio.run(
        run_memory_bench(
            state.settings,
            adds=adds,
            sizes=size_list,
            queries=queries,
            embed_limit=embed_limit,
            quality=quality,
            clients=clients,
            seconds=seconds,
            progress=lambda message: err_console.print(message, highlight=False),
        )
    )
    latency_rows = Table("measure", "n", "p50 ms", "p95 ms", "mean ms", title="memory latency")
    for result in ([report.add] if report.add else []) + report.search:
        latency_rows.add_row(
            result.label,
            f"{result.count}",
            f"{result.p50_ms:.1f}",
            f"{result.p95_ms:.1f}",
            f"{result.mean_ms:.1f}",
        )
    console.print(latency_rows, highlight=False)
    if report.quality:
        quality_table = Table(
            "retrieval",
            "recall@5",
            "recall@10",
            title=f"evidence recall ({report.quality_set.get('questions', 0)} questions, "
            f"{report.quality_set.get('turns', 0)} turns)",
        )
        for mode, values in report.quality.items():
            quality_table.add_row(mode, f"{values['recall@5']:.3f}", f"{values['recall@10']:.3f}")
        console.print(quality_table, highlight=False)
    if report.compacted:
        compacted_table = Table(
            "recall of compacted turns",
            "recall@3",
            "recall@5",
            "recall@10",
            title=f"evidence recall after compaction (newest {report.compacted_window} turns "
            "verbatim)",
        )
        for label, values in report.compacted.items():
            compacted_table.add_row(label, *(f"{values[f'recall@{k}']:.3f}" for k in (3, 5, 10)))
        console.print(compacted_table, highlight=False)
    if report.nothing_lost:
        lost = report.nothing_lost
        console.print(
            f"nothing lost: {lost['clients']} clients x {lost['seconds']:.0f} s, "
            f"{lost['adds']} adds ({lost['acknowledged']} new, {lost['merged_as_duplicates']} "
            f"merged), {lost['searches']} searches, {lost['errors']} errors; missing "
            f"{lost['missing']}, duplicated {lost['duplicated']} -> "
            + ("OK" if lost["ok"] else "FAILED"),
            highlight=False,
        )
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {json_path}", highlight=False)
