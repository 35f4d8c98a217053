"""Generates the CLI reference (docs/cli.md) from the commands' own help.

``python -m llmasos.cli.reference > docs/cli.md`` writes it; a test checks that the file in
the repository matches, so the reference can never drift from ``--help``.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer

from llmasos.cli import commands  # noqa: F401 - registers the commands
from llmasos.cli.main import root  # noqa: F401 - registers the root options
from llmasos.cli.root import app


def _param_row(param: Any) -> str:
    if param.param_type_name == "option":
        names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
        help_text = (param.help or "").replace("|", "\\|").replace("\n", " ")
        default = param.default
        if default not in (None, False, (), []) and param.show_default is not False:
            help_text += f" (default: `{default}`)"
        return f"| {names} | {help_text} |"
    return f"| `{(param.name or '').upper()}` | {getattr(param, 'help', None) or 'argument'} |"


def _render(command: Any, path: list[str], out: list[str]) -> None:
    title = " ".join(path)
    out.append(f"{'#' * min(len(path) + 1, 4)} `{title}`\n")
    doc = inspect.cleandoc(command.help or "")
    if doc:
        out.append(doc + "\n")
    params = [p for p in command.params if p.name not in ("help",)]
    general = [p for p in params if getattr(p, "rich_help_panel", None) != "Settings"]
    settings = [p for p in params if getattr(p, "rich_help_panel", None) == "Settings"]
    if general:
        out.append("| option | meaning |\n|---|---|")
        out.extend(_param_row(p) for p in general)
        out.append("")
    if settings:
        out.append(
            f"Settings flags: {', '.join(f'`{p.opts[0]}`' for p in settings if p.opts)} "
            "(see `llmasos --help`)\n"
            if path != ["llmasos"]
            else "| setting flag | meaning |\n|---|---|"
        )
        if path == ["llmasos"]:
            out.extend(_param_row(p) for p in settings)
            out.append("")
    if hasattr(command, "commands"):
        for name in sorted(command.commands):
            _render(command.commands[name], [*path, name], out)


def render_reference() -> str:
    command = typer.main.get_command(app)
    out = [
        "# CLI reference\n",
        "Generated from the commands' help by `make docs` "
        "(`python -m llmasos.cli.reference`); a test keeps it in step.\n",
        "Every setting is also an `LLMASOS_*` environment variable and a key in "
        "`$LLMASOS_HOME/config.toml`; a flag wins over the variable, which wins over the "
        "file.\n",
        "Every list and show command takes `--json`: plain JSON on standard output, with the "
        "field names its help lists under `--json fields`; those names are stable (a test "
        "holds each command to its list). Tables never cut an id, a model name or a path: "
        "other columns wrap, and on a terminal too narrow for the table each row prints as "
        "a block of `header  value` lines.\n",
    ]
    _render(command, ["llmasos"], out)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render_reference(), end="")
