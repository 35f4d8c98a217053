"""User programs — the built-in apps and the apps the templates write — use only the public
names of the top-level ``llmasos`` package, like any third-party app.

import-linter checks the modules of ``llmasos.userland.apps`` and ``llmasos.apps.templates``
(`make lint`); this test also reads the code the templates write, which is text inside
those modules, and checks every ``llmasos`` name used is in ``llmasos.__all__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import llmasos
from llmasos.apps.catalog import builtin_names, builtin_path
from llmasos.apps.scaffold import TEMPLATES, template_files


def llmasos_names(source: str) -> set[str]:
    """Every ``llmasos`` name the code imports or reads: ``llmasos.X``, ``from llmasos import X``;
    a submodule import (``import llmasos.errors``, ``from llmasos.sdk import X``) is returned
    as its dotted path, which is never a public name."""
    names: set[str] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("llmasos."):
                    names.add(alias.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llmasos"):
            if node.module != "llmasos":
                names.add(str(node.module))
            else:
                names.update(alias.name for alias in node.names)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "llmasos"
        ):
            names.add(node.attr)
    return names


def programs() -> list[tuple[str, str]]:
    found = []
    for name in builtin_names():
        for path in sorted(Path(builtin_path(name)).rglob("*.py")):
            if path.name == "__init__.py":  # empty: the directory ships as a package
                continue
            found.append((f"builtin:{name}/{path.name}", path.read_text(encoding="utf-8")))
    for template in TEMPLATES:
        for relative, text in template_files(template, "demo").items():
            if relative.endswith(".py"):
                found.append((f"template:{template}/{relative}", text))
    return found


@pytest.mark.parametrize(("label", "source"), programs(), ids=[p[0] for p in programs()])
def test_user_programs_use_only_public_names(label: str, source: str) -> None:
    used = llmasos_names(source)
    assert used, f"{label} does not use llmasos at all"
    private = sorted(used - set(llmasos.__all__))
    assert not private, f"{label} uses names outside llmasos.__all__: {private}"


def test_the_check_sees_private_imports() -> None:
    code = "import llmasos\nfrom llmasos.errors import X\nfrom llmasos import Client\nllmasos.LLM\n"
    assert llmasos_names(code) == {"llmasos.errors", "Client", "LLM"}
