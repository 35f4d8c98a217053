"""``llmasos jobs ps|show|logs|cancel``: toolchain commands run with ``--background``.

`llmasos.toolchain.jobs` keeps them under ``$LLMASOS_HOME/jobs`` (no server needed): each
with its state, a log (the command's standard error) and its JSON report.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.root import app, console, state

if TYPE_CHECKING:
    from llmasos.toolchain.jobs import JobRegistry

BACKGROUND_HELP = (
    "Run as a background job at low priority (niceness 10) and return at once; follow it "
    "with `llmasos jobs ps|logs|cancel`."
)

jobs_app = typer.Typer(
    help="Background toolchain jobs (finetune, distill, prune, quantize, eval --background).",
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")


def registry() -> JobRegistry:
    from llmasos.toolchain.jobs import JobRegistry

    return JobRegistry(state.settings.home / "jobs")


def start_in_background(background: bool) -> bool:
    """With ``background``, start this very command line as a job and say so; True if so."""
    if not background:
        return False
    job = registry().start(sys.argv[1:])
    console.print(
        f"started job {job.id} (pid {job.pid}): llmasos {' '.join(job.command)}\n"
        f"follow it: llmasos jobs logs {job.id}; stop it: llmasos jobs cancel {job.id}",
        markup=False,
        highlight=False,
    )
    return True


@jobs_app.command("ps")
def jobs_ps(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List the jobs, oldest first, with their state.

    JSON fields: id, command, state, created, finished, returncode, supervisor_pid, pid,
    directory, cancel_requested, extra.
    """
    jobs = registry().list()
    if as_json:
        print_json([job.to_dict() for job in jobs])
        return
    if not jobs:
        console.print("no jobs")
        return
    result = table(Column("id", key=True), Column("state", key=True), "command", "created",
                   "finished", Column("exit", justify="right"))  # fmt: skip
    for job in jobs:
        exit_code = "" if job.returncode is None else str(job.returncode)
        result.add_row(job.id, job.state, " ".join(job.command), job.created, job.finished,
                       exit_code)  # fmt: skip
    print_table(result)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """A job's state and its report (the command's JSON output, once it has finished)."""
    jobs = registry()
    job = jobs.get(job_id)
    report = jobs.report(job_id)
    if as_json:
        print_json({**job.to_dict(), "report": report})
        return
    console.print(
        f"{job.id}: {job.state}"
        + (f" (exit {job.returncode})" if job.returncode is not None else "")
        + f"\ncommand: llmasos {' '.join(job.command)}\nlog: {job.path / 'log'}"
        + (f"\nreport: {job.path / 'report.json'}" if report is not None else ""),
        markup=False,
        highlight=False,
    )


@jobs_app.command("logs")
def jobs_logs(job_id: Annotated[str, typer.Argument(help="The job's id.")]) -> None:
    """Print a job's log (its progress, warnings and errors so far)."""
    sys.stdout.write(registry().log(job_id))


@jobs_app.command("cancel")
def jobs_cancel(job_id: Annotated[str, typer.Argument(help="The job's id.")]) -> None:
    """Interrupt a job as Ctrl-C would (nothing half-registered; a fine-tune keeps its
    checkpoint, so the same command resumes it) and wait for it to stop."""
    job = registry().cancel(job_id)
    console.print(f"{job.id}: {job.state}", markup=False, highlight=False)
