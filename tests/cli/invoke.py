"""Running a command in-process with Typer's runner, the way the CLI tests share."""

from __future__ import annotations

from typing import Literal

from typer.testing import CliRunner

from llmasos.cli.main import app

runner = CliRunner()


def run(*args: str, stream: Literal["stdout", "output", "both"] = "stdout") -> tuple[int, str]:
    """Exit code and text of ``llmasos ARGS``: standard output alone, the terminal's mix
    (``output``), or standard output then standard error (``both``). An exception other
    than the command's exit is raised, so a test sees its traceback."""
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    text = {
        "stdout": result.stdout,
        "output": result.output,
        "both": result.stdout + result.stderr,
    }[stream]
    return result.exit_code, text
