"""Scaffolds for ``llmasos app new NAME --template chat|service|rag|workflow``.

Each template is a module of `llmasos.apps.templates` holding the files of a small, working
app as text (kept as Python strings so they ship with the package): a manifest and an
``app.py`` that uses `llmasos.Application` for its routes and `llmasos.Client` for the kernel,
which reads ``LLMASOS_BASE_URL`` and ``LLMASOS_API_KEY`` — the capability key ``app start``
gives it (``workflow`` writes a ``workflow.yaml`` too, which the app stores and runs on the
OS through ``Client.workflows``). `scaffold` writes one into a new directory and checks the
result loads as an app.
"""

from __future__ import annotations

import importlib
import string
from pathlib import Path

from llmasos.apps.manifest import AppManifest, check_app_name, load_manifest
from llmasos.errors import InvalidRequestError

TEMPLATES = ("chat", "service", "rag", "workflow")


def template_files(template: str, name: str) -> dict[str, str]:
    """The files of ``template`` for an app called ``name``: relative path -> text."""
    if template not in TEMPLATES:
        raise InvalidRequestError(
            f"unknown template {template!r}; use one of {', '.join(TEMPLATES)}", param="template"
        )
    module = importlib.import_module(f"llmasos.apps.templates.{template}")
    files: dict[str, str] = module.FILES
    return {path: string.Template(text).substitute(name=name) for path, text in files.items()}


def scaffold(name: str, template: str, directory: Path) -> AppManifest:
    """Write a new app into ``directory`` (which must not exist or be empty)."""
    check_app_name(name, "name")
    files = template_files(template, name)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InvalidRequestError(f"{directory} already exists and is not empty")
    for relative, text in files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return load_manifest(directory)
