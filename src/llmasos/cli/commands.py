"""Imports every command module so its commands register on the Typer app."""

from llmasos.cli import (  # noqa: F401
    access_cmd,
    apps_cmd,
    bench,
    config_cmd,
    kernel_cmd,
    memory,
    models,
    run,
    serve,
    services_cmd,
    usage_cmd,
)
