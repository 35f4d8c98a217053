"""``llmasos kb create|add|ls|search|ask|rm|chunks``: knowledge bases from the shell.

Every command talks to the running server (indexing is the server's background job, so
``kb add`` uploads, attaches and then follows the file's progress with a bar until it is
indexed or fails with its reason). A store is named by its id or its name. Errors are one
line (the server's message); ``--json`` prints what the API returns.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from llmasos.cli.memory import parse_metadata
from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.remote import base_url, call_server, server_url
from llmasos.cli.root import app, console, err_console, state
from llmasos.errors import InvalidRequestError, LLMasOSError

kb_app = typer.Typer(
    help="Knowledge bases: files indexed for search and cited answers.", no_args_is_help=True
)
app.add_typer(kb_app, name="kb")

POLL_SECONDS = 0.2
STORE_HELP = "The vector store: its id (vs_...) or its name."


def api(method: str, path: str, **kwargs: Any) -> Any:
    return call_server(state.settings, method, path, **kwargs)


def resolve_store(name_or_id: str) -> dict[str, Any]:
    """The store with this id, else the newest store with this name."""
    if name_or_id.startswith("vs_"):
        return dict(api("GET", f"/v1/vector_stores/{name_or_id}"))
    after = None
    while True:
        params: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
        page = api("GET", "/v1/vector_stores", params=params)
        for store in page["data"]:
            if store["name"] == name_or_id:
                return dict(store)
        if not page["has_more"]:
            raise LLMasOSError(f"no knowledge base named {name_or_id!r} (see `llmasos kb ls`)")
        after = page["last_id"]


@kb_app.command("create")
def kb_create(
    name: Annotated[str, typer.Argument(help="A name for the knowledge base.")],
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Most tokens per chunk (all-MiniLM reads 256).")
    ] = 250,
    chunk_overlap: Annotated[
        int, typer.Option("--chunk-overlap", help="Tokens shared by consecutive chunks.")
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Create a knowledge base (an OpenAI vector store).

    --json fields: id, object, created_at, name, usage_bytes, file_counts, status,
    expires_after, expires_at, last_active_at, metadata, chunking_strategy.
    """
    strategy = {
        "type": "static",
        "static": {"max_chunk_size_tokens": chunk_size, "chunk_overlap_tokens": chunk_overlap},
    }
    store = api("POST", "/v1/vector_stores", json={"name": name, "chunking_strategy": strategy})
    if as_json:
        print_json(store)
    else:
        console.print(f"created {store['id']} ({name})", highlight=False)


def upload(path: Path) -> dict[str, Any]:
    """Upload a local file (streamed from disk) to ``/v1/files``."""
    url = server_url(state.settings)
    if url is None:
        raise LLMasOSError(
            f"no LLMasOS server at {base_url(state.settings)}: start one with `llmasos serve`"
        )
    try:
        with path.open("rb") as handle:
            response = httpx.post(
                f"{url}/v1/files",
                files={"file": (path.name, handle)},
                data={"purpose": "assistants"},
                timeout=None,
            )
    except OSError as error:
        raise LLMasOSError(f"cannot read {path}: {error.strerror}") from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        raise LLMasOSError(f"{path.name}: {message}")
    return dict(response.json())


@kb_app.command("add")
def kb_add(
    store: Annotated[str, typer.Argument(help=STORE_HELP)],
    files: Annotated[list[Path], typer.Argument(help="Files to add (txt, md, html, pdf, docx).")],
    attr: Annotated[
        list[str] | None,
        typer.Option("--attr", help="Attribute KEY=VALUE for search filters (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Add files to a knowledge base and wait while they are indexed (a progress bar each).

    A file whose name is already in the store replaces it once indexed. A file that cannot be
    indexed is reported with its reason; the others go on, and the exit code is 1.

    --json fields (one object per file): id, object, usage_bytes, created_at,
    vector_store_id, status, last_error, chunking_strategy, attributes, filename, progress.
    """
    for path in files:
        if not path.is_file():
            raise InvalidRequestError(f"{path}: no such file")
    target = resolve_store(store)
    attributes = parse_metadata(attr, "--attr") if attr else None
    results: list[dict[str, Any]] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks"),
        TimeElapsedColumn(),
        console=err_console,
        transient=as_json,
    ) as progress:
        for path in files:
            task = progress.add_task(path.name, total=None)
            uploaded = upload(path)
            body: dict[str, Any] = {"file_id": uploaded["id"]}
            if attributes is not None:
                body["attributes"] = attributes
            info = api("POST", f"/v1/vector_stores/{target['id']}/files", json=body)
            while info["status"] == "in_progress":
                done, total = info["progress"]["chunks_done"], info["progress"]["chunks_total"]
                progress.update(task, completed=done, total=total or None)
                time.sleep(POLL_SECONDS)
                info = api("GET", f"/v1/vector_stores/{target['id']}/files/{uploaded['id']}")
            total = info["progress"]["chunks_total"]
            progress.update(task, completed=info["progress"]["chunks_done"], total=total or 1)
            results.append(info)
    failed = [r for r in results if r["status"] != "completed"]
    if as_json:
        print_json(results)
    else:
        for r in results:
            if r["status"] == "completed":
                chunks = r["progress"]["chunks_total"]
                console.print(f"{r['filename']}: indexed, {chunks} chunks ({r['id']})")
    for r in failed:
        reason = (r.get("last_error") or {}).get("message", r["status"])
        err_console.print(f"{r['filename']}: failed: {reason}", highlight=False)
    if failed:
        raise typer.Exit(1)


def size(value: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value = value / 1024  # type: ignore[assignment]
    return str(value)


@kb_app.command("ls")
def kb_ls(
    store: Annotated[str | None, typer.Argument(help="List this store's files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List your knowledge bases, or the files of one.

    --json fields: the stores (id, name, status, file_counts, usage_bytes ...) or the files
    (id, filename, status, last_error, progress, attributes ...) as the API returns them.
    """
    if store is None:
        data = api("GET", "/v1/vector_stores", params={"limit": 100})["data"]
        if as_json:
            print_json(data)
            return
        if not data:
            err_console.print("no knowledge bases (create one with `llmasos kb create NAME`)")
            return
        rows = table(Column("id", key=True), Column("name", key=True), "files", "status", "size")
        for s in data:
            counts = s["file_counts"]
            files = f"{counts['completed']}/{counts['total']}"
            if counts["failed"]:
                files += f" ({counts['failed']} failed)"
            rows.add_row(s["id"], s["name"], files, s["status"], size(s["usage_bytes"]))
        print_table(rows, highlight=False)
        return
    target = resolve_store(store)
    data = api("GET", f"/v1/vector_stores/{target['id']}/files", params={"limit": 100})["data"]
    if as_json:
        print_json(data)
        return
    if not data:
        err_console.print(f"{target['name'] or target['id']} has no files")
        return
    rows = table(Column("file", key=True), Column("name", key=True), "status", "chunks", "note")
    for f in data:
        note = (f.get("last_error") or {}).get("message", "")
        rows.add_row(
            f["id"], f["filename"], f["status"], str(f["progress"]["chunks_total"]), Text(note)
        )
    print_table(rows, highlight=False)


@kb_app.command("search")
def kb_search(
    store: Annotated[str, typer.Argument(help=STORE_HELP)],
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=50, help="How many results.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Search a knowledge base by words and meaning, best first.

    --json fields: the search page (object, search_query, data with file_id, filename,
    score, attributes, content, chunk_id, page, headings; vector_store_status,
    file_counts).
    """
    target = resolve_store(store)
    page = api(
        "POST",
        f"/v1/vector_stores/{target['id']}/search",
        json={"query": query, "max_num_results": k},
    )
    if as_json:
        print_json(page)
        return
    if page["vector_store_status"] == "in_progress":
        err_console.print("(still indexing: results come from the files indexed so far)")
    if not page["data"]:
        err_console.print("nothing found")
        return
    rows = table("score", Column("file", key=True), Column("chunk", key=True), "text")
    for r in page["data"]:
        rows.add_row(
            f"{r['score']:.3f}", r["filename"], r["chunk_id"], Text(r["content"][0]["text"])
        )
    print_table(rows, highlight=False)


@kb_app.command("ask")
def kb_ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    store: Annotated[list[str], typer.Option("--store", "-s", help=f"{STORE_HELP} (repeatable).")],
    model: Annotated[str | None, typer.Option("--model", help="The model that answers.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Answer a question from knowledge bases, with numbered citations of the chunks used
    (or say that nothing relevant was found).

    --json fields: service, model, output, usage, citations (number, chunk_id, file_id,
    filename, vector_store_id, quote, score, page, headings).
    """
    ids = [resolve_store(s)["id"] for s in store]
    body: dict[str, Any] = {"question": question, "vector_store_ids": ids}
    if model:
        body["model"] = model
    answer = api("POST", "/v1/services/answer", json=body)
    if as_json:
        print_json(answer)
        return
    console.print(Text(str(answer["output"])))
    for c in answer.get("citations") or []:
        where = c["filename"] + (f", page {c['page']}" if c.get("page") else "")
        quote = " ".join(c["quote"].split())
        quote = quote if len(quote) <= 160 else quote[:157] + "..."
        console.print(Text(f"[{c['number']}] {where} ({c['chunk_id']}): {quote}", style="dim"))


@kb_app.command("rm")
def kb_rm(
    store: Annotated[str, typer.Argument(help=STORE_HELP)],
    file: Annotated[
        str | None, typer.Argument(help="Remove only this file (its id or name) from it.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a knowledge base (its files stay uploaded), or remove one file from it."""
    target = resolve_store(store)
    label = target["name"] or target["id"]
    if file is None:
        if not yes and not typer.confirm(f"Delete knowledge base {label}?", default=False):
            raise typer.Exit(1)
        api("DELETE", f"/v1/vector_stores/{target['id']}")
        console.print(f"deleted {target['id']}", highlight=False)
        return
    file_id = file
    if not file.startswith("file-"):
        files = api("GET", f"/v1/vector_stores/{target['id']}/files", params={"limit": 100})
        matches = [f["id"] for f in files["data"] if f["filename"] == file]
        if not matches:
            raise LLMasOSError(f"{label} has no file named {file!r}")
        file_id = matches[0]
    if not yes and not typer.confirm(f"Remove {file} from {label}?", default=False):
        raise typer.Exit(1)
    api("DELETE", f"/v1/vector_stores/{target['id']}/files/{file_id}")
    console.print(f"removed {file_id} from {target['id']}", highlight=False)


@kb_app.command("chunks")
def kb_chunks(
    store: Annotated[str, typer.Argument(help=STORE_HELP)],
    target: Annotated[
        str, typer.Argument(help="A file (id) to list its chunks, or a chunk (chunk_...) to show.")
    ],
    text: Annotated[
        str | None, typer.Option("--text", help="Replace the chunk's text (re-indexed at once).")
    ] = None,
    disable: Annotated[
        bool, typer.Option("--disable", help="Take the chunk out of search.")
    ] = False,
    enable: Annotated[bool, typer.Option("--enable", help="Put it back.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List a file's chunks, or show, edit, disable or enable one chunk.

    --json fields: id, object, vector_store_id, file_id, filename, position, text, tokens,
    page, headings, disabled, edited, updated_at.
    """
    if disable and enable:
        raise InvalidRequestError("give --disable or --enable, not both")
    store_id = resolve_store(store)["id"]
    if not target.startswith("chunk_"):
        if text is not None or disable or enable:
            raise InvalidRequestError("--text, --disable and --enable take a chunk id (chunk_...)")
        data = api("GET", f"/v1/vector_stores/{store_id}/files/{target}/chunks")["data"]
        if as_json:
            print_json(data)
            return
        rows = table(Column("chunk", key=True), "pos", "tokens", "state", "text")
        for c in data:
            state_ = "disabled" if c["disabled"] else ("edited" if c["edited"] else "")
            rows.add_row(c["id"], str(c["position"]), str(c["tokens"]), state_, Text(c["text"]))
        print_table(rows, highlight=False)
        return
    path = f"/v1/vector_stores/{store_id}/chunks/{target}"
    if text is not None or disable or enable:
        body: dict[str, Any] = {}
        if text is not None:
            body["text"] = text
        if disable or enable:
            body["disabled"] = disable
        chunk = api("PATCH", path, json=body)
    else:
        chunk = api("GET", path)
    if as_json:
        print_json(chunk)
        return
    state_ = "disabled" if chunk["disabled"] else ("edited" if chunk["edited"] else "enabled")
    console.print(
        f"{chunk['id']}  {chunk['filename']}  position {chunk['position']}  "
        f"{chunk['tokens']} tokens  {state_}",
        highlight=False,
    )
    console.print(Text(chunk["text"]))
