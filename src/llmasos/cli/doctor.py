"""``llmasos doctor``: print what `llmasos.doctor` found, as a table or as JSON.

The checks live in `llmasos.doctor`; this module only renders them and sets the exit code
(1 when a required part is missing). JSON: ``{"ok": bool, "checks": [{"name", "group",
"ok", "required", "detail", "fix"}]}``.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.root import app, console, state


@app.command("doctor")
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Check that the models are installed without loading them."),
    ] = False,
    serving: Annotated[
        bool,
        typer.Option(
            "--serving",
            help="Only what a first chat answer needs: llama.cpp and the embedded chat model "
            "(the set-up of `make serve` runs this).",
        ),
    ] = False,
) -> None:
    """Check the installation: Python, backends, embedded models, database, system packages,
    memory and disk; print what is missing with the command that installs it.

    Exits with 1 when a required part is missing or broken.

    --json fields: ok, checks; each check has name, group, ok, required, detail, fix.
    """
    from llmasos.doctor import diagnose

    report = diagnose(state.settings, load_models=not quick, serving=serving)
    if as_json:
        print_json(report.to_dict())
        raise typer.Exit(0 if report.ok else 1)
    rows = table(Column("status", key=True), Column("check", key=True), "detail", plain=True)
    for check in report.checks:
        if check.ok:
            status = Text("ok", style="green")
        elif check.required:
            status = Text("missing", style="red")
        else:
            status = Text("optional", style="yellow")
        rows.add_row(status, check.name, check.detail)
    print_table(rows)
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
