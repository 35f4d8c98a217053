"""``llmasos config show``: the effective settings and where each came from."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from llmasos.cli.output import print_json
from llmasos.cli.root import app, console, state
from llmasos.config import Settings, setting_sources

config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print every setting, its value and its source (cli, env, config.toml, default)."""
    settings = state.settings
    sources = setting_sources(settings, state.overrides)
    values = settings.model_dump(mode="json")
    for name in values:  # passwords are set, never shown
        if name.endswith("_password") and values[name]:
            values[name] = "********"
    if as_json:
        rows = {k: {"value": values[k], "source": sources[k]} for k in Settings.model_fields}
        print_json(rows)
        return
    table = Table("setting", "value", "source", title=f"config file: {settings.config_file}")
    for name in Settings.model_fields:
        table.add_row(name, json.dumps(values[name]), sources[name])
    console.print(table)
