"""Imports every command module so its commands register on the Typer app."""

from llmasos.cli import (  # noqa: F401
    access,
    apps,
    bench,
    config,
    conversations,
    kernel,
    memory,
    models,
    run,
    serve,
    services,
    usage,
)
