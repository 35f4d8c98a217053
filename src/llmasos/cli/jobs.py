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
    from llmasos.toolchain.jobs import Job, JobRegistry

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
    started = (
        f"started job {job.id} (pid {job.pid})"
        if job.state == "running"
        else f"queued job {job.id}: waiting for {memory(job.memory_estimate)} of memory "
        "(it starts when serving and the other jobs leave room)"
    )
    console.print(
        f"{started}: llmasos {' '.join(job.command)}\n"
        f"follow it: llmasos jobs logs {job.id}; stop it: llmasos jobs cancel {job.id}",
        markup=False,
        highlight=False,
    )
    return True


def memory(size: int) -> str:
    return f"{size / 2**20:.0f} MiB" if size else ""


STATES = {"waiting": "waiting for memory", "yielded": "yielded to serving"}


def job_memory(job: Job) -> str:
    """What a job holds: its resident set (peak) while it runs, else its estimate."""
    if job.memory_rss:
        return f"{memory(job.memory_rss)} (peak {memory(job.memory_peak)})"
    if job.state in ("waiting", "yielded"):
        return f"needs ~{memory(job.memory_estimate)}"
    return f"peak {memory(job.memory_peak)}" if job.memory_peak else ""


@jobs_app.command("ps")
def jobs_ps(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List the jobs, oldest first, with their state and memory.

    States: waiting (for memory: it starts when serving and older jobs leave room in the
    budget), running, yielded (stopped to give its memory to serving; runs again when it
    fits, a fine-tune from the step it stopped at), done, failed, cancelled, lost.

    JSON fields: id, command, state, created, finished, returncode, supervisor_pid, pid,
    directory, cancel_requested, memory_estimate, memory_rss, memory_peak (bytes), yields,
    extra.
    """
    jobs = registry().list()
    if as_json:
        print_json([job.to_dict() for job in jobs])
        return
    if not jobs:
        console.print("no jobs")
        return
    result = table(Column("id", key=True), Column("state", key=True), "memory", "command",
                   "created", "finished", Column("exit", justify="right"))  # fmt: skip
    for job in jobs:
        exit_code = "" if job.returncode is None else str(job.returncode)
        state_text = STATES.get(job.state, job.state)
        if job.yields and job.state == "running":
            state_text += f" (yielded {job.yields}x)"
        result.add_row(job.id, state_text, job_memory(job), " ".join(job.command), job.created,
                       job.finished, exit_code)  # fmt: skip
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
        f"{job.id}: {STATES.get(job.state, job.state)}"
        + (f" (exit {job.returncode})" if job.returncode is not None else "")
        + f"\ncommand: llmasos {' '.join(job.command)}\nlog: {job.path / 'log'}"
        + f"\nmemory: {job_memory(job) or 'none'} (estimated {memory(job.memory_estimate)})"
        + (f"\nyielded to serving: {job.yields}x" if job.yields else "")
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
