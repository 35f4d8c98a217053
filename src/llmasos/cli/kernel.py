"""``llmasos ps``, ``stop`` and ``load``: the resident models of a running server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from llmasos.cli.models import human_size
from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.remote import call_server
from llmasos.cli.root import app, console, state


def _until(expires_at: str | None) -> str:
    if not expires_at:
        return "Forever"
    try:
        when = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return expires_at
    seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds > 10**8:
        return "Forever"
    if seconds <= 0:
        return "Stopping..."
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} minutes from now" if minutes else f"{secs} seconds from now"


JOB_STATES = {"waiting": "waiting for memory", "yielded": "yielded to serving"}


def resident_model(model: dict[str, Any]) -> dict[str, Any]:
    """One model of ``llmasos ps --json``, from the server's ``/api/ps`` entry."""
    details = model.get("llmasos", {})
    return {
        "name": model["name"],
        "id": model.get("digest", "")[:12],
        "digest": model.get("digest", ""),
        "size": model.get("size", 0),
        "processor": details.get("processor", "cpu"),
        "backend": details.get("backend", ""),
        "context_length": model.get("context_length"),
        "running": details.get("running", 0),
        "waiting": details.get("waiting", 0),
        "expires_at": model.get("expires_at"),
    }


@app.command()
def ps(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List the models the running server has loaded; REQUESTS is running/waiting. Background
    toolchain jobs sharing its memory budget follow, with their memory and state (running,
    waiting for memory, yielded to serving).

    --json fields: name, id, digest, size, processor, backend, context_length, running, waiting,
    expires_at. The jobs, as data: `llmasos jobs ps --json`.
    """
    data = call_server(state.settings, "GET", "/api/ps")
    models = [resident_model(model) for model in data.get("models", [])]
    if as_json:
        print_json(models)
        return
    rows = table(
        Column("NAME", key=True),
        Column("ID", key=True),
        "SIZE",
        "PROCESSOR",
        "BACKEND",
        "CONTEXT",
        "REQUESTS",
        "UNTIL",
        plain=True,
    )
    for model in models:
        rows.add_row(
            model["name"],
            model["id"],
            human_size(model["size"]),
            f"100% {str(model['processor']).upper()}",
            model["backend"],
            str(model["context_length"] or ""),
            f"{model['running']}/{model['waiting']}",
            _until(model["expires_at"]),
        )
    print_table(rows)
    jobs, memory = data.get("jobs") or [], data.get("memory")
    if memory:
        console.print(
            f"memory: {human_size(memory['models'])} models + {human_size(memory['jobs'])} jobs "
            f"of a {human_size(memory['budget'])} budget",
            markup=False,
            highlight=False,
        )
    if jobs:
        job_rows = table(Column("JOB", key=True), "STATE", "MEMORY", "COMMAND", plain=True)
        for job in jobs:
            job_rows.add_row(
                job["id"], JOB_STATES.get(job["state"], job["state"]),
                human_size(job["memory_bytes"] or job["estimate_bytes"]), job["command"],
            )  # fmt: skip
        print_table(job_rows)


@app.command()
def stop(model: Annotated[str, typer.Argument(help="Model to unload.")]) -> None:
    """Unload a model from the running server."""
    call_server(state.settings, "POST", "/api/generate", json={"model": model, "keep_alive": 0})
    console.print(f"stopped {model}")


@app.command()
def load(
    model: Annotated[str, typer.Argument(help="Model to load.")],
    keep_alive: Annotated[
        str | None, typer.Option("--keep-alive", help="How long to keep it ('5m', '-1').")
    ] = None,
) -> None:
    """Load a model into the running server now (so the first request is fast)."""
    body: dict[str, object] = {"model": model}
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    call_server(state.settings, "POST", "/api/generate", json=body)
    console.print(f"loaded {model}")
