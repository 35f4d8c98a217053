"""``llmasos bench agents`` in miniature: its report's structure, and the guarantees it
checks (every task finished, every step recorded once)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from llmasos.agents.bench import run_agents_bench
from llmasos.cli.main import app


def test_bench_agents_report() -> None:
    report = asyncio.run(run_agents_bench(steps=3, overhead_tasks=2, tasks=6, tenants=2))
    assert report.overhead_steps == 6 and report.overhead_p50_ms >= 0
    concurrency = report.concurrency
    assert concurrency.statuses == {"completed": 6} and concurrency.steps == 18
    assert concurrency.lost_or_duplicated == 0
    assert set(concurrency.tokens_by_tenant) == {"bench0", "bench1"}


def test_bench_agents_command_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "agents.json"
    result = CliRunner().invoke(
        app,
        ["bench", "agents", "--steps", "2", "--overhead-tasks", "1", "--tasks", "2",
         "--tenants", "1", "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "overhead per step p50" in result.stdout
    data = json.loads(out.read_text())
    assert data["concurrency"]["lost_or_duplicated"] == 0
