"""``llmasos workflow create|ls|show|rm|run|runs|logs|answer|resume|cancel|trace``.

Every command talks to the running server, where runs execute durably. ``run`` starts a run
and follows its events (nodes starting and finishing, an llm node's tokens) until it
finishes or waits for a person; ``trace`` prints a run's nodes as a tree with their timings,
tokens and errors, and ``--png`` draws them as a Gantt chart (matplotlib, from the
``[bench]`` extra). Errors are one line (the server's message).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.text import Text
from rich.tree import Tree

from llmasos.cli.bench import bench_app
from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.remote import call_server, server_url
from llmasos.cli.root import app, console, err_console, state
from llmasos.errors import InvalidRequestError, LLMasOSError

workflow_app = typer.Typer(
    help="Workflows: durable multi-step pipelines (YAML) with traces, retries and triggers.",
    no_args_is_help=True,
)
app.add_typer(workflow_app, name="workflow")

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "waiting": "magenta",
    "running": "cyan",
    "queued": "cyan",
    "skipped": "dim",
}


def api(method: str, path: str, **kwargs: Any) -> Any:
    return call_server(state.settings, method, path, **kwargs)


def parse_inputs(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON (numbers, lists, true) is taken as such."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequestError(f"--input {pair!r}: expected NAME=VALUE")
        try:
            values[key] = json.loads(value)
        except ValueError:
            values[key] = value
    return values


@workflow_app.command("create")
def workflow_create(
    file: Annotated[Path, typer.Argument(help="The workflow's YAML file.", exists=True)],
    replace: Annotated[bool, typer.Option("--replace", help="Replace one of that name.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Check and store a workflow; prints its webhook token (shown only this once)."""
    source = file.read_text(encoding="utf-8")
    data = api("POST", "/v1/workflows", json={"source": source, "replace": replace})
    if as_json:
        print_json(data)
        return
    console.print(f"workflow {data['name']}: {data['nodes']} nodes", highlight=False)
    if data.get("hook_token"):
        console.print(
            f"webhook: POST /v1/workflows/{data['name']}/hooks/{data['hook_token']}",
            highlight=False,
        )


@workflow_app.command("ls")
def workflow_ls(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List your workflows and the built-in ones.

    --json fields: name, description, builtin, nodes, schedule, created_at, updated_at."""
    data = api("GET", "/v1/workflows")["data"]
    if as_json:
        print_json(data)
        return
    rows = table(Column("name", key=True), "nodes", "schedule", "description")
    for w in data:
        name = w["name"] + (" (built-in)" if w["builtin"] else "")
        rows.add_row(name, str(w["nodes"]), w["schedule"] or "", w["description"])
    print_table(rows, highlight=False)


@workflow_app.command("show")
def workflow_show(name: Annotated[str, typer.Argument(help="The workflow's name.")]) -> None:
    """Print a workflow's YAML source."""
    data = api("GET", f"/v1/workflows/{name}")
    console.print(data["source"].rstrip(), highlight=False, markup=False)


@workflow_app.command("rm")
def workflow_rm(name: Annotated[str, typer.Argument(help="The workflow's name.")]) -> None:
    """Delete one of your workflows (its runs stay)."""
    api("DELETE", f"/v1/workflows/{name}")
    console.print(f"deleted workflow {name}", highlight=False)


def follow(run_id: str) -> dict[str, Any]:
    """Print a run's events as they come; returns the run when it finishes or waits."""
    url = server_url(state.settings)
    if url is None:
        raise LLMasOSError("the server went away")
    tokens = False
    with httpx.stream("GET", f"{url}/v1/workflows/runs/{run_id}/events", timeout=None) as reply:
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: ") :])
            kind = event.get("type")
            if kind == "node.token":
                err_console.print(event["text"], end="", highlight=False, markup=False)
                tokens = True
                continue
            if tokens:
                err_console.print()
                tokens = False
            if kind == "node.started":
                err_console.print(f"▶ {event['node']}", highlight=False, style="dim")
            elif kind == "node.finished":
                style = STATUS_STYLE.get(event["status"], "")
                detail = f": {event['error']}" if event.get("error") else ""
                err_console.print(Text(f"  {event['node']} {event['status']}{detail}", style=style))
            elif kind == "node.waiting":
                err_console.print(f"? {event['node']}: {event['prompt']}", highlight=False)
    return dict(api("GET", f"/v1/workflows/runs/{run_id}"))


def report(run: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(run)
        return
    status = run["status"]
    if status == "succeeded":
        output = run["output"]
        text = (
            output if isinstance(output, str) else json.dumps(output, indent=2, ensure_ascii=False)
        )
        console.print(text, highlight=False, markup=False)
    elif status == "waiting":
        for node in run.get("waiting_for", []):
            console.print(
                f"run {run['id']} waits for {node}: llmasos workflow answer {run['id']} {node} "
                "'ANSWER'",
                highlight=False,
                soft_wrap=True,
            )
    else:
        raise LLMasOSError(f"run {run['id']} {status}: {run.get('error') or ''}".rstrip(": "))


@workflow_app.command("run")
def workflow_run(
    name: Annotated[str, typer.Argument(help="The workflow's name.")],
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="An input as NAME=VALUE (repeat).")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Print the run id and return at once.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Start a run and follow it; prints the output (or what the run waits for)."""
    run = api("POST", f"/v1/workflows/{name}/runs", json={"input": parse_inputs(inputs or [])})
    if detach:
        console.print(run["id"], highlight=False)
        return
    err_console.print(f"run {run['id']}", highlight=False, style="dim")
    report(follow(run["id"]), as_json)


@workflow_app.command("runs")
def workflow_runs(
    name: Annotated[str, typer.Argument(help="The workflow's name.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List a workflow's runs, newest first.

    --json fields: id, workflow, status, trigger, input, output, error, created_at."""
    data = api("GET", f"/v1/workflows/{name}/runs")["data"]
    if as_json:
        print_json(data)
        return
    rows = table(Column("id", key=True), "status", "trigger", "error")
    for r in data:
        rows.add_row(
            r["id"],
            Text(r["status"], STATUS_STYLE.get(r["status"], "")),
            r["trigger"],
            r["error"] or "",
        )
    print_table(rows, highlight=False)


@workflow_app.command("logs")
def workflow_logs(run_id: Annotated[str, typer.Argument(help="The run's id.")]) -> None:
    """Print a run's events so far, and follow it while it runs."""
    report(follow(run_id), as_json=False)


@workflow_app.command("answer")
def workflow_answer(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    node: Annotated[str, typer.Argument(help="The human node that waits.")],
    answer: Annotated[str, typer.Argument(help="Your answer (JSON, or text).")],
) -> None:
    """Answer a human node; the run goes on."""
    try:
        value: Any = json.loads(answer)
    except ValueError:
        value = answer
    run = api("POST", f"/v1/workflows/runs/{run_id}/nodes/{node}/answer", json={"answer": value})
    report(follow(run["id"]), as_json=False)


@workflow_app.command("resume")
def workflow_resume(run_id: Annotated[str, typer.Argument(help="The run's id.")]) -> None:
    """Run a failed or cancelled run again from its last finished node."""
    run = api("POST", f"/v1/workflows/runs/{run_id}/resume")
    report(follow(run["id"]), as_json=False)


@workflow_app.command("cancel")
def workflow_cancel(run_id: Annotated[str, typer.Argument(help="The run's id.")]) -> None:
    """Cancel a queued, running or waiting run."""
    run = api("POST", f"/v1/workflows/runs/{run_id}/cancel")
    console.print(f"run {run['id']} {run['status']}", highlight=False)


def cost_text(cost: float | None) -> str:
    """A cost as the trace shows it (the price table's currency, to 6 decimals)."""
    return "cost unknown (no price)" if cost is None else f"cost {cost:,.6f}"


def trace_tree(run: dict[str, Any]) -> Tree:
    """The run's steps as a tree: map items and sub-workflow nodes under their node; the
    root line totals the tokens and cost, a node that called a model shows its own."""
    head = f"{run['workflow']} {run['id']} {run['status']}"
    total = run.get("usage")
    if total is not None:
        cost = cost_text(total["cost"])
        if not total["priced"]:
            cost += " + unpriced models"
        head += f"  {total['prompt_tokens']}+{total['completion_tokens']} tok  {cost}"
    root = Tree(Text(head, style=STATUS_STYLE.get(run["status"], "")))
    branches: dict[str, Tree] = {}
    for step in run["steps"]:
        key = step["node"]
        parent_key = key.rsplit("[", 1)[0] if key.endswith("]") else key.rsplit("/", 1)[0]
        parent = branches.get(parent_key, root) if parent_key != key else root
        parts = [key, step["type"], step["status"]]
        if step["duration_s"] is not None:
            parts.append(f"{step['duration_s'] * 1000:.1f} ms")
        usage = step["usage"]
        if step["model"]:
            parts.append(
                f"{step['model']} {usage['prompt_tokens']}+{usage['completion_tokens']} tok"
            )
            if step["finished_at"] is not None:
                parts.append(cost_text(step["cost"]))
        if step["attempts"] > 1:
            parts.append(f"{step['attempts']} attempts")
        label = Text("  ".join(parts), style=STATUS_STYLE.get(step["status"], ""))
        if step["error"]:
            label.append(f"\n{step['error']}", style="red")
        branches[key] = parent.add(label)
    return root


def gantt(run: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LLMasOSError("--png needs matplotlib: pip install 'llmasos[bench]'") from None
    steps = [s for s in run["steps"] if s["finished_at"] is not None]
    if not steps:
        raise LLMasOSError(f"run {run['id']} has no finished node to draw")
    start = min(s["started_at"] for s in steps)
    figure, axes = plt.subplots(figsize=(9, 0.4 * len(steps) + 1.2))
    for row, step in enumerate(steps):
        color = {"succeeded": "tab:green", "failed": "tab:red"}.get(step["status"], "tab:gray")
        axes.barh(
            row,
            max(step["finished_at"] - step["started_at"], 1e-4),
            left=step["started_at"] - start,
            color=color,
        )
    axes.set_yticks(range(len(steps)), [s["node"] for s in steps])
    axes.invert_yaxis()
    axes.set_xlabel("seconds since the first node started")
    axes.set_title(f"{run['workflow']} {run['id']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


@workflow_app.command("trace")
def workflow_trace(
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    png: Annotated[
        Path | None, typer.Option("--png", help="Also draw node timings as a Gantt chart here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Print a run's trace: each node's status, duration, model, tokens, cost, attempts and
    error, and the run's total tokens and cost (from the price table, `llmasos price`).

    --json fields: the run (id, status, input, output, error, usage) and its steps (node,
    type, status, inputs, output, error, attempts, model, usage, cost, started_at,
    finished_at)."""
    run = api("GET", f"/v1/workflows/runs/{run_id}")
    if as_json:
        print_json(run)
    else:
        console.print(trace_tree(run), highlight=False)
    if png is not None:
        gantt(run, png)
        err_console.print(f"wrote {png}", highlight=False)


@bench_app.command("workflows")
def bench_workflows(
    runs: Annotated[int, typer.Option(help="Sequential runs for the overhead figures.")] = 30,
    concurrent: Annotated[int, typer.Option(help="Runs started at once.")] = 100,
    database_url: Annotated[
        str | None, typer.Option(help="A database to use instead of a fresh SQLite file.")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON to this file.")
    ] = None,
) -> None:
    """The workflow engine: overhead per node, concurrent runs, resume after a crash."""
    from llmasos.workflows.benchmark import run_workflow_bench, table_rows

    with console.status("running workflows (about a minute)"):
        report = run_workflow_bench(database_url=database_url, runs=runs, concurrent=concurrent)
    rows = table("measure", "figure", "detail", title="Workflow engine on this machine")
    for row in table_rows(report):
        rows.add_row(*row)
    print_table(rows, highlight=False)
    machine = report.machine
    console.print(
        f"{report.database}; {machine['cpus']} CPUs, load average {machine['load_average_1m']} "
        f"at start, {machine['load_average_1m_at_end']} at end",
        highlight=False,
    )
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2))
        console.print(f"wrote {json_path}", highlight=False)
