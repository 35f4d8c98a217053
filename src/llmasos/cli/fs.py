"""``llmasos fs put|get|ls|mv|rm|find|history|diff|rollback|summarize|share|ask``: your
semantic file space.

Each command talks to a running server when one answers (as the machine's owner, like the
other local commands), else opens the database, the blobs and the kernel in this process;
both give the same answers (the API's JSON, which ``--json`` prints). ``rm``, ``rollback``
and the destructive steps of ``ask`` ask before they run unless given ``--yes``. A path is
read from the root of your file space (``notes/a.md`` is ``/notes/a.md``); ``PATH@V`` names
version V.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import httpx
import typer
from rich.text import Text

from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.remote import in_process, server_url
from llmasos.cli.root import app, console, err_console, state
from llmasos.errors import InvalidRequestError, LLMasOSError

fs_app = typer.Typer(help="Your files: versioned, found by meaning.", no_args_is_help=True)
app.add_typer(fs_app, name="fs")

T = TypeVar("T")
YES_HELP = "Do not ask for confirmation."
_SIZE = re.compile(r"(?i)\s*([0-9]+(?:\.[0-9]+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*")
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str | None, option: str) -> int | None:
    """``10k``, ``2MB``, ``512`` -> bytes."""
    if text is None:
        return None
    match = _SIZE.fullmatch(text)
    if match is None:
        raise InvalidRequestError(f"{option}: {text!r} is not a size like 512, 10k or 2MB")
    unit = (match.group(2) or "").lower()[:1]
    return int(float(match.group(1)) * _UNITS[unit])


def parse_date(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequestError(f"{option}: {text!r} is not a date like 2025-01-31") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def url_path(path: str) -> str:
    return quote(path.lstrip("/"), safe="/")


# --- server or local ------------------------------------------------------------------------


def request(method: str, path: str, **kwargs: Any) -> httpx.Response | None:
    """The running server's response (errors raised as one line), or None when none runs."""
    url = server_url(state.settings)
    if url is None:
        return None
    response = httpx.request(method, f"{url}{path}", timeout=None, **kwargs)
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        raise LLMasOSError(str(message))
    return response


def run_local(work: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Run ``work(file_system, owner)`` against the database and an in-process kernel."""
    from llmasos.knowledge.filesystem import FileSystem
    from llmasos.knowledge.fstypes import FileOwner

    settings = state.settings

    async def go(database: Any, engine: Any) -> T:
        return await work(FileSystem.open(settings, database, engine), FileOwner.for_user(None))

    return in_process(settings, state.store, go)


def local_summarizer(fs: Any, model: str | None) -> Any:
    from llmasos.services.runner import runner_for

    settings = state.settings
    runner = runner_for(fs.engine, settings.home, state.store, settings.default_model)

    async def summarize(text: str) -> tuple[str, str]:
        result = await runner.call("summarize", {"text": text}, model=model)
        return str(result.output), result.model

    return summarize


def answer(
    method: str, path: str, local: Callable[[Any, Any], Awaitable[Any]], **kwargs: Any
) -> Any:
    """The server's JSON answer, or ``local``'s when no server runs."""
    response = request(method, path, **kwargs)
    if response is not None:
        return response.json()
    return run_local(local)


def confirm(question: str, yes: bool) -> None:
    if not yes and not typer.confirm(question, default=False):
        raise typer.Exit(1)


def when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")


def print_version(verb: str, info: dict[str, Any]) -> None:
    console.print(
        f"{verb} {info['path']} (version {info['version']}, {info['size']} bytes, {info['type']})",
        highlight=False,
        markup=False,
    )
    if info.get("note"):
        err_console.print(info["note"], highlight=False, markup=False)


# --- commands -------------------------------------------------------------------------------


@fs_app.command("put")
def fs_put(
    local: Annotated[Path, typer.Argument(help="The file to store.")],
    path: Annotated[str, typer.Argument(help="Where in your file space, e.g. /notes/a.md.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Store a file (a new file, or the next version of the file at PATH).

    --json fields: object, path, version, operation, deleted, digest, size, media_type, type,
    modified_at, restored_from, note.
    """
    from llmasos.knowledge.fspaths import check_path

    normal = check_path(path)
    if not local.is_file():
        raise InvalidRequestError(f"{local} is not a file")
    with local.open("rb") as handle:
        response = request("PUT", f"/v1/fs/files/{url_path(normal)}", content=handle)
    if response is not None:
        info = response.json()
    else:

        async def work(fs: Any, owner: Any) -> dict[str, Any]:
            return dict((await fs.put(owner, normal, local)).to_dict())

        info = run_local(work)
    if as_json:
        print_json(info)
    else:
        print_version("wrote", info)


@fs_app.command("get")
def fs_get(
    path: Annotated[str, typer.Argument(help="PATH or PATH@VERSION.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """Print a file (or one of its versions), or write it to -o FILE."""
    from llmasos.knowledge.fspaths import parse_versioned

    normal, version = parse_versioned(path)
    params = {"version": version} if version else {}
    response = request("GET", f"/v1/fs/files/{url_path(normal)}", params=params)
    if response is not None:
        data = response.content
    else:

        async def work(fs: Any, owner: Any) -> bytes:
            return bytes(fs.read(owner, normal, version))

        data = run_local(work)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        output.write_bytes(data)
        err_console.print(f"wrote {len(data)} bytes to {output}", highlight=False)


@fs_app.command("ls")
def fs_ls(
    path: Annotated[str, typer.Argument(help="A directory or a file.")] = "/",
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List a directory.

    --json fields: object, name, path, kind, size, modified_at, version,
    type, files.
    """
    from llmasos.knowledge.fspaths import check_path

    directory = check_path(path, directory=True)

    async def work(fs: Any, owner: Any) -> dict[str, Any]:
        return {"data": [e.to_dict() for e in fs.list_dir(owner, directory)]}

    entries = answer("GET", "/v1/fs/list", work, params={"path": directory})["data"]
    if as_json:
        print_json(entries)
        return
    if not entries:
        err_console.print("no files", highlight=False)
        return
    rows = table(
        Column("name", key=True),
        "kind",
        Column("size", justify="right"),
        "version",
        "type",
        "modified",
    )
    for entry in entries:
        directory_entry = entry["kind"] == "directory"
        rows.add_row(
            Text(entry["name"] + ("/" if directory_entry else "")),
            entry["kind"] if not directory_entry else f"dir ({entry['files']} files)",
            str(entry["size"]),
            "" if directory_entry else str(entry["version"]),
            entry["type"] or "",
            when(entry["modified_at"]),
        )
    print_table(rows, highlight=False)


@fs_app.command("mv")
def fs_mv(
    source: Annotated[str, typer.Argument(help="The file to move.")],
    destination: Annotated[str, typer.Argument(help="New path, or a directory (ends with /).")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Move or rename a file (its history moves with it).

    --json fields: object, path, version, operation, deleted, digest, size, media_type, type,
    modified_at, restored_from, note.
    """

    async def work(fs: Any, owner: Any) -> dict[str, Any]:
        return dict((await fs.move(owner, source, destination)).to_dict())

    info = answer("POST", "/v1/fs/move", work, json={"from": source, "to": destination})
    if as_json:
        print_json(info)
    else:
        console.print(
            f"moved {source} to {info['path']} (version {info['version']})",
            highlight=False,
            markup=False,
        )


@fs_app.command("rm")
def fs_rm(
    path: Annotated[str, typer.Argument(help="The file to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help=YES_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Delete a file (asks first unless --yes); `fs rollback PATH` brings it back.

    --json fields: object, path, version, operation, deleted, digest, size, media_type, type,
    modified_at, restored_from, note.
    """
    from llmasos.knowledge.fspaths import check_path

    normal = check_path(path)
    confirm(f"Delete {normal}?", yes)

    async def work(fs: Any, owner: Any) -> dict[str, Any]:
        return dict((await fs.delete(owner, normal)).to_dict())

    info = answer("DELETE", f"/v1/fs/files/{url_path(normal)}", work)
    if as_json:
        print_json(info)
    else:
        console.print(
            f"deleted {normal} (version {info['version']}; `llmasos fs rollback "
            f"{normal}` restores it)",
            highlight=False,
            markup=False,
        )


@fs_app.command("find")
def fs_find(
    query: Annotated[str, typer.Argument(help="What you are looking for, in words.")],
    k: Annotated[int, typer.Option("-k", help="How many files (1-50).")] = 10,
    file_type: Annotated[
        str | None, typer.Option("--type", help="txt, md, html, pdf, docx or binary.")
    ] = None,
    min_size: Annotated[str | None, typer.Option("--min-size", help="e.g. 10k.")] = None,
    max_size: Annotated[str | None, typer.Option("--max-size", help="e.g. 2MB.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Modified on or after (2025-01-31).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Modified on or before.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Find files by meaning, words, names and summaries; prints paths with scores.

    matched says what matched best: name, content or summary.

    --json fields: object, path, score, version, type, size, modified_at, matched, snippet,
    page.
    """
    body: dict[str, Any] = {
        "query": query,
        "k": k,
        "type": file_type,
        "min_size": parse_size(min_size, "--min-size"),
        "max_size": parse_size(max_size, "--max-size"),
        "modified_after": parse_date(since, "--since"),
        "modified_before": parse_date(until, "--until"),
    }

    async def work(fs: Any, owner: Any) -> dict[str, Any]:
        from llmasos.knowledge.fstypes import FindFilters

        filters = FindFilters(
            type=file_type,
            min_size=body["min_size"],
            max_size=body["max_size"],
            modified_after=body["modified_after"],
            modified_before=body["modified_before"],
        )
        hits = await fs.find(owner, query, k=k, filters=filters)
        return {"data": [h.to_dict() for h in hits]}

    wire = {key: (v.isoformat() if isinstance(v, datetime) else v) for key, v in body.items()}
    hits = answer("POST", "/v1/fs/find", work, json=wire)["data"]
    if as_json:
        print_json(hits)
        return
    if not hits:
        err_console.print("no matching files", highlight=False)
        return
    rows = table(Column("path", key=True), Column("score", key=True), "type", "matched", "snippet")
    for hit in hits:
        rows.add_row(
            Text(hit["path"]),
            f"{hit['score']:.4f}",
            hit["type"],
            hit["matched"],
            Text(hit["snippet"]),
        )
    print_table(rows, highlight=False)


@fs_app.command("history")
def fs_history(
    path: Annotated[str, typer.Argument(help="A file (or a deleted one).")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """A file's versions, newest first (as --json: a list, one object per version).

    --json fields: object, path, version, operation, deleted, digest, size, media_type, type,
    modified_at, restored_from, note.
    """
    from llmasos.knowledge.fspaths import check_path

    normal = check_path(path)

    async def work(fs: Any, owner: Any) -> dict[str, Any]:
        return {"data": [v.to_dict() for v in fs.history(owner, normal)]}

    versions = answer("GET", f"/v1/fs/history/{url_path(normal)}", work)["data"]
    if as_json:
        print_json(versions)
        return
    rows = table(
        Column("version", key=True),
        "operation",
        Column("path", key=True),
        Column("size", justify="right"),
        "digest",
        "when",
    )
    for v in versions:
        operation = v["operation"] + (f" to {v['restored_from']}" if v["restored_from"] else "")
        rows.add_row(
            str(v["version"]),
            operation,
            Text(v["path"]),
            str(v["size"]),
            v["digest"].removeprefix("sha256:")[:12],
            when(v["modified_at"]),
        )
    print_table(rows, highlight=False)


@fs_app.command("diff")
def fs_diff(
    first: Annotated[str, typer.Argument(help="PATH@V1")],
    second: Annotated[str, typer.Argument(help="PATH@V2 (or just @V2 or V2).")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Compare two versions of a file (a unified diff of their text).

    --json fields: object, path, from, to, identical, binary, diff.
    """
    from llmasos.knowledge.fspaths import parse_versioned

    path, a = parse_versioned(first, "PATH@V1")
    second = second if "/" in second else f"{path}@{second.lstrip('@')}"
    other, b = parse_versioned(second, "PATH@V2")
    if a is None or b is None:
        raise InvalidRequestError("name both versions: llmasos fs diff /a.md@1 /a.md@2")
    if other != path:
        raise InvalidRequestError(f"both versions must be of one file ({path} and {other})")

    async def work(fs: Any, owner: Any) -> dict[str, Any]:
        return dict(fs.diff(owner, path, a, b))

    result = answer("GET", f"/v1/fs/diff/{url_path(path)}", work, params={"from": a, "to": b})
    if as_json:
        print_json(result)
    elif result["identical"]:
        console.print(f"{path}@{a} and @{b} are identical", highlight=False, markup=False)
    elif result["binary"]:
        console.print(f"{path}@{a} and @{b} differ (not text)", highlight=False, markup=False)
    else:
        sys.stdout.write(result["diff"])
        sys.stdout.flush()


@fs_app.command("rollback")
def fs_rollback(
    path: Annotated[str, typer.Argument(help="The file (or a deleted one).")],
    to: Annotated[
        int | None, typer.Option("--to", help="The version to restore (default: previous).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help=YES_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Restore an earlier version as a new version (asks first unless --yes).

    --json fields: object, path, version, operation, deleted, digest, size, media_type, type,
    modified_at, restored_from, note.
    """
    from llmasos.knowledge.fspaths import check_path

    normal = check_path(path)
    confirm(f"Roll {normal} back to {f'version {to}' if to else 'its previous version'}?", yes)

    async def work(fs: Any, owner: Any) -> dict[str, Any]:
        return dict((await fs.rollback(owner, normal, to)).to_dict())

    info = answer("POST", "/v1/fs/rollback", work, json={"path": normal, "to": to})
    if as_json:
        print_json(info)
    else:
        print_version(f"restored version {info['restored_from']} as", info)


@fs_app.command("summarize")
def fs_summarize(
    paths: Annotated[list[str], typer.Argument(help="One or more files.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model to use.")] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Summarize again even if a summary is kept.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Summarize files with the summarize service; the summary is kept and found by find.

    --json fields: object, path, summary, model, cached.
    """

    async def work(fs: Any, owner: Any) -> dict[str, Any]:
        results = await fs.summarize(owner, paths, local_summarizer(fs, model), refresh=refresh)
        return {"data": [r.to_dict() for r in results]}

    body = {"paths": paths, "model": model, "refresh": refresh}
    results = answer("POST", "/v1/fs/summarize", work, json=body)["data"]
    if as_json:
        print_json(results)
        return
    for result in results:
        console.print(Text(result["path"], style="bold"))
        console.print(Text(result["summary"]))


@fs_app.command("share")
def fs_share(
    path: Annotated[str, typer.Argument(help="The file to share.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Make a read-only link: whoever holds it reads the file's current version, no key
    needed, until the file is deleted.

    --json fields: object, id, path, created_at, token, url.
    """

    async def work(fs: Any, owner: Any) -> dict[str, Any]:
        data = dict(fs.share(owner, path).to_dict())
        data["url"] = f"/v1/fs/shared/{data['token']}"
        return data

    share = answer("POST", "/v1/fs/shares", work, json={"path": path})
    if as_json:
        print_json(share)
        return
    from llmasos.cli.remote import base_url

    console.print(f"{base_url(state.settings)}{share['url']}", highlight=False, markup=False)
    err_console.print(
        f"share {share['id']} of {share['path']}: shown once; anyone holding it can read the file",
        highlight=False,
        markup=False,
    )


def _print_plan(steps: list[dict[str, Any]]) -> None:
    for number, step in enumerate(steps, start=1):
        what = step["query"] if step["action"] == "find" else step["path"]
        if step["action"] in ("move", "rollback") and step["to"]:
            what = f"{what} -> {step['to']}"
        line = Text(f"{number}. {step['action']} {what or ''}  [{step['status']}]")
        console.print(line)
        if step["problem"]:
            console.print(
                Text(
                    f"   refused: {step['problem']}"
                    if step["status"] == "refused"
                    else f"   {step['problem']}"
                )
            )
        result = step.get("result")
        if step["action"] == "find" and isinstance(result, list):
            for hit in result:
                console.print(Text(f"   {hit['path']}  {hit['score']:.4f}"))
        elif step["action"] == "summarize" and isinstance(result, dict):
            console.print(Text(f"   {result['summary']}"))


@fs_app.command("ask")
def fs_ask(
    instruction: Annotated[str, typer.Argument(help="What to do, in words.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model to plan with.")] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Run destructive steps unasked.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Turn an instruction into file operations: prints the plan, runs find and summarize,
    and runs move, delete and rollback only after you confirm (or with --yes). Every step
    is checked against your files first; a step that cannot run is refused with why.

    Each step has action, query, path, to, destructive, status (done, refused,
    needs_confirmation, failed), problem and result.

    --json fields: object, steps, model, usage.
    """
    from llmasos.knowledge import fsplan

    async def plan_locally(fs: Any, owner: Any) -> dict[str, Any]:
        plan = await fsplan.propose(fs.engine, fs, owner, instruction, model=model)
        plan.steps = await fsplan.run(
            fs, owner, plan.steps, local_summarizer(fs, model), confirm=yes
        )
        return plan.to_dict()

    body = {"instruction": instruction, "model": model, "confirm": yes}
    plan = answer("POST", "/v1/fs/ask", plan_locally, json=body)
    waiting = [s for s in plan["steps"] if s["status"] == "needs_confirmation"]
    if not waiting or as_json:
        print_json(plan) if as_json else _print_plan(plan["steps"])
        return
    _print_plan(plan["steps"])
    confirm(f"Run the {len(waiting)} step(s) that change files?", False)

    async def run_locally(fs: Any, owner: Any) -> dict[str, Any]:
        steps = fsplan.parse_steps(waiting)
        done = await fsplan.run(fs, owner, steps, local_summarizer(fs, model), confirm=True)
        return fsplan.Plan(steps=done).to_dict()

    ran = answer("POST", "/v1/fs/plan", run_locally, json={"steps": waiting, "confirm": True})
    _print_plan(ran["steps"])
