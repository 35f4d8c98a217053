"""`llmasos data prep|ls|show|rm` on fixture files, and `llmasos quantize`, through the CLI."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmasos.cli.main import main
from llmasos.cli.root import state
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.toolchain.datasets import DatasetRegistry, file_digest

pytestmark = pytest.mark.skipif(
    package_path(BUILTINS[0]) is None, reason="the embedded model package is missing"
)


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home for the module: the built-in models are registered (hashed) once."""
    return tmp_path_factory.mktemp("data-home")


@pytest.fixture(autouse=True)
def home(module_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LLMASOS_HOME", str(module_home))
    monkeypatch.setenv("COLUMNS", "200")
    state.reset()
    yield module_home
    state.reset()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_prep_cleans_deduplicates_splits_and_registers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, home: Path
) -> None:
    decomposed = unicodedata.normalize("NFD", "The café on   the corner\tis closed")
    rows: list[dict[str, object]] = (
        [
            {
                "text": f"Ticket {i}: my order number {i * 7} never arrived at {i} Main Street",
                "label": "shipping",
            }
            for i in range(12)
        ]
        + [
            {"text": f"Invoice {i} charged me {i * 3} dollars twice this month", "label": "billing"}
            for i in range(12)
        ]
        + [
            {
                "text": "Invoice 1 charged me 3 dollars twice this month",
                "label": "billing",
            },  # exact
            {
                "text": "invoice 1 charged me 3 dollars twice this month!",
                "label": "billing",
            },  # near
            {"text": "   ", "label": "billing"},  # empty after cleaning
            {"text": "word " * 3000, "label": "billing"},  # over --max-tokens
            {"text": decomposed, "label": "other"},
        ]
    )
    source = write_jsonl(tmp_path / "raw.jsonl", rows)
    code, out, err = cli(
        capsys,
        "data",
        "prep",
        str(source),
        "--task",
        "classification",
        "--out",
        "tix",
        "--max-tokens",
        "512",
        "--seed",
        "3",
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["removed"] == {
        "empty": 1,
        "exact_duplicates": 1,
        "near_duplicates": 1,
        "over_max_tokens": 1,
    }
    assert sum(report["splits"].values()) == 25
    assert report["splits"]["validation"] >= 1 and report["splits"]["test"] >= 1
    assert report["tokenizer"] == "smollm2:135m" and report["tokens"]["train"]["total"] > 0
    registry = DatasetRegistry(home / "datasets")
    manifest = registry.get("tix")
    assert manifest.labels == ["billing", "other", "shipping"]
    for split, info in manifest.splits.items():
        assert info.digest == file_digest(registry.path("tix") / f"{split}.jsonl")
    everything = [r for s in ("train", "validation", "test") for r in registry.rows("tix", s)]
    cafe = next(r for r in everything if r["label"] == "other")
    assert cafe["text"] == unicodedata.normalize("NFC", "The café on the corner is closed")
    assert cafe["messages"][-1] == {"role": "assistant", "content": "other"}
    assert "billing, other, shipping" in cafe["messages"][0]["content"]
    assert (registry.path("tix") / "tokens.png").stat().st_size > 1000
    # the same input and seed give the same dataset, digest included
    code, out, _ = cli(
        capsys,
        "data",
        "prep",
        str(source),
        "--task",
        "classification",
        "--out",
        "tix2",
        "--max-tokens",
        "512",
        "--seed",
        "3",
        "--json",
    )
    assert json.loads(out)["digest"] == manifest.digest
    code, out, _ = cli(capsys, "data", "ls", "--json")
    assert [d["name"] for d in json.loads(out)] == ["tix", "tix2"]
    code, out, _ = cli(capsys, "data", "show", "tix")
    assert code == 0 and manifest.digest in out and "1 near duplicates" in out
    assert cli(capsys, "data", "rm", "tix2")[0] == 0
    code, _, err = cli(capsys, "data", "show", "tix2")
    assert code == 1 and "no dataset named 'tix2'" in err and err.count("\n") == 1


def test_chat_and_completion_inputs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, home: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "instruction": [f"Name a colour number {i}" for i in range(6)],
            "output": [
                f"Colour {i} is {c}" for i, c in enumerate(["red", "blue", "green", "a", "b", "c"])
            ],
        }
    )
    pq.write_table(table, tmp_path / "chat.parquet")
    code, out, err = cli(
        capsys,
        "data",
        "prep",
        str(tmp_path / "chat.parquet"),
        "--task",
        "chat",
        "--out",
        "chat",
        "--json",
    )
    assert code == 0, err
    rows = DatasetRegistry(home / "datasets").rows("chat", "train")
    assert rows and all(r["messages"][-1]["role"] == "assistant" for r in rows)
    text = tmp_path / "book.txt"
    text.write_text("First paragraph\nof the book.\n\n\nSecond one.\n\nThird.\n\nFourth.\n")
    code, out, err = cli(
        capsys, "data", "prep", str(text), "--task", "completion", "--out", "book", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["rows_read"] == 4


def test_given_splits_are_kept(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    from importlib import resources

    tickets = Path(str(resources.files("llmasos.toolchain") / "data" / "tickets.jsonl"))
    code, _, err = cli(
        capsys,
        "data",
        "prep",
        str(tickets),
        "--task",
        "classification",
        "--out",
        "tickets",
        "--json",
    )
    assert code == 0, err
    given = {r["text"]: r["split"] for r in map(json.loads, tickets.read_text().splitlines())}
    registry = DatasetRegistry(home / "datasets")
    for split in ("train", "validation", "test"):
        rows = registry.rows("tickets", split)
        assert rows and all(given[r["text"]] == split for r in rows)


@pytest.mark.parametrize(
    ("content", "name", "task", "message"),
    [
        (
            "question,reply\na,b\n",
            "bad.csv",
            "classification",
            "bad.csv has columns question, reply; --task classification expects a text column",
        ),
        (
            '{"prompt": "hi"}\n',
            "bad.jsonl",
            "chat",
            "bad.jsonl has columns prompt; --task chat expects 'messages'",
        ),
        ("just text\n", "notes.txt", "chat", "only --task completion reads"),
        ("{broken\n", "broken.jsonl", "completion", "broken.jsonl line 1: not JSON"),
    ],
)
def test_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    home: Path,
    content: str,
    name: str,
    task: str,
    message: str,
) -> None:
    (tmp_path / name).write_text(content)
    code, _, err = cli(capsys, "data", "prep", str(tmp_path / name), "--task", task, "--out", "x")
    assert code == 1 and message in err and err.count("\n") == 1
    assert not (home / "datasets" / "x").exists()


def test_quantize_registers_a_new_name(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, out, err = cli(capsys, "quantize", "smollm2", "--to", "q8_0", "--no-eval", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["model"] == "smollm2-q8-0:latest" and report["format"] == "Q8_0"
    assert "cannot be better than the Q4_1 source" in report["warning"]
    code, out, _ = cli(capsys, "show", "smollm2-q8-0", "--json")
    shown = json.loads(out)
    assert shown["quantization"] == "Q8_0" and shown["source"].startswith("quantize:sha256:")
    code, _, err = cli(capsys, "quantize", "smollm2", "--to", "q3_x")
    assert code == 1 and "unknown weight format 'q3_x'" in err and err.count("\n") == 1
    code, _, err = cli(capsys, "quantize", "all-minilm", "--to", "q8_0")
    assert code == 1 and "not a GGUF generation model" in err
