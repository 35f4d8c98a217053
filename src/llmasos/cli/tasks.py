"""``llmasos do "..."`` and ``llmasos task ps|logs|kill|approve|deny``.

Tasks run inside the server (they outlive the command), so these commands need one running;
they act as the machine's owner, like the other local commands. ``do`` starts a task and
follows its steps live over ``/v1/tasks/{id}/events``; a step that needs approval is asked
about on a terminal (``--yes`` approves every one), and without a terminal the command
leaves the task waiting and says how to approve it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table
from rich.text import Text

from llmasos.cli.bench import bench_app
from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.remote import base_url, call_server, server_url
from llmasos.cli.root import app, console, err_console, state
from llmasos.errors import LLMasOSError

task_app = typer.Typer(help="Agent tasks: list, follow, kill, approve.", no_args_is_help=True)
app.add_typer(task_app, name="task")

MAX_SHOWN = 200


def _short(value: Any, limit: int = MAX_SHOWN) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_step(step: dict[str, Any]) -> None:
    """One line per step state: the call and its arguments, then its result."""
    number, status = step["step"], step["status"]
    if step["kind"] == "answer":
        return  # the task's result is printed once at the end
    head = f"[{number}] {step['tool']} {_short(step.get('arguments') or {}, 120)}"
    if status == "running":
        console.print(Text(f"{head} ..."), highlight=False)
    elif status == "waiting_approval":
        console.print(Text(f"{head} needs approval: {step.get('description')}"), highlight=False)
    elif status in ("completed", "failed"):
        mark = "->" if status == "completed" else "-> error:"
        console.print(Text(f"{head} {mark} {_short(step.get('result'))}"), highlight=False)
    elif status == "denied":
        console.print(Text(f"{head} denied"), highlight=False)


Ask = Callable[[dict[str, Any]], bool]
"""Asks whoever is there whether a waiting step may run (``llmasos shell`` reads stdin)."""


def decide(task_id: str, step: dict[str, Any], yes: bool, ask: Ask | None = None) -> bool:
    """Approve or deny a waiting step; False when nobody can be asked."""
    number = step["step"]
    if yes:
        approve = True
    elif ask is not None:
        approve = ask(step)
    elif sys.stdin.isatty():
        approve = typer.confirm(f"Allow step {number}: {step.get('description')}?", default=False)
    else:
        err_console.print(
            f"task {task_id} waits for approval of step {number}: {step.get('description')}\n"
            f"approve with `llmasos task approve {task_id} {number}` "
            f"(or `llmasos task deny {task_id} {number}`)",
            highlight=False,
        )
        return False
    verb = "approve" if approve else "deny"
    call_server(state.settings, "POST", f"/v1/tasks/{task_id}/steps/{number}/{verb}")
    return True


def follow(
    task_id: str, *, yes: bool = False, interactive: bool = True, ask: Ask | None = None
) -> dict[str, Any]:
    """Print a task's steps as they come; returns the task as it last stood."""
    url = server_url(state.settings) or base_url(state.settings)
    last: dict[str, Any] = {}
    decided: set[int] = set()
    try:
        with httpx.stream("GET", f"{url}/v1/tasks/{task_id}/events", timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                message = response.json().get("error", {}).get("message", response.text)
                raise LLMasOSError(str(message))
            kind = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: ") :]
                    continue
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[len("data: ") :])
                if kind == "step":
                    show_step(data)
                    waiting = data["status"] == "waiting_approval"
                    if waiting and interactive and data["step"] not in decided:
                        decided.add(data["step"])
                        if not decide(task_id, data, yes, ask):
                            task: dict[str, Any] = call_server(
                                state.settings, "GET", f"/v1/tasks/{task_id}"
                            )
                            return task
                elif kind == "task":
                    last = data
    except httpx.HTTPError as error:
        raise LLMasOSError(f"lost the server while following task {task_id}: {error}") from None
    return last


def finish(task: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(task)
    status = task.get("status", "unknown")
    if not as_json:
        if task.get("result"):
            console.print(Text(task["result"]), highlight=False)
        usage = task.get("usage", {})
        err_console.print(
            f"task {task.get('id')} {status}: {task.get('steps', 0)} steps, "
            f"{usage.get('total_tokens', 0)} tokens, {task.get('elapsed_seconds', 0):g} s",
            highlight=False,
        )
    if status not in ("completed", "waiting_approval"):
        raise typer.Exit(1)


@app.command("do")
def do(
    instruction: Annotated[str, typer.Argument(help="What to do, in plain words.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="The model.")] = None,
    tools: Annotated[
        list[str] | None,
        typer.Option("--tool", help="A tool or group the task may use (repeatable; default all)."),
    ] = None,
    grant: Annotated[
        list[str] | None,
        typer.Option("--grant", help="A side-effecting tool approved in advance (repeatable)."),
    ] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Step budget.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Token budget.")] = None,
    max_seconds: Annotated[
        float | None, typer.Option("--max-seconds", help="Running-time budget.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve every step that asks.")] = False,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Print the task id and return at once.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Run a task: the model plans, calls tools, and answers; steps show as they happen.

    Steps with side effects ask for approval (on a terminal; --yes approves them).
    Exits 1 when the task fails, is stopped by its budget or is cancelled.

    --json fields: id, object, status, instruction, model, tools, granted, budget,
    tool_choice, steps, usage, elapsed_seconds, result, error_code, created_at, finished_at.
    """
    budget = {"max_steps": max_steps, "max_tokens": max_tokens, "max_seconds": max_seconds}
    body = {
        "instruction": instruction,
        "model": model,
        "tools": tools or None,
        "granted": grant or [],
        "budget": {k: v for k, v in budget.items() if v is not None},
    }
    task = call_server(state.settings, "POST", "/v1/tasks", json=body)
    if detach:
        if as_json:
            print_json(task)
        else:
            console.print(task["id"], highlight=False)
        return
    if not as_json:
        err_console.print(f"task {task['id']} started", highlight=False)
    last = follow(task["id"], yes=yes)
    finish(last or task, as_json)


def _when(stamp: int | None) -> str:
    if not stamp:
        return ""
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


@task_app.command("ps")
def task_ps(
    status: Annotated[
        str | None, typer.Option("--status", help="Only tasks in this status.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List your tasks, newest first.

    --json fields: id, object, status, instruction, model, tools, granted, budget,
    tool_choice, steps, usage, elapsed_seconds, result, error_code, created_at, finished_at.
    """
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    tasks = call_server(state.settings, "GET", "/v1/tasks", params=params)["data"]
    if as_json:
        print_json(tasks)
        return
    if not tasks:
        err_console.print("no tasks", highlight=False)
        return
    rows = table(
        Column("id", key=True),
        Column("status", key=True),
        "steps",
        "tokens",
        "created",
        "instruction",
    )
    for task in tasks:
        rows.add_row(
            task["id"],
            task["status"],
            str(task["steps"]),
            str(task["usage"]["total_tokens"]),
            _when(task["created_at"]),
            Text(_short(task["instruction"], 80)),
        )
    print_table(rows, highlight=False)


@task_app.command("logs")
def task_logs(
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep following until the task ends.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """A task's recorded steps: each call, its arguments and result, and the answer.

    --json fields: object, step, kind, status, tool, arguments, result, text, description,
    effects, usage, model_ms, tool_ms, created_at.
    """
    if follow_ and not as_json:
        finish(follow(task_id, interactive=False), False)
        return
    steps = call_server(state.settings, "GET", f"/v1/tasks/{task_id}/steps")["data"]
    if as_json:
        print_json(steps)
        return
    for step in steps:
        show_step(step)
    task = call_server(state.settings, "GET", f"/v1/tasks/{task_id}")
    finish(task, False)


@task_app.command("kill")
def task_kill(task_id: Annotated[str, typer.Argument(help="The task's id.")]) -> None:
    """Stop a task now (its model turn is aborted); what it did so far is kept."""
    task = call_server(state.settings, "POST", f"/v1/tasks/{task_id}/cancel")
    console.print(f"task {task['id']} {task['status']}", highlight=False)


def _decide_command(task_id: str, step: int, verb: str) -> None:
    task = call_server(state.settings, "POST", f"/v1/tasks/{task_id}/steps/{step}/{verb}")
    done = {"approve": "approved", "deny": "denied"}[verb]
    console.print(f"step {step} {done}; task {task['id']} {task['status']}", highlight=False)


@task_app.command("approve")
def task_approve(
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
    step: Annotated[int, typer.Argument(help="The step waiting for approval.")],
) -> None:
    """Approve a step that waits for approval: it runs, and the task goes on."""
    _decide_command(task_id, step, "approve")


@task_app.command("deny")
def task_deny(
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
    step: Annotated[int, typer.Argument(help="The step waiting for approval.")],
) -> None:
    """Refuse a step: the model is told it was refused and goes on without it."""
    _decide_command(task_id, step, "deny")


@bench_app.command("agents")
def bench_agents(
    steps: Annotated[int, typer.Option("--steps", min=2, max=100, help="Steps per task.")] = 10,
    overhead_tasks: Annotated[
        int, typer.Option("--overhead-tasks", min=1, help="Tasks of the overhead run.")
    ] = 20,
    tasks: Annotated[int, typer.Option("--tasks", min=1, help="Tasks run at once.")] = 32,
    tenants: Annotated[int, typer.Option("--tenants", min=1, help="Owners they spread over.")] = 4,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Run the concurrent tasks on this model (default: none)."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Database to run on (default: a temporary SQLite)."),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON to this file.")
    ] = None,
) -> None:
    """Agent runtime: its own time per step (model time excluded) and concurrent tasks."""
    from llmasos.agents.bench import run_agents_bench
    from llmasos.models import open_model_store

    report = asyncio.run(
        run_agents_bench(
            steps=steps,
            overhead_tasks=overhead_tasks,
            tasks=tasks,
            tenants=tenants,
            model=model,
            database_url=database_url,
            settings=state.settings,
            store_factory=open_model_store,
            progress=lambda message: err_console.print(message, highlight=False),
        )
    )
    rows = Table("measure", "value", title="agent runtime")
    rows.add_row("steps timed", str(report.overhead_steps))
    rows.add_row("overhead per step p50", f"{report.overhead_p50_ms:.2f} ms")
    rows.add_row("overhead per step p95", f"{report.overhead_p95_ms:.2f} ms")
    c = report.concurrency
    rows.add_row(f"{c.tasks} tasks at once ({c.engine})", f"{c.seconds:.1f} s")
    rows.add_row("final statuses", ", ".join(f"{k} {v}" for k, v in sorted(c.statuses.items())))
    rows.add_row("steps recorded", str(c.steps))
    rows.add_row("tasks with lost or duplicated steps", str(c.lost_or_duplicated))
    rows.add_row(
        "tokens by owner",
        ", ".join(f"{k} {v}" for k, v in sorted(c.tokens_by_tenant.items())),
    )
    console.print(rows, highlight=False)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
