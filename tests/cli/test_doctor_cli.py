"""`llmasos doctor` as a person runs it: a table or JSON, and the exit code."""

from __future__ import annotations

import json
from pathlib import Path

from llmasos.net import free_port
from tests.cli.test_cli import llmasos, needs_models


@needs_models
def test_doctor_passes_here(tmp_path: Path) -> None:
    result = llmasos("doctor", "--json", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert list(report) == ["ok", "checks"]
    assert list(report["checks"][0]) == ["name", "group", "ok", "required", "detail", "fix"]
    by_name = {check["name"]: check for check in report["checks"]}
    assert by_name["model.smollm2"]["ok"] and by_name["model.smollm2"]["required"]


def test_doctor_exits_1_and_names_the_fix_when_a_required_part_is_missing(
    tmp_path: Path,
) -> None:
    unreachable = f"postgresql://nobody@127.0.0.1:{free_port()}/llmasos"
    result = llmasos("doctor", "--json", home=tmp_path, LLMASOS_DATABASE_URL=unreachable)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    database = next(check for check in report["checks"] if check["name"] == "database")
    assert database["ok"] is False and database["required"] is True and database["fix"]

    result = llmasos("doctor", home=tmp_path, LLMASOS_DATABASE_URL=unreachable, COLUMNS="200")
    assert result.returncode == 1
    assert "backend.llama.cpp" in result.stdout and "model.smollm2" in result.stdout
    assert f"database (required): {database['fix']}" in result.stdout
    assert "Required parts missing or broken: database" in result.stdout
    assert "Traceback" not in result.stderr
