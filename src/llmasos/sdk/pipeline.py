"""``llmasos.pipeline(task, model=...)``: transformers-style pipelines on the LLMasOS kernel.

Each pipeline is built on an `LLM` (a server when one answers, else the in-process kernel)
and, where one fits, a named service; results have the shapes transformers' pipelines
return, so code written for them reads the same:

* ``text-generation``: ``[{"generated_text": prompt + reply}]`` (``return_full_text=False``:
  the reply only);
* ``summarization``: ``[{"summary_text": ...}]`` (the ``summarize`` service, map-reduce for
  long texts);
* ``translation`` (or ``translation_xx_to_yy``): ``[{"translation_text": ...}]``;
* ``question-answering``: ``{"answer": ...}`` (the ``answer`` service; generative, so
  there is no span ``start``/``end`` or ``score``);
* ``text-classification`` / ``zero-shot-classification``: with ``candidate_labels``,
  ``{"sequence", "labels", "scores"}``: the ``classify`` service scores every label's
  likelihood and calibrates it, so the scores are probabilities summing to 1, likeliest
  first. Without labels: the ``sentiment`` service,
  ``[{"label": ..., "score": 1.0}]``;
* ``feature-extraction``: one pooled sentence vector per input (``[[float, ...]]``), not
  transformers' per-token hidden states.

A list input gives a list of per-item results.
"""

from __future__ import annotations

import re
from typing import Any

from llmasos.config import load_settings
from llmasos.errors import InvalidRequestError
from llmasos.sdk.llm import LLM

TASKS = (
    "text-generation",
    "summarization",
    "translation",
    "question-answering",
    "text-classification",
    "zero-shot-classification",
    "feature-extraction",
)
_TRANSLATION_TASK = re.compile(r"^translation_([a-z]{2,3})_to_([a-z]{2,3})$")
LANGUAGE_NAMES = {
    "en": "English",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ru": "Russian",
    "zh": "Chinese",
    "ja": "Japanese",
}


class Pipeline:
    """A task bound to a model; call it like a transformers pipeline."""

    task = ""

    def __init__(self, llm: LLM, **defaults: Any) -> None:
        self.llm = llm
        self.model = llm
        self.defaults = defaults

    def __call__(self, inputs: Any = None, /, **kwargs: Any) -> Any:
        options = {**self.defaults, **kwargs}
        if isinstance(inputs, list | tuple):
            return [self.run_one(item, options) for item in inputs]
        return self.run_one(inputs, options)

    def run_one(self, item: Any, options: dict[str, Any]) -> Any:
        raise NotImplementedError


def _sampling(options: dict[str, Any]) -> dict[str, Any]:
    """transformers' generation keywords as LLMasOS sampling parameters."""
    result = dict(options)
    for name in ("max_new_tokens", "max_length"):
        if name in result:
            result["max_tokens"] = result.pop(name)
    result.pop("do_sample", None)
    return result


class TextGenerationPipeline(Pipeline):
    task = "text-generation"

    def run_one(self, item: Any, options: dict[str, Any]) -> Any:
        full = options.pop("return_full_text", True)
        reply = self.llm.chat(item, **_sampling(options))
        if isinstance(item, str):
            return [{"generated_text": item + reply if full else reply}]
        messages = [*item, {"role": "assistant", "content": reply}]
        return [{"generated_text": messages if full else reply}]


class SummarizationPipeline(Pipeline):
    task = "summarization"

    def run_one(self, item: Any, options: dict[str, Any]) -> Any:
        parameters = _sampling(options)
        result = self.llm.call("summarize", str(item), parameters=parameters or None)
        return [{"summary_text": result.output}]


class TranslationPipeline(Pipeline):
    task = "translation"

    def run_one(self, item: Any, options: dict[str, Any]) -> Any:
        target = options.pop("tgt_lang", None) or options.pop("target_language", None)
        source = options.pop("src_lang", None) or options.pop("source_language", None)
        if not target:
            raise InvalidRequestError("translation needs tgt_lang= (the target language)")
        extra = {"source_language": LANGUAGE_NAMES.get(source, source)} if source else {}
        result = self.llm.call(
            "translate",
            {"text": str(item), "target_language": LANGUAGE_NAMES.get(target, target), **extra},
            parameters=_sampling(options) or None,
        )
        return [{"translation_text": result.output}]


class QuestionAnsweringPipeline(Pipeline):
    task = "question-answering"

    def __call__(self, inputs: Any = None, /, **kwargs: Any) -> Any:
        if inputs is None and "question" in kwargs:
            inputs = {"question": kwargs.pop("question"), "context": kwargs.pop("context", None)}
        return super().__call__(inputs, **kwargs)

    def run_one(self, item: Any, options: dict[str, Any]) -> Any:
        if isinstance(item, str):
            item = {"question": item}
        if not isinstance(item, dict) or "question" not in item:
            raise InvalidRequestError("question-answering needs question= (and context=)")
        data = {k: v for k, v in item.items() if k in ("question", "context") and v}
        result = self.llm.call("answer", data, parameters=_sampling(options) or None)
        return {"answer": result.output}


class ClassificationPipeline(Pipeline):
    task = "text-classification"

    def run_one(self, item: Any, options: dict[str, Any]) -> Any:
        labels = options.pop("candidate_labels", None)
        parameters = _sampling(options) or None
        if labels is None:
            result = self.llm.call("sentiment", str(item), parameters=parameters)
            return [{"label": result.output, "score": 1.0}]
        if isinstance(labels, str):
            labels = [label.strip() for label in labels.split(",") if label.strip()]
        result = self.llm.call(
            "classify", {"text": str(item), "labels": list(labels)}, parameters=parameters
        )
        probabilities = (result.details or {}).get("probabilities") or {result.output: 1.0}
        ordered = sorted(labels, key=lambda label: -float(probabilities.get(label, 0.0)))
        return {
            "sequence": str(item),
            "labels": ordered,
            "scores": [float(probabilities.get(label, 0.0)) for label in ordered],
        }


class FeatureExtractionPipeline(Pipeline):
    task = "feature-extraction"

    def __init__(self, llm: LLM, embedding_model: str | None = None, **defaults: Any) -> None:
        super().__init__(llm, **defaults)
        self.embedding_model = embedding_model

    def __call__(self, inputs: Any = None, /, **kwargs: Any) -> Any:
        items = [inputs] if isinstance(inputs, str) else list(inputs)
        vectors = self.llm.embed(items, self.embedding_model)
        return [vectors[0]] if isinstance(inputs, str) else [[v] for v in vectors]


def pipeline(task: str, model: str | LLM | None = None, **kwargs: Any) -> Pipeline:
    """A pipeline for ``task`` on ``model`` (a name for `LLM.from_pretrained`, or an LLM)."""
    match = _TRANSLATION_TASK.match(task)
    if match:
        kwargs.setdefault("src_lang", match.group(1))
        kwargs.setdefault("tgt_lang", match.group(2))
        task = "translation"
    if task not in TASKS:
        raise InvalidRequestError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    base_url = kwargs.pop("base_url", None)
    mode = kwargs.pop("mode", "auto")
    if task == "feature-extraction":
        name = model if isinstance(model, str) else None
        if isinstance(model, LLM):
            return FeatureExtractionPipeline(model, model.name, **kwargs)
        embedding = name or load_settings().default_embedding_model
        return FeatureExtractionPipeline(
            LLM.from_pretrained(embedding, base_url=base_url, mode=mode), embedding, **kwargs
        )
    if isinstance(model, LLM):
        llm = model
    else:
        llm = LLM.from_pretrained(
            model or load_settings().default_model, base_url=base_url, mode=mode
        )
    classes: dict[str, type[Pipeline]] = {
        "text-generation": TextGenerationPipeline,
        "summarization": SummarizationPipeline,
        "translation": TranslationPipeline,
        "question-answering": QuestionAnsweringPipeline,
        "text-classification": ClassificationPipeline,
        "zero-shot-classification": ClassificationPipeline,
    }
    return classes[task](llm, **kwargs)
