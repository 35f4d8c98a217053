"""``llmasos eval MODEL --task T``: a model's quality on a dataset, on either backend.

Tasks:

- ``perplexity``: token-level and byte-level perplexity (`llmasos.toolchain.perplexity`) of
  the texts of a dataset (default: the shipped public-domain text), each row scored on its
  own and the log-likelihoods summed, with the tokenizer and window stated in the result.
- ``bleu``, ``chrf``, ``rouge`` (ROUGE-L F), ``exact-match`` (SQuAD-normalized) and
  ``accuracy`` (the first line of the answer is the label): the model answers each row's
  prompt greedily, rendered with its chat template as it is served, and the answers are
  scored against the references with `llmasos.toolchain.metrics` (sacrebleu, rouge-score).

Data: a registered dataset (`llmasos data prep`; its ``test`` split unless another is
named), or a file: ``.txt`` (one text, perplexity only) or jsonl/json/csv/parquet read with
`dataprep`'s column rules (``text`` for perplexity; ``messages`` or a prompt and a response
column for generation; ``text`` and ``label`` for accuracy). Backends: ``llamacpp`` (the
model's GGUF as served) and ``transformers`` (float32 torch; a GGUF is de-quantized through
the transformers loader and cached). Every result is appended to the model's evaluation
history (`History`, ``$LLMASOS_HOME/eval/models.jsonl``) under the exact version measured,
so ``llmasos eval history MODEL`` shows and plots it across versions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmasos.backends.interface import BackendInterface, LoadSpec
from llmasos.errors import InvalidRequestError, ModelNotFoundError
from llmasos.models import ModelStoreInterface
from llmasos.models.manifest import Manifest
from llmasos.toolchain import metrics
from llmasos.toolchain.datasets import NAME_PATTERN, SPLITS, DatasetRegistry, file_digest
from llmasos.toolchain.perplexity import Perplexity, perplexity, public_domain_text
from llmasos.toolchain.training import background_niceness

TASKS = ("perplexity", "bleu", "chrf", "rouge", "exact-match", "accuracy")
BACKENDS = ("llamacpp", "transformers")
PUBLIC_DOMAIN = "public-domain-text"
"""The ``dataset`` of a perplexity measured on `public_domain_text` (no ``--data``)."""


@dataclass(frozen=True)
class EvalItem:
    prompt: list[dict[str, str]] | None
    """The chat to answer (generation tasks), or None."""
    reference: str
    text: str
    """What perplexity scores."""


@dataclass
class EvalData:
    name: str
    digest: str
    items: list[EvalItem]


@dataclass
class ModelEvalReport:
    model: str
    version: str
    """The digest of the exact version measured."""
    task: str
    backend: str
    dataset: str
    dataset_digest: str
    value: float
    """The task's figure (perplexity, or 0-100 for the others)."""
    items: int
    details: dict[str, Any] = field(default_factory=dict)
    predictions: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    date: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line, e.g. ``perplexity 9.58``."""
        return f"{self.task} {self.value:.2f}"


def check_task(task: str) -> str:
    if task not in TASKS:
        raise InvalidRequestError(
            f"unknown task {task!r} for a model (tasks: {', '.join(TASKS)})", param="task"
        )
    return task


def check_backend(backend: str) -> str:
    name = backend.replace(".", "").replace("-", "").lower()
    if name not in BACKENDS:
        raise InvalidRequestError(
            f"unknown backend {backend!r} (backends: {', '.join(BACKENDS)})", param="backend"
        )
    return name


# --- data ----------------------------------------------------------------------------------


def _digest_of_text(text: str) -> str:
    import hashlib

    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def _row_item(row: dict[str, Any], where: str, task: str) -> EvalItem:
    if "messages" in row:
        messages = list(row["messages"])
        if not messages or messages[-1].get("role") != "assistant":
            raise InvalidRequestError(f"{where}: the last message is not the assistant's answer")
        text = "\n".join(str(m.get("content", "")) for m in messages)
        return EvalItem(messages[:-1], str(row.get("label") or messages[-1]["content"]), text)
    if task != "perplexity":
        raise InvalidRequestError(
            f"{where} has texts without answers; --task {task} needs a chat or classification "
            "dataset (messages, a prompt and a response column, or text and label)",
            param="data",
        )
    return EvalItem(None, "", str(row["text"]))


def load_eval_data(
    registry: DatasetRegistry,
    data: str | None,
    task: str,
    *,
    split: str = "test",
    limit: int | None = None,
) -> EvalData:
    """The items of ``data``: a registered dataset's split, a file, or the shipped text."""
    if data is None:
        if task != "perplexity":
            raise InvalidRequestError(f"--task {task} needs --data (a dataset or a file)")
        text = public_domain_text()
        return EvalData(PUBLIC_DOMAIN, _digest_of_text(text), [EvalItem(None, "", text)])
    if split not in SPLITS:
        raise InvalidRequestError(f"--split {split!r} is not one of {', '.join(SPLITS)}")
    path = Path(data).expanduser()
    if not path.exists() and _is_name(data) and registry.exists(data):
        manifest = registry.get(data)
        rows = registry.rows(data, split)
        where = f"dataset {data} ({split})"
        name, digest = data, manifest.splits[split].digest
    elif path.is_file():
        digest = file_digest(path)
        name = str(path)
        where = path.name
        if path.suffix.lower() == ".txt":
            if task != "perplexity":
                raise InvalidRequestError(
                    f"{path.name} is plain text, which only --task perplexity reads; for "
                    f"--task {task} give jsonl/csv/parquet with messages, a prompt and a "
                    "response column, or text and label"
                )
            text = path.read_text(encoding="utf-8")
            return EvalData(name, _digest_of_text(text), [EvalItem(None, "", text)])
        rows = _file_rows(path, task)
    else:
        known = ", ".join(m.name for m in registry.list()) or "none"
        raise InvalidRequestError(
            f"no dataset or file named {data!r} (prepared datasets: {known})", param="data"
        )
    if not rows:
        raise InvalidRequestError(f"{where} has no rows", param="data")
    if limit is not None and limit < len(rows):
        rows = [rows[n * len(rows) // limit] for n in range(limit)]
    return EvalData(name, digest, [_row_item(r, where, task) for r in rows])


def _is_name(data: str) -> bool:
    return bool(NAME_PATTERN.match(data))


def _file_rows(path: Path, task: str) -> list[dict[str, Any]]:
    """Rows of a data file in the form a prepared dataset has (`dataprep`'s columns)."""
    from llmasos.toolchain import dataprep

    if task == "perplexity":
        records = dataprep.read_records(path, "completion")
        return [r.fields for r in dataprep.convert_rows(records, "completion", path.name)[0]]
    records = dataprep.read_records(path, "chat")
    try:
        return [r.fields for r in dataprep.convert_rows(records, "chat", path.name)[0]]
    except InvalidRequestError:
        pass
    try:
        rows = [r.fields for r in dataprep.convert_rows(records, "classification", path.name)[0]]
    except InvalidRequestError:
        columns = ", ".join(dict.fromkeys(c for r in records[:1000] for c in r)) or "(none)"
        raise InvalidRequestError(
            f"{path.name} has columns {columns}; --task {task} expects 'messages', or a prompt "
            f"column ({'/'.join(dataprep.PROMPT_COLUMNS)}) with a reference column "
            f"({'/'.join(dataprep.RESPONSE_COLUMNS)}), or a text column "
            f"({'/'.join(dataprep.TEXT_COLUMNS)}) with 'label'",
            param="columns",
        ) from None
    labels = sorted({str(r["label"]) for r in rows})
    for row in rows:
        row["messages"] = [
            *dataprep.classification_messages(row["text"], labels),
            {"role": "assistant", "content": row["label"]},
        ]
    return rows


# --- backends ------------------------------------------------------------------------------


def load_backend(
    store: ModelStoreInterface,
    name: str,
    backend: str,
    *,
    home: Path,
    context_length: int,
    threads: int = 0,
) -> tuple[BackendInterface, Manifest]:
    """``name`` (the version the store serves) loaded in ``backend``."""
    resolved = store.resolve(name)
    manifest = resolved.manifest
    if manifest.kind != "generate":
        raise InvalidRequestError(f"{manifest.name} is an embedding model; it has no perplexity")
    if backend == "llamacpp":
        from llmasos.backends.llamacpp.backend import LlamaCppBackend

        if manifest.format != "gguf":
            raise InvalidRequestError(
                f"{manifest.name} is {manifest.format}; the llama.cpp backend reads GGUF "
                "(use --backend transformers)",
                param="backend",
            )
        spec = LoadSpec(
            path=resolved.path,
            format="gguf",
            context_length=context_length,
            max_sequences=1,
            threads=threads,
            options={"adapter": resolved.adapter_path} if resolved.adapter_path else {},
        )
        return LlamaCppBackend.load(spec), manifest
    from llmasos.backends.transformers.backend import TransformersBackend

    spec = LoadSpec(
        path=resolved.path,
        format=manifest.format,
        context_length=context_length,
        max_sequences=1,
        threads=threads,
        chat_template=manifest.chat_template,
        options={
            "cache_dir": str(home / "cache" / "transformers" / manifest.short_id),
            "dtype": "float32",
            "adapter": resolved.adapter_path,
        },
    )
    return TransformersBackend.load(spec), manifest


# --- evaluating ----------------------------------------------------------------------------


def _perplexity(
    backend: BackendInterface, data: EvalData, window: int, advance: Callable[[], None]
) -> tuple[float, dict[str, Any]]:
    total: Perplexity | None = None
    for item in data.items:
        if not item.text.strip():
            continue
        try:
            measured = perplexity(backend, item.text, window=window)
        except InvalidRequestError:  # a row of one token: nothing to predict
            advance()
            continue
        total = measured if total is None else total + measured
        advance()
    if total is None:
        raise InvalidRequestError(f"{data.name} has no text of two tokens or more to score")
    return total.value, {
        "token_perplexity": total.value,
        "byte_perplexity": total.byte_value,
        "bits_per_byte": total.bits_per_byte,
        "tokens_scored": total.tokens,
        "bytes_scored": total.bytes,
        "negative_log_likelihood": total.negative_log_likelihood,
        "window": total.window,
        "tokenizer": "llama.cpp, the GGUF's vocabulary"
        if backend.name == "llama.cpp"
        else "transformers, the HF tokenizer",
        "bos_added": len(backend.tokenize("a", add_special=True))
        > len(backend.tokenize("a", add_special=False)),
    }


def _answers(
    backend: BackendInterface,
    manifest: Manifest,
    data: EvalData,
    max_tokens: int,
    advance: Callable[[], None],
) -> list[str]:
    from llmasos.toolchain.registering import greedy_text
    from llmasos.toolchain.training import render

    answers = []
    for item in data.items:
        assert item.prompt is not None
        prompt = render(manifest, item.prompt, prompt=True)
        tokens = backend.tokenize(prompt, add_special=False)
        room = backend.context_length - len(tokens) - 1
        if room < 1:
            raise InvalidRequestError(
                f"a prompt of {len(tokens)} tokens leaves no room to answer in the "
                f"{backend.context_length}-token context"
            )
        answers.append(greedy_text(backend, tokens, min(max_tokens, room)))
        advance()
    return answers


def score_answers(task: str, answers: Sequence[str], references: Sequence[str]) -> float:
    """The 0-100 figure of ``task`` for ``answers`` against ``references``."""
    from llmasos.toolchain.training import normalize_answer

    if task == "bleu":
        return metrics.bleu(answers, references)
    if task == "chrf":
        return metrics.chrf(answers, references)
    if task == "rouge":
        return metrics.mean(
            [metrics.rouge_l(a, r) for a, r in zip(answers, references, strict=True)]
        )
    if task == "exact-match":
        return metrics.mean(
            [metrics.exact_match(a, r) for a, r in zip(answers, references, strict=True)]
        )
    return metrics.accuracy(
        [normalize_answer(a) for a in answers], [r.strip().casefold() for r in references]
    )


def evaluate_model(
    store: ModelStoreInterface,
    registry: DatasetRegistry,
    model: str,
    task: str,
    *,
    home: Path,
    data: str | None = None,
    backend: str = "llamacpp",
    split: str = "test",
    window: int = 1024,
    max_tokens: int = 0,
    limit: int | None = None,
    threads: int = 0,
    advance: Callable[[], None] = lambda: None,
    total: Callable[[int], None] = lambda n: None,
) -> ModelEvalReport:
    """Measure ``model`` on ``task`` over ``data``; the report (not yet recorded)."""
    task, backend = check_task(task), check_backend(backend)
    if window < 2:
        raise InvalidRequestError("--window must hold at least two tokens")
    items = load_eval_data(registry, data, task, split=split, limit=limit)
    background_niceness()
    started = time.perf_counter()
    context = window if task == "perplexity" else 4096
    loaded, manifest = load_backend(
        store, model, backend, home=home, context_length=context, threads=threads
    )
    total(len(items.items))
    predictions: list[dict[str, str]] = []
    try:
        if task == "perplexity":
            value, details = _perplexity(loaded, items, min(window, loaded.context_length), advance)
        else:
            references = [i.reference for i in items.items]
            if not max_tokens:
                longest = max(len(loaded.tokenize(r, add_special=False)) for r in references)
                max_tokens = longest + 8 if task in ("accuracy", "exact-match") else 256
            answers = _answers(loaded, manifest, items, max_tokens, advance)
            value = score_answers(task, answers, references)
            details = {"max_tokens": max_tokens, "decoding": "greedy, chat template as served"}
            predictions = [
                {"prompt": i.prompt[-1]["content"] if i.prompt else "", "answer": a, "reference": r}
                for i, a, r in zip(items.items, answers, references, strict=True)
            ]
    finally:
        loaded.close()
    return ModelEvalReport(
        model=manifest.name,
        version=manifest.digest,
        task=task,
        backend=backend,
        dataset=items.name,
        dataset_digest=items.digest,
        value=value,
        items=len(items.items),
        details=details,
        predictions=predictions,
        seconds=round(time.perf_counter() - started, 2),
        date=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


# --- history -------------------------------------------------------------------------------


class History:
    """Every model evaluation, one JSON line each, in ``$LLMASOS_HOME/eval/models.jsonl``.

    Lines are appended with one ``write`` on a file opened for appending, so two evaluations
    finishing together do not interleave; the predictions stay in the report file only.
    """

    def __init__(self, home: Path) -> None:
        self.path = home / "eval" / "models.jsonl"

    def record(self, report: ModelEvalReport, report_path: Path | None = None) -> dict[str, Any]:
        entry = {k: v for k, v in report.to_dict().items() if k != "predictions"}
        if report_path is not None:
            entry["report"] = str(report_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
        return entry

    def entries(self, model: str | None = None) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        found = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if model is None or entry.get("model") == model:
                found.append(entry)
        return found


def version_order(
    store: ModelStoreInterface, model: str, entries: Sequence[dict[str, Any]]
) -> list[str]:
    """The versions of ``entries`` oldest first: the store's order, then removed ones by date."""
    try:
        stored = [m.digest for m in reversed(store.versions(model))]
    except ModelNotFoundError:  # a removed model still has its history
        stored = []
    seen = {e["version"] for e in entries}
    order = [d for d in stored if d in seen]
    for entry in sorted(entries, key=lambda e: e.get("date", "")):
        if entry["version"] not in order:
            order.append(entry["version"])
    return order


def plot_history(entries: Sequence[dict[str, Any]], order: Sequence[str], path: Path) -> None:
    """One line per (task, dataset, backend) across the versions, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(e["task"] for e in entries))
    figure, axes = plt.subplots(len(tasks), 1, figsize=(7, 3 * len(tasks)), squeeze=False)
    labels = [d.removeprefix("sha256:")[:8] for d in order]
    for axis, task in zip(axes[:, 0], tasks, strict=True):
        series: dict[tuple[str, str], dict[int, float]] = {}
        for entry in entries:
            if entry["task"] == task:
                key = (Path(entry["dataset"]).name, entry["backend"])
                series.setdefault(key, {})[order.index(entry["version"])] = entry["value"]
        for (dataset, backend), points in series.items():
            xs = sorted(points)
            axis.plot(xs, [points[x] for x in xs], marker="o", label=f"{dataset} ({backend})")
        axis.set_xticks(range(len(order)), labels)
        axis.set_ylabel(task)
        axis.legend(fontsize="small")
    axes[-1, 0].set_xlabel("version (oldest first)")
    figure.suptitle(f"{entries[0]['model']}: evaluations across versions")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
