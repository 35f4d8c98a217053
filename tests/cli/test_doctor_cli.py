"""`llmasos doctor` as a person runs it: a table or JSON, and the exit code."""

from __future__ import annotations

import json
from pathlib import Path

from llmasos.net import free_port
from tests.cli.test_cli import llmasos, needs_models


@needs_models
def test_doctor_passes_here_and_prints_a_row_per_check(tmp_path: Path) -> None:
    result = llmasos("doctor", home=tmp_path / "home", COLUMNS="200")
    assert result.returncode == 0, result.stdout + result.stderr
    words = [line.split() for line in result.stdout.splitlines()]
    rows = {line[1]: line[0] for line in words if len(line) > 2}
    assert rows["backend.llama.cpp"] == "ok" and rows["model.smollm2"] == "ok"
    assert rows["database"] == "ok" and rows["disk"] == "ok"
    assert result.stdout.rstrip().endswith("Every required part is present.")


def test_doctor_exits_1_and_names_the_fix_when_a_required_part_is_missing(
    tmp_path: Path,
) -> None:
    unreachable = f"postgresql://nobody@127.0.0.1:{free_port()}/llmasos"
    result = llmasos("doctor", "--json", "--quick", home=tmp_path, LLMASOS_DATABASE_URL=unreachable)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert list(report) == ["ok", "checks"] and report["ok"] is False
    assert list(report["checks"][0]) == ["name", "group", "ok", "required", "detail", "fix"]
    database = next(check for check in report["checks"] if check["name"] == "database")
    assert database["ok"] is False and database["required"] is True
    assert "database server" in database["fix"]
