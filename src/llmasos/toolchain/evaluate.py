"""Evaluate a named service on a dataset against its two references.

`evaluate_service` runs every item three ways on the same kernel and model: through the
service (`ServiceRunner.call`), as a content-free baseline that reads nothing but the input's
form (the first sentences for a summary, the passage for an answer, the first label, an empty
object, the input copied for a translation), and as the same task asked plainly in chat (one
user message through `EngineClientInterface.generate`, the model's own defaults, as
``/v1/chat/completions`` would run it, with the service's ``max_tokens`` as its cap). Each
system is scored with the metrics of `SERVICE_TASKS` (`llmasos.toolchain.metrics`); the
report is a JSON-ready dict whose ``main`` says which metric decides. Datasets are JSON
lines of ``{"id", "input", "reference"}``; the shipped ones are in
``toolchain/data/services/`` (see its README).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.kernel.interface import EngineClientInterface, GenerateRequest
from llmasos.services.runner import ServiceRunner
from llmasos.toolchain import metrics
from llmasos.types import SamplingParams

DATA_DIR = Path(__file__).parent / "data" / "services"
SYSTEMS = ("service", "baseline", "chat")
Item = dict[str, Any]


@dataclass(frozen=True)
class ServiceTask:
    """How one service is scored and what its two references are."""

    main: str
    """The metric that decides (higher is better)."""
    baseline: Callable[[Item], Any]
    chat_prompt: Callable[[Item], str]
    parse_chat: Callable[[str, Item], Any]
    score: Callable[[Sequence[Any], Sequence[Item]], dict[str, float]]


def _first_sentences(item: Item) -> str:
    sentences = metrics.split_sentences(item["input"]["text"])
    return " ".join(sentences[: int(item["input"].get("max_sentences", 3))])


def _score_summaries(predictions: Sequence[Any], items: Sequence[Item]) -> dict[str, float]:
    texts = [p if isinstance(p, str) else "" for p in predictions]
    wanted = [int(i["input"].get("max_sentences", 3)) for i in items]
    counts = [metrics.count_sentences(t) for t in texts]
    words = [len(t.split()) for t in texts]
    reference_words = [len(str(i["reference"]).split()) for i in items]
    return {
        "rougeL": metrics.mean(
            [metrics.rouge_l(t, i["reference"]) for t, i in zip(texts, items, strict=True)]
        ),
        "sentences_as_asked": metrics.accuracy(counts, wanted),
        "sentences": metrics.mean(counts),
        "sentences_asked": metrics.mean(wanted),
        "length_ratio": sum(words) / max(1, sum(reference_words)),
    }


def _score_answers(predictions: Sequence[Any], items: Sequence[Item]) -> dict[str, float]:
    texts = [p if isinstance(p, str) else "" for p in predictions]
    references = [str(i["reference"]) for i in items]
    return {
        "token_f1": metrics.mean(
            [metrics.token_f1(t, r) for t, r in zip(texts, references, strict=True)]
        ),
        "contains": metrics.mean(
            [metrics.contains(t, r) for t, r in zip(texts, references, strict=True)]
        ),
        "exact": metrics.mean(
            [metrics.exact_match(t, r) for t, r in zip(texts, references, strict=True)]
        ),
        "words": metrics.mean([len(t.split()) for t in texts]),
    }


def _score_labels(predictions: Sequence[Any], items: Sequence[Item]) -> dict[str, float]:
    references = [i["reference"] for i in items]
    counts = Counter(p for p in predictions if p is not None)
    top_share = 100.0 * max(counts.values()) / len(predictions) if counts else 0.0
    positions = Counter(
        i["input"]["labels"].index(p)
        for p, i in zip(predictions, items, strict=True)
        if p in i["input"]["labels"]
    )
    return {
        "accuracy": metrics.accuracy(predictions, references),
        "top_label_share": top_share,
        "first_label_share": 100.0 * positions.get(0, 0) / max(1, len(predictions)),
        "answered": 100.0 * sum(1 for p in predictions if p is not None) / max(1, len(items)),
    }


def _score_extractions(predictions: Sequence[Any], items: Sequence[Item]) -> dict[str, float]:
    valid = [isinstance(p, dict) for p in predictions]
    fields = [
        metrics.field_accuracy(p, i["reference"]) for p, i in zip(predictions, items, strict=True)
    ]
    return {
        "json_valid": 100.0 * sum(valid) / max(1, len(valid)),
        "field_accuracy": metrics.mean(fields),
    }


def _score_translations(predictions: Sequence[Any], items: Sequence[Item]) -> dict[str, float]:
    texts = [p if isinstance(p, str) else "" for p in predictions]
    references = [str(i["reference"]) for i in items]
    same = [
        metrics.count_sentences(t) == metrics.count_sentences(i["input"]["text"])
        for t, i in zip(texts, items, strict=True)
    ]
    return {
        "chrF": metrics.chrf(texts, references),
        "BLEU": metrics.bleu(texts, references),
        "sentence_count_kept": 100.0 * sum(same) / max(1, len(same)),
    }


def _first_label(text: str, item: Item) -> str | None:
    """The label the reply names first (case-insensitive), or None."""
    lowered = text.lower()
    found = [(lowered.find(label.lower()), label) for label in item["input"]["labels"]]
    found = [(at, label) for at, label in found if at >= 0]
    return min(found)[1] if found else None


def _fields(item: Item) -> str:
    return ", ".join(item["input"]["schema"].get("properties", {}))


SERVICE_TASKS: dict[str, ServiceTask] = {
    "summarize": ServiceTask(
        main="rougeL",
        baseline=_first_sentences,
        chat_prompt=lambda i: (
            f"Summarize this text in {i['input'].get('max_sentences', 3)} sentences.\n\n"
            f"{i['input']['text']}"
        ),
        parse_chat=lambda text, _: text.strip(),
        score=_score_summaries,
    ),
    "answer": ServiceTask(
        main="token_f1",
        baseline=lambda i: i["input"].get("context") or "",
        chat_prompt=lambda i: (
            f"{i['input'].get('context', '')}\n\n{i['input']['question']}".strip()
        ),
        parse_chat=lambda text, _: text.strip(),
        score=_score_answers,
    ),
    "classify": ServiceTask(
        main="accuracy",
        baseline=lambda i: i["input"]["labels"][0],
        chat_prompt=lambda i: (
            f"Classify this text as one of: {', '.join(i['input']['labels'])}.\n\n"
            f"{i['input']['text']}"
        ),
        parse_chat=_first_label,
        score=_score_labels,
    ),
    "extract": ServiceTask(
        main="field_accuracy",
        baseline=lambda _: {},
        chat_prompt=lambda i: (
            f"Extract {_fields(i)} from this text as a JSON object.\n\n{i['input']['text']}"
        ),
        parse_chat=lambda text, _: metrics.parse_json_object(text),
        score=_score_extractions,
    ),
    "translate": ServiceTask(
        main="chrF",
        baseline=lambda i: i["input"]["text"],
        chat_prompt=lambda i: (
            f"Translate this text into {i['input']['target_language']}.\n\n{i['input']['text']}"
        ),
        parse_chat=lambda text, _: text.strip(),
        score=_score_translations,
    ),
}


def item_scores(service: str, predictions: Sequence[Any], items: Sequence[Item]) -> list[float]:
    """The service's main score of each item on its own, for paired comparisons of two
    systems on the same items (chrF and BLEU become sentence-level)."""
    task = SERVICE_TASKS[service]
    return [
        float(task.score([prediction], [item])[task.main])
        for prediction, item in zip(predictions, items, strict=True)
    ]


def dataset_path(service: str, path: Path | None = None) -> Path:
    """The dataset to use: ``path``, else the shipped development set of ``service``."""
    if path is not None:
        return Path(path).expanduser()
    shipped = DATA_DIR / f"{service}.jsonl"
    if not shipped.exists():
        raise InvalidRequestError(
            f"no development set ships for service {service!r} "
            f"(shipped: {', '.join(sorted(SERVICE_TASKS))}); give one with --data",
            param="data",
        )
    return shipped


def load_dataset(path: Path, limit: int | None = None) -> list[Item]:
    """Items of a JSON-lines dataset, each checked to have ``input`` and ``reference``;
    with ``limit``, that many spread evenly over the file (sets are grouped by genre)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidRequestError(f"no such dataset: {path}", param="data") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidRequestError(f"cannot read {path}: {error}", param="data") from None
    items: list[Item] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as error:
            raise InvalidRequestError(f"{path}:{number}: not JSON: {error}", param="data") from None
        if not isinstance(item, dict) or not isinstance(item.get("input"), dict):
            raise InvalidRequestError(
                f"{path}:{number}: an item is an object with an 'input' object", param="data"
            )
        if "reference" not in item:
            raise InvalidRequestError(f"{path}:{number}: the item has no 'reference'", param="data")
        item.setdefault("id", f"{path.stem}-{number}")
        items.append(item)
    if not items:
        raise InvalidRequestError(f"{path} holds no items", param="data")
    if limit is not None and limit < len(items):  # spread over the set: every genre and task
        items = [items[n * len(items) // limit] for n in range(limit)]
    return items


async def _plain_chat(
    engine: EngineClientInterface, model: str | None, prompt: str, max_tokens: int
) -> str:
    """One user message with the model's own defaults, capped at the service's budget."""
    request = GenerateRequest(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        sampling=SamplingParams(max_tokens=max_tokens),
        explicit=frozenset({"max_tokens"}),
    )
    return "".join([output.text async for output in engine.generate(request)])


async def evaluate_service(
    engine: EngineClientInterface,
    runner: ServiceRunner,
    service: str,
    items: Sequence[Item],
    *,
    model: str | None = None,
    dataset: str = "",
    advance: Callable[[str], None] | None = None,
    references: bool = True,
) -> dict[str, Any]:
    """Run ``items`` through the service, its baseline and plain chat; the scored report.

    ``advance(system)`` is called after each item of each system (for a progress bar).
    A service call that fails scores as a wrong answer; its error is kept in the report.
    """
    task = SERVICE_TASKS.get(service)
    if task is None:
        raise InvalidRequestError(
            f"no scoring is defined for service {service!r} "
            f"(scored: {', '.join(sorted(SERVICE_TASKS))})",
            param="target",
        )
    definition = runner.registry.get(service)  # an unknown service fails before any work
    budget = int(definition.parameters.get("max_tokens") or 256)
    predictions: dict[str, list[Any]] = {system: [] for system in SYSTEMS}
    seconds: dict[str, float] = dict.fromkeys(SYSTEMS, 0.0)
    used_model = model or ""
    several = len(definition.methods) > 1
    by_method: dict[str, dict[str, Any]] = {}
    for method in definition.methods if several else (None,):
        outputs: list[Any] = []
        details: list[dict[str, Any]] = []
        failures: list[dict[str, str]] = []
        started = time.perf_counter()
        for item in items:
            try:
                result = await runner.call(service, item["input"], model=model, method=method)
                outputs.append(result.output)
                if method != "extractive":  # the extractive method names the embedding model
                    used_model = result.model or used_model
                details.append(dict(result.details) if result.details else {})
            except LLMasOSError as error:
                outputs.append(None)
                failures.append({"id": str(item["id"]), "error": error.message})
                details.append({})
            if advance:
                advance("service")
        by_method[method or ""] = {
            "predictions": outputs,
            "details": details,
            "errors": [{**f, "method": method} if method else f for f in failures],
            "seconds": time.perf_counter() - started,
            "scores": task.score(outputs, items),
        }
    # the service uses the best-scoring method for this model once this report is recorded
    best = max(by_method, key=lambda m: by_method[m]["scores"][task.main])
    predictions["service"] = by_method[best]["predictions"]
    extra = by_method[best]["details"]
    seconds["service"] = by_method[best]["seconds"]
    errors = [e for run in by_method.values() for e in run["errors"]]
    methods = (
        {
            "method": best,
            "methods": {
                m: {
                    **run["scores"],
                    "seconds_per_item": run["seconds"] / len(items),
                    "predictions": run["predictions"],
                }
                for m, run in by_method.items()
            },
        }
        if several
        else {}
    )
    systems = SYSTEMS if references else ("service",)
    if not references:
        return (
            _report(
                service,
                dataset,
                items,
                used_model,
                task,
                predictions,
                seconds,
                errors,
                extra,
                systems,
            )
            | methods
        )
    for item in items:
        predictions["baseline"].append(task.baseline(item))
        if advance:
            advance("baseline")
    for item in items:
        started = time.perf_counter()
        try:
            reply = await _plain_chat(engine, model, task.chat_prompt(item), budget)
            predictions["chat"].append(task.parse_chat(reply, item))
        except LLMasOSError as error:
            predictions["chat"].append(None)
            errors.append({"id": str(item["id"]), "system": "chat", "error": error.message})
        seconds["chat"] += time.perf_counter() - started
        if advance:
            advance("chat")
    return (
        _report(
            service, dataset, items, used_model, task, predictions, seconds, errors, extra, systems
        )
        | methods
    )


def _report(
    service: str,
    dataset: str,
    items: Sequence[Item],
    used_model: str,
    task: ServiceTask,
    predictions: dict[str, list[Any]],
    seconds: dict[str, float],
    errors: list[dict[str, str]],
    extra: list[dict[str, Any]],
    systems: Sequence[str],
) -> dict[str, Any]:
    scores = {system: task.score(predictions[system], items) for system in systems}
    for system in systems:
        if system != "baseline":
            scores[system]["seconds_per_item"] = seconds[system] / len(items)
    return {
        "service": service,
        "dataset": dataset,
        "items": len(items),
        "model": used_model,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "main": task.main,
        "scores": scores,
        "errors": errors,
        "predictions": [
            {
                "id": item["id"],
                "reference": item["reference"],
                **{system: predictions[system][n] for system in systems},
                **({"details": extra[n]} if extra[n] else {}),
            }
            for n, item in enumerate(items)
        ],
    }


def quality_entry(report: dict[str, Any]) -> dict[str, Any]:
    """What `GET /v1/services/{name}` shows of a report (`llmasos.services.quality`)."""
    main = report["main"]
    scores = report["scores"]
    if "chat" not in scores:
        raise InvalidRequestError("a quality entry needs the references; run them too")
    return {
        "dataset": report["dataset"],
        "items": report["items"],
        "metric": main,
        "value": round(scores["service"][main], 2),
        "baseline": round(scores["baseline"][main], 2),
        "plain_chat": round(scores["chat"][main], 2),
        "model": report["model"],
        "date": report["date"],
        **(
            {
                "method": report["method"],
                "methods": {m: round(r[main], 2) for m, r in report["methods"].items()},
            }
            if "methods" in report
            else {}
        ),
    }
