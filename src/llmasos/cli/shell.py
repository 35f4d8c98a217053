"""``llmasos shell``: an OS you can talk to.

Each line read becomes a task on the running server (``POST /v1/tasks``) with the ``os``
tool set — the models installed and loaded, services, apps, your tasks, memory and disk,
and ``app_launch`` — plus any ``--tool`` given. Its steps print as they happen; a step with
a side effect asks, inline, whether it may run, and the next line answered ``y`` (or
``yes``) approves it, anything else refuses it. Works the same with a terminal or with
lines piped in, so it can be scripted and tested; ``exit``, ``quit`` or end of input leave.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from llmasos.cli.remote import call_server
from llmasos.cli.root import app, console, err_console, state
from llmasos.cli.tasks import follow
from llmasos.errors import LLMasOSError

PROMPT = "llmasos> "
LEAVE = {"exit", "quit", "bye"}


def _read(prompt: str) -> str | None:
    """One line of input (None at its end); the prompt is shown on a terminal only."""
    if sys.stdin.isatty():
        try:
            return input(prompt)
        except EOFError:
            return None
    line = sys.stdin.readline()
    return None if line == "" else line.rstrip("\n")


def _ask(step: dict[str, Any]) -> bool:
    console.print(
        Text(f"allow step {step['step']}: {step.get('description')}? [y/N] "),
        end="" if sys.stdin.isatty() else "\n",
        highlight=False,
    )
    answer = _read("")
    return (answer or "").strip().lower() in ("y", "yes")


@app.command("shell")
def shell(
    model: Annotated[str | None, typer.Option("--model", "-m", help="The model.")] = None,
    tools: Annotated[
        list[str] | None,
        typer.Option("--tool", help="Another tool or group the tasks may use (repeatable)."),
    ] = None,
    only: Annotated[
        bool, typer.Option("--only", help="Only the --tool tools, without the os tool set.")
    ] = False,
    tool_choice: Annotated[
        str,
        typer.Option("--tool-choice", help="auto, or required: each task starts with a call."),
    ] = "auto",
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Steps per line.")] = 6,
) -> None:
    """Talk to the OS: each line becomes a task with the os tools (models, services, apps,
    tasks, memory and disk, token usage; making a model, installing and launching an app);
    side effects ask y/n inline."""
    allowed = list(dict.fromkeys(([] if only else ["os"]) + list(tools or [])))
    if not allowed:
        raise LLMasOSError("--only needs at least one --tool")
    if sys.stdin.isatty():
        err_console.print(
            "Talk to LLMasOS: ask about models, services, apps, tasks, memory and disk. "
            "`exit` leaves.",
            highlight=False,
        )
    while True:
        line = _read(PROMPT)
        if line is None:
            break
        line = line.strip()
        if not line:
            continue
        if line.lower() in LEAVE:
            break
        if not sys.stdin.isatty():
            console.print(Text(PROMPT + line), highlight=False)
        body = {
            "instruction": line,
            "model": model,
            "tools": allowed,
            "tool_choice": tool_choice,
            "budget": {"max_steps": max_steps},
        }
        try:
            task = call_server(state.settings, "POST", "/v1/tasks", json=body)
            last = follow(task["id"], ask=_ask) or task
        except LLMasOSError as error:  # one bad line does not end the shell
            err_console.print(f"error: {error.message}", highlight=False)
            continue
        if last.get("result"):
            console.print(Text(last["result"]), highlight=False)
        err_console.print(
            f"task {last.get('id')} {last.get('status')}: {last.get('steps', 0)} steps",
            highlight=False,
        )
