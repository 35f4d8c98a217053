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


@pytest.mark.model
def test_eval_model_prints_the_perplexity_and_keeps_a_history(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("Four score and seven years ago our fathers brought forth a new nation.")
    result = llmasos("eval", "smollm2", "--data", str(text), "--window", "64", home=tmp_path)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("perplexity ") and float(first.split()[1]) > 1
    assert "tokenizer: llama.cpp" in result.stdout and "bits per byte" in result.stdout
    plot = tmp_path / "history.png"
    shown = llmasos("eval", "history", "smollm2", "--json", "--plot", str(plot), home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    (entry,) = json.loads(shown.stdout)
    assert entry["task"] == "perplexity" and entry["value"] == pytest.approx(
        float(first.split()[1]), abs=0.01
    )
    assert entry["version"].startswith("sha256:") and entry["dataset"] == str(text)
    assert plot.read_bytes()[:4] == b"\x89PNG"
    for args, message in [
        (("eval", "smollm2", "--task", "bleu"), "--task bleu needs --data"),
        (("eval", "smollm2", "--task", "bleu", "--data", str(text)), "only --task perplexity"),
        (("eval", "history", "nomodel"), "no evaluation recorded"),
        (("eval", "smollm2", "--backend", "onnx"), "backends: llamacpp, transformers"),
    ]:
        failed = llmasos(*args, home=tmp_path)
        assert failed.returncode != 0 and message in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr
