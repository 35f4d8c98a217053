"""Imports every command module so its commands register on the Typer app."""

from llmasos.cli import config_cmd  # noqa: F401
