"""``llmasos eval service:NAME``: a real (tiny) evaluation on the embedded model, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmasos.services.quality import read_quality
from tests.cli.test_services_cli import llmasos


def test_bad_targets_and_data_are_one_line_errors(tmp_path: Path) -> None:
    for args, message in [
        (("eval", "summarize"), "service:NAME"),
        (("eval", "service:summarize", "--task", "bleu"), "task 'bleu'"),
        (("eval", "service:rewrite"), "no development set ships"),
        (("eval", "service:summarize", "--data", str(tmp_path / "none.jsonl")), "no such dataset"),
    ]:
        result = llmasos(*args, home=tmp_path)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"input": {"text": "x"}}\n')
    result = llmasos("eval", "service:summarize", "--data", str(broken), home=tmp_path)
    assert result.returncode != 0 and "broken.jsonl:1: the item has no 'reference'" in result.stderr


@pytest.mark.model
def test_eval_scores_the_service_and_both_references_and_records_quality(
    tmp_path: Path,
) -> None:
    report_file = tmp_path / "report.json"
    result = llmasos(
        "eval", "service:classify", "--limit", "2", "-o", str(report_file), home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "the service" in result.stdout and "plain chat" in result.stdout
    report = json.loads(report_file.read_text())
    assert report["items"] == 2 and report["main"] == "accuracy"
    assert set(report["scores"]) == {"service", "baseline", "chat"}
    for prediction in report["predictions"]:
        probabilities = prediction["details"]["probabilities"]
        assert prediction["service"] in probabilities
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-3)
    quality = read_quality(tmp_path, "classify")
    assert quality is not None and quality["metric"] == "accuracy"
    assert quality["value"] == round(report["scores"]["service"]["accuracy"], 2)
    assert quality["items"] == 2 and quality["model"] == report["model"] and quality["date"]
