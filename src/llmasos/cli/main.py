"""Entry point of the ``llmasos`` command: the root options and the error boundary.

Every failure the user can cause is an `LLMasOSError` and is printed as one line with a
non-zero exit; a traceback is printed only with ``LLMASOS_DEBUG=1``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, Any

import typer

from llmasos import __version__
from llmasos.cli import commands  # noqa: F401 - registers the commands on `app`
from llmasos.cli.root import app, console, fail, settings_options, state
from llmasos.errors import LLMasOSError


def _print_version(value: bool) -> None:
    if value:
        console.print(f"llmasos {__version__}")
        raise typer.Exit()


@app.callback()
@settings_options
def root(
    *,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version.",
        ),
    ] = False,
    settings_flags: dict[str, Any],
) -> None:
    """LLMasOS: a self-hosted LLM operating system.

    Run `llmasos serve` to start the OS, `llmasos run smollm2 "Hello"` to talk to a model.
    """
    state.override(settings_flags)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn every `LLMasOSError` into one readable line."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=argv, prog_name="llmasos")
    except LLMasOSError as error:
        if os.environ.get("LLMASOS_DEBUG"):
            raise
        fail(str(error))
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as error:
        if os.environ.get("LLMASOS_DEBUG"):
            raise
        fail(f"{error.strerror or error}: {error.filename}" if error.filename else str(error))
