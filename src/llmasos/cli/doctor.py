"""``llmasos doctor``: print what `llmasos.doctor` found, as a table or as JSON.

The checks live in `llmasos.doctor`; this module only renders them and sets the exit code
(1 when a required part is missing).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from llmasos.cli.app import app, console, state


@app.command("doctor")
def doctor(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the checks as JSON (stable field names).")
    ] = False,
) -> None:
    """Check the installation: Python, backends, embedded models, database, system packages,
    memory and disk; print what is missing with the command that installs it.

    Exits with 1 when a required part is missing or broken.
    """
    from llmasos.doctor import diagnose

    report = diagnose(state.settings)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        raise typer.Exit(0 if report.ok else 1)
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in report.checks:
        if check.ok:
            status = "[green]ok[/green]"
        elif check.required:
            status = "[red]missing[/red]"
        else:
            status = "[yellow]optional[/yellow]"
        table.add_row(status, check.name, check.detail)
    console.print(table)
    for check in report.problems:
        if check.fix:
            kind = "required" if check.required else "optional"
            console.print(f"{check.name} ({kind}): {check.fix}", highlight=False, soft_wrap=True)
    if report.ok:
        console.print("[green]Every required part is present.[/green]")
    else:
        missing = ", ".join(c.name for c in report.problems if c.required)
        console.print(f"[red]Required parts missing or broken: {missing}[/red]")
        raise typer.Exit(1)
