"""``llmasos data prep``: a raw file in, a cleaned, deduplicated, split dataset out.

`prepare_dataset` reads jsonl, json (a list of objects), csv, txt (one row per paragraph)
or parquet; maps the columns to the task's format (`TaskFormat`, with a one-line error that
names the columns it expected when they are not there); cleans every field (Unicode NFC,
whitespace runs collapsed, control characters dropped); drops empty rows, rows over
``max_tokens`` tokens of the target model, exact duplicates (after cleaning, case-folded) and
near duplicates (MinHash over word 3-grams with locality-sensitive hashing, `datasketch`);
shuffles with ``seed`` and splits into train/validation/test; converts chat and
classification rows to the chat format (``messages``); counts tokens with the target model's
tokenizer (chat rows rendered with its chat template, as training sees them); and registers
the result with a report (``report.json`` and a histogram ``tokens.png``) in the
`DatasetRegistry`. Nothing is registered unless every step succeeded.
"""

from __future__ import annotations

import csv
import json
import random
import re
import statistics
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmasos.errors import InvalidRequestError, ModelFormatError
from llmasos.models import ModelStoreInterface
from llmasos.toolchain.datasets import (
    SPLITS,
    TASKS,
    DatasetManifest,
    DatasetRegistry,
    SplitInfo,
    Task,
    check_name,
    combined_digest,
    file_digest,
)

READABLE = (".jsonl", ".json", ".csv", ".txt", ".parquet")
PROMPT_COLUMNS = ("prompt", "instruction", "question", "input")
RESPONSE_COLUMNS = ("response", "output", "answer", "completion")
TEXT_COLUMNS = ("text", "content", "sentence")
LABEL_COLUMNS = ("label", "category", "class")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+")
BLANK_LINES = re.compile(r"\n{3,}")

Progress = Callable[[str], None]


def classification_messages(text: str, labels: Sequence[str]) -> list[dict[str, str]]:
    """The chat a classification row becomes (and the prompt its evaluation asks)."""
    instruction = f"Classify the text. Answer with exactly one of: {', '.join(labels)}."
    return [{"role": "user", "content": f"{instruction}\n\nText: {text}"}]


def clean_text(value: Any) -> str:
    """NFC-normalized text with control characters gone and whitespace runs collapsed."""
    text = unicodedata.normalize("NFC", str(value if value is not None else ""))
    text = CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


@dataclass(frozen=True)
class Row:
    """One cleaned row: the fields written to the dataset, and its text for deduplication."""

    fields: dict[str, Any]
    key: str
    split: str | None = None
    """The row's split when the input says (a ``split`` column)."""


def _column(columns: Iterable[str], wanted: Sequence[str]) -> str | None:
    present = {c.lower(): c for c in columns}
    return next((present[w] for w in wanted if w in present), None)


def _expected(task: Task) -> str:
    if task == "chat":
        return (
            "'messages' (a list of {role, content}), or a prompt column "
            f"({'/'.join(PROMPT_COLUMNS)}) and a response column ({'/'.join(RESPONSE_COLUMNS)})"
        )
    if task == "classification":
        return f"a text column ({'/'.join(TEXT_COLUMNS)}) and 'label' ({'/'.join(LABEL_COLUMNS)})"
    return f"a text column ({'/'.join(TEXT_COLUMNS)})"


def _clean_messages(value: Any, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InvalidRequestError(f"{where}: 'messages' is not a JSON list") from None
    if not isinstance(value, list):
        raise InvalidRequestError(f"{where}: 'messages' must be a list of {{role, content}}")
    messages = []
    for message in value:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise InvalidRequestError(f"{where}: every message needs a role and a content")
        role = str(message["role"]).strip().lower()
        if role not in ("system", "user", "assistant"):
            raise InvalidRequestError(f"{where}: unknown role {role!r}")
        messages.append({"role": role, "content": clean_text(message["content"])})
    return messages


def convert_rows(
    records: Sequence[dict[str, Any]], task: Task, source: str
) -> tuple[list[Row], int]:
    """The task's rows from raw records, and how many were empty after cleaning."""
    columns: list[str] = list(dict.fromkeys(c for r in records[:1000] for c in r))
    rows: list[Row] = []
    empty = 0
    split_column = _column(columns, ("split",))
    problem = f"{source} has columns {', '.join(columns) or '(none)'}; --task {task} expects "
    if task == "chat":
        messages_column = _column(columns, ("messages", "conversation", "conversations"))
        prompt = _column(columns, PROMPT_COLUMNS)
        response = _column(columns, RESPONSE_COLUMNS)
        system = _column(columns, ("system",))
        if messages_column is None and (prompt is None or response is None):
            raise InvalidRequestError(problem + _expected(task), param="columns")
        for number, record in enumerate(records, 1):
            if messages_column is not None:
                messages = _clean_messages(record.get(messages_column), f"{source} row {number}")
            else:
                assert prompt is not None and response is not None
                messages = [
                    {"role": "user", "content": clean_text(record.get(prompt))},
                    {"role": "assistant", "content": clean_text(record.get(response))},
                ]
                if system and clean_text(record.get(system)):
                    messages.insert(0, {"role": "system", "content": clean_text(record[system])})
            useful = [m for m in messages if m["content"]]
            if not any(m["role"] == "assistant" for m in useful) or len(useful) < 2:
                empty += 1
                continue
            key = "\n".join(f"{m['role']}: {m['content']}" for m in useful)
            rows.append(Row({"messages": useful}, key, _split_of(record, split_column, source)))
    elif task == "classification":
        text_column = _column(columns, TEXT_COLUMNS)
        label_column = _column(columns, LABEL_COLUMNS)
        if text_column is None or label_column is None:
            raise InvalidRequestError(problem + _expected(task), param="columns")
        for record in records:
            text = clean_text(record.get(text_column))
            label = clean_text(record.get(label_column))
            if not text or not label:
                empty += 1
                continue
            rows.append(
                Row({"text": text, "label": label}, text, _split_of(record, split_column, source))
            )
    else:
        text_column = _column(columns, TEXT_COLUMNS)
        if text_column is None:
            raise InvalidRequestError(problem + _expected(task), param="columns")
        for record in records:
            text = clean_text(record.get(text_column))
            if not text:
                empty += 1
                continue
            rows.append(Row({"text": text}, text, _split_of(record, split_column, source)))
    return rows, empty


def _split_of(record: dict[str, Any], column: str | None, source: str) -> str | None:
    if column is None:
        return None
    value = str(record.get(column) or "").strip().lower()
    value = {"val": "validation", "dev": "validation", "valid": "validation"}.get(value, value)
    if value not in SPLITS:
        raise InvalidRequestError(
            f"{source}: the {column!r} column holds {value!r}; use train, validation or test"
        )
    return value


def read_records(path: Path, task: Task) -> list[dict[str, Any]]:
    """The raw records of a jsonl/json/csv/txt/parquet file (`InvalidRequestError` if bad)."""
    if not path.is_file():
        raise InvalidRequestError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix not in READABLE:
        raise InvalidRequestError(f"{path.name}: cannot read {suffix or 'it'}; use {READABLE}")
    try:
        if suffix == ".parquet":
            import pyarrow.parquet

            return list(pyarrow.parquet.read_table(path).to_pylist())
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidRequestError(f"{path.name} is not UTF-8 text ({error.reason})") from None
    except (OSError, ValueError) as error:  # pyarrow's errors are ValueError/OSError
        raise InvalidRequestError(f"cannot read {path.name}: {error}") from None
    if suffix == ".txt":
        if task != "completion":
            raise InvalidRequestError(
                f"{path.name} is plain text, which only --task completion reads; "
                f"for --task {task} give jsonl/csv/parquet with {_expected(task)}"
            )
        return [{"text": block} for block in re.split(r"\n\s*\n", text)]
    if suffix == ".csv":
        return [dict(row) for row in csv.DictReader(text.splitlines())]
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidRequestError(f"{path.name} is not valid JSON: {error}") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InvalidRequestError(f"{path.name} must hold a JSON list of objects")
        return data
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidRequestError(f"{path.name} line {number}: not JSON ({error})") from None
        if not isinstance(record, dict):
            raise InvalidRequestError(f"{path.name} line {number}: not a JSON object")
        records.append(record)
    return records


def deduplicate(rows: Sequence[Row], threshold: float) -> tuple[list[Row], int, list[list[str]]]:
    """Rows without exact or near duplicates (first kept): (kept, exact removed, near pairs)."""
    seen: set[str] = set()
    unique: list[Row] = []
    for row in rows:
        folded = row.key.casefold()
        if folded not in seen:
            seen.add(folded)
            unique.append(row)
    exact = len(rows) - len(unique)
    if threshold >= 1.0:
        return unique, exact, []
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    kept: list[Row] = []
    near: list[list[str]] = []
    for index, row in enumerate(unique):
        words = re.findall(r"\w+", row.key.casefold())
        shingles = {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}
        signature = MinHash(num_perm=128, seed=1)
        signature.update_batch([s.encode() for s in shingles])
        match = lsh.query(signature)
        if match:
            near.append([unique[int(match[0])].key[:200], row.key[:200]])
            continue
        lsh.insert(str(index), signature)
        kept.append(row)
    return kept, exact, near


def split_rows(rows: Sequence[Row], fractions: Sequence[float], seed: int) -> dict[str, list[Row]]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not 0.99 < sum(fractions) < 1.01:
        raise InvalidRequestError(
            "--split takes three fractions that add up to 1, e.g. 0.8,0.1,0.1"
        )
    if len(rows) < 3:
        raise InvalidRequestError(f"only {len(rows)} rows are left after cleaning; need 3")
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    if all(row.split for row in rows):  # the input's own split (a split column)
        given = {split: [row for row in shuffled if row.split == split] for split in SPLITS}
        if not given["train"]:
            raise InvalidRequestError("the split column puts no row in train")
        return given
    n = len(shuffled)
    validation = max(1, round(n * fractions[1])) if fractions[1] > 0 else 0
    test = max(1, round(n * fractions[2])) if fractions[2] > 0 else 0
    train = n - validation - test
    return {
        "train": shuffled[:train],
        "validation": shuffled[train : train + validation],
        "test": shuffled[train + validation :],
    }


class TokenCounter:
    """Counts tokens as the target model sees a row (chat rows through its template)."""

    def __init__(self, store: ModelStoreInterface, model: str) -> None:
        resolved = store.resolve(model)
        self.model = resolved.manifest.name
        self.template = resolved.manifest.chat_template
        if resolved.manifest.format == "gguf":
            import llama_cpp

            from llmasos.backends.llamacpp.backend import configure_native_logging

            configure_native_logging()
            vocab = llama_cpp.Llama(str(resolved.path), vocab_only=True, verbose=False)
            self._encode: Callable[[str], int] = lambda text: len(
                vocab.tokenize(text.encode(), add_bos=False, special=True)
            )
        elif resolved.manifest.format == "safetensors":
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(resolved.path, local_files_only=True)
            self._encode = lambda text: len(tokenizer.encode(text, add_special_tokens=False))
        else:
            raise ModelFormatError(f"{self.model} is not a generation model with a tokenizer")

    def render(self, fields: dict[str, Any]) -> str:
        from llmasos.chat_template import render_chat_template

        if "messages" in fields and self.template:
            return render_chat_template(
                self.template, fields["messages"], add_generation_prompt=False
            )
        if "messages" in fields:
            return "\n".join(m["content"] for m in fields["messages"])
        return str(fields["text"])

    def count(self, fields: dict[str, Any]) -> int:
        return self._encode(self.render(fields))


def _stats(counts: Sequence[int]) -> dict[str, float]:
    if not counts:
        return {"rows": 0, "total": 0}
    ordered = sorted(counts)
    return {
        "rows": len(ordered),
        "total": sum(ordered),
        "min": ordered[0],
        "mean": round(statistics.fmean(ordered), 1),
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "max": ordered[-1],
    }


def _histogram(counts: dict[str, list[int]], path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.hist([counts[s] for s in SPLITS], bins=30, stacked=True, label=list(SPLITS))
    axes.set_xlabel("tokens per row")
    axes.set_ylabel("rows")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def prepare_dataset(
    registry: DatasetRegistry,
    store: ModelStoreInterface,
    source: Path,
    *,
    task: str,
    name: str,
    model: str = "smollm2",
    max_tokens: int = 2048,
    near_duplicate_threshold: float = 0.85,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    replace: bool = False,
    progress: Progress = lambda line: None,
) -> tuple[DatasetManifest, dict[str, Any]]:
    """Prepare ``source`` as dataset ``name``; its manifest and report."""
    if task not in TASKS:
        raise InvalidRequestError(f"--task {task!r} is not one of {', '.join(TASKS)}")
    check_name(name)
    if registry.exists(name) and not replace:
        raise InvalidRequestError(
            f"a dataset named {name!r} exists; remove it (`llmasos data rm`) or pass --force"
        )
    if not 0 < near_duplicate_threshold <= 1:
        raise InvalidRequestError("the near-duplicate threshold is a Jaccard similarity in (0, 1]")
    started = time.perf_counter()
    the_task: Task = task
    progress(f"reading {source.name}")
    records = read_records(source, the_task)
    rows, empty = convert_rows(records, the_task, source.name)
    progress(f"deduplicating {len(rows)} rows")
    rows, exact, near = deduplicate(rows, near_duplicate_threshold)
    progress(f"counting tokens with {model}'s tokenizer")
    counter = TokenCounter(store, model)
    labels = sorted({str(r.fields["label"]) for r in rows}) if the_task == "classification" else []
    sized: list[tuple[Row, int]] = []
    too_long = 0
    for row in rows:
        if the_task == "classification":
            messages = classification_messages(row.fields["text"], labels)
            row.fields["messages"] = [
                *messages,
                {"role": "assistant", "content": row.fields["label"]},
            ]
        tokens = counter.count(row.fields)
        if tokens > max_tokens:
            too_long += 1
            continue
        sized.append((row, tokens))
    token_of = {id(row): tokens for row, tokens in sized}
    splits = split_rows([row for row, _ in sized], fractions, seed)
    staging = registry.staging(name)
    try:
        infos: dict[str, SplitInfo] = {}
        counts: dict[str, list[int]] = {}
        for split, split_rows_ in splits.items():
            path = staging / f"{split}.jsonl"
            with path.open("w", encoding="utf-8") as handle:
                for row in split_rows_:
                    handle.write(json.dumps(row.fields, ensure_ascii=False) + "\n")
            counts[split] = [token_of[id(row)] for row in split_rows_]
            infos[split] = SplitInfo(len(split_rows_), file_digest(path), sum(counts[split]))
        manifest = DatasetManifest(
            name=name,
            task=the_task,
            digest=combined_digest([infos[s].digest for s in SPLITS]),
            source=str(source.resolve()),
            source_digest=file_digest(source),
            model=counter.model,
            splits=infos,
            labels=labels,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        histogram = _histogram(counts, staging / "tokens.png", f"{name}: tokens per row")
        report: dict[str, Any] = {
            "dataset": name,
            "digest": manifest.digest,
            "task": the_task,
            "source": manifest.source,
            "tokenizer": counter.model,
            "rows_read": len(records),
            "removed": {
                "empty": empty,
                "exact_duplicates": exact,
                "near_duplicates": len(near),
                "over_max_tokens": too_long,
            },
            "near_duplicate_threshold": near_duplicate_threshold,
            "near_duplicate_examples": near[:5],
            "max_tokens": max_tokens,
            "seed": seed,
            "fractions": list(fractions),
            "splits": {s: infos[s].rows for s in SPLITS},
            "tokens": {s: _stats(counts[s]) for s in SPLITS},
            "labels": dict(Counter(str(r.fields["label"]) for r, _ in sized)) if labels else {},
            "histogram": "tokens.png" if histogram else None,
            "seconds": round(time.perf_counter() - started, 2),
        }
        (staging / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    registry.publish(staging, manifest, replace=replace)
    return manifest, report
