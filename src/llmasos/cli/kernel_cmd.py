"""``llmasos ps``, ``stop`` and ``load``: the resident models of a running server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from llmasos.cli.app import app, console, state
from llmasos.cli.models import human_size
from llmasos.cli.remote import call_server


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


@app.command()
def ps() -> None:
    """List the models the running server has loaded; REQUESTS is running/waiting."""
    data = call_server(state.settings, "GET", "/api/ps")
    table = Table(
        "NAME",
        "ID",
        "SIZE",
        "PROCESSOR",
        "BACKEND",
        "CONTEXT",
        "REQUESTS",
        "UNTIL",
        box=None,
        pad_edge=False,
    )
    for column in table.columns:
        column.no_wrap = True
    for model in data.get("models", []):
        details = model.get("llmasos", {})
        table.add_row(
            model["name"],
            model.get("digest", "")[:12],
            human_size(model.get("size", 0)),
            f"100% {details.get('processor', 'CPU').upper()}",
            details.get("backend", ""),
            str(model.get("context_length", "")),
            f"{details.get('running', 0)}/{details.get('waiting', 0)}",
            _until(model.get("expires_at")),
        )
    console.print(table)


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
