"""The service runner: validation, rendering, structured output, long inputs.

Logic runs on a word-level fake kernel; the `model` tests run the real SmolLM2 with a
512-token context so that a long text really goes through map-reduce.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace

import jsonschema
import pytest

from llmasos.config import Settings
from llmasos.errors import ContextLengthExceededError, InvalidRequestError
from llmasos.kernel.client import InProcessEngineClient
from llmasos.models.store import ModelStore
from llmasos.services.interface import ServiceDefinition
from llmasos.services.registry import ServiceRegistry, builtin_definitions
from llmasos.services.runner import ServiceRunner, runner_for
from llmasos.services.strategies import central_sentences, split_sentences
from tests.services.fake_engine import WordEngine

LONG_TEXT = " ".join(
    f"In year {1800 + i} the city of Paris built bridge number {i} across the Seine river."
    for i in range(60)
)


def run_fake(engine: WordEngine, service: str, data: Mapping[str, object], **kwargs: object):  # type: ignore[no-untyped-def]
    runner = ServiceRunner(engine, ServiceRegistry(builtin_definitions()))
    return asyncio.run(runner.call(service, data, **kwargs))  # type: ignore[arg-type]


def test_bad_input_names_the_field() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        run_fake(WordEngine(), "classify", {"text": "hi"})
    assert caught.value.param == "labels" and "labels" in caught.value.message
    with pytest.raises(InvalidRequestError) as caught:
        run_fake(WordEngine(), "classify", {"text": "hi", "labels": ["a", 3]})
    assert caught.value.param == "labels.1"
    with pytest.raises(InvalidRequestError) as caught:
        run_fake(WordEngine(), "summarize", {"text": "hi", "colour": "red"})
    assert caught.value.param == "colour"


def test_template_defaults_and_per_call_parameters() -> None:
    engine = WordEngine()
    result = run_fake(
        engine, "summarize", {"text": "one two"}, parameters={"max_tokens": 7}, method="generate"
    )
    request = engine.requests[0]
    assert request.sampling.max_tokens == 7 and "max_tokens" in request.explicit
    assert request.sampling.temperature == 0.2  # the service's default
    assert "at most 3 sentences" in str(request.messages[-1]["content"])  # type: ignore[index]
    assert result.usage.calls == 1 and result.usage.chunks == 1
    with pytest.raises(InvalidRequestError, match="unknown parameter 'colour'"):
        run_fake(engine, "summarize", {"text": "x"}, parameters={"colour": 1})


def test_output_schema_is_rendered_from_the_input_and_parsed() -> None:
    engine = WordEngine(context=400, json_reply='{"name": "Ann"}')
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    result = run_fake(engine, "extract", {"text": "Ann is here", "schema": schema})
    assert result.output == {"name": "Ann"}
    structured = engine.requests[0].sampling.structured
    assert structured is not None and structured.schema == schema


def test_classify_scores_every_label_and_calibrates() -> None:
    engine = WordEngine()
    labels = ["spam", "ham", "eggs"]
    result = run_fake(engine, "classify", {"text": "this is ham, surely", "labels": labels})
    probabilities = result.details["probabilities"]
    assert result.output == "ham" and list(probabilities) == labels
    assert abs(sum(probabilities.values()) - 1) < 1e-3
    assert probabilities["ham"] > probabilities["spam"] == probabilities["eggs"]
    # one scoring of the text, one of the content-free text (then cached)
    assert result.usage.calls == 2 and "N/A" in str(engine.requests[1].messages[-1]["content"])  # type: ignore[index]
    runner = ServiceRunner(engine, ServiceRegistry(builtin_definitions()))
    again = asyncio.run(runner.call("classify", {"text": "spam!", "labels": labels}))
    assert again.output == "spam" and again.usage.calls == 2  # a new runner: a new cache


def test_answer_quotes_the_matching_sentence_and_never_returns_an_ungrounded_reply() -> None:
    engine = WordEngine(context=2000, reply_words=3)  # replies "a few words."
    data = {"question": "Is Paris old?", "context": "Rome is big. Paris is old. Oslo is cold."}
    result = run_fake(engine, "answer", data)
    assert result.details == {"quote": "Paris is old.", "grounded": False}
    assert result.output == "Paris is old."  # the reply is not in the context: the quote
    prompt = str(engine.requests[0].messages[-1]["content"])  # type: ignore[index]
    assert prompt.startswith("Paris is old.") and "Rome" not in prompt
    plain = run_fake(WordEngine(context=2000, reply_words=1), "answer", {"question": "Where?"})
    assert plain.output == "Where?" and plain.details is None  # no context: free text


def test_output_field_returns_one_field_and_the_rest_as_details() -> None:
    definition = ServiceDefinition.from_dict(
        {
            "name": "pick",
            "description": "Pick.",
            "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
            "prompt": "{{ text }}",
            "output_schema": {
                "type": "object",
                "properties": {"why": {"type": "string"}, "label": {"type": "string"}},
            },
            "output_field": "label",
        }
    )
    engine = WordEngine(json_reply='{"why": "it says so", "label": "a"}')
    result = asyncio.run(
        ServiceRunner(engine, ServiceRegistry([definition])).call("pick", {"text": "x"})
    )
    assert result.output == "a" and result.details == {"why": "it says so"}


def test_summary_keeps_at_most_the_requested_sentences() -> None:
    engine = WordEngine(context=2000, reply_words=8)
    text = "A b. C d. E f. G h."
    result = run_fake(engine, "summarize", {"text": text, "max_sentences": 2}, method="generate")
    assert result.output == "A b. C d."  # the fake echoed all four sentences


def test_translation_runs_sentence_by_sentence_and_keeps_paragraphs() -> None:
    engine = WordEngine(context=2000, reply_words=2)
    text = "One red apple. Two green pears!\n\nThree blue plums?"
    result = run_fake(engine, "translate", {"text": text, "target_language": "French"})
    assert result.output == "red apple. green pears!\n\nblue plums?"
    assert result.usage.chunks == 3 and result.usage.calls == 3


def test_services_use_the_largest_resident_model() -> None:
    class TwoModels(WordEngine):
        def resident_models(self):  # type: ignore[no-untyped-def]
            small = super().resident_models()[0]
            return [small, replace(small, name="big:latest", size_bytes=10)]

    engine = TwoModels(context=2000)
    run_fake(engine, "summarize", {"text": "x"}, method="generate")
    assert engine.requests[0].model == "big:latest"
    run_fake(engine, "summarize", {"text": "x"}, model="fake", method="generate")
    assert engine.requests[-1].model == "fake"


def test_map_reduce_splits_then_reduces() -> None:
    engine = WordEngine(context=400, reply_words=5)
    result = run_fake(
        engine, "summarize", {"text": LONG_TEXT}, parameters={"max_tokens": 50}, method="generate"
    )
    assert result.usage.chunks > 1
    assert result.usage.calls >= result.usage.chunks + 1
    for request in engine.requests[1:]:  # the first call failed admission
        chunk = str(request.messages[-1]["content"])  # type: ignore[index]
        assert len(chunk.split()) + 8 + 50 <= 400


def test_chunked_translation_keeps_every_chunk() -> None:
    engine = WordEngine(context=300, reply_words=2)
    data = {"text": LONG_TEXT.replace(".", ";"), "target_language": "French"}  # one sentence
    result = run_fake(engine, "translate", data, parameters={"max_tokens": 100})
    assert result.usage.chunks > 1
    assert len(result.output.split("\n\n")) == result.usage.chunks


def test_other_services_refuse_long_inputs() -> None:
    with pytest.raises(ContextLengthExceededError) as caught:
        run_fake(WordEngine(context=100), "rewrite", {"text": LONG_TEXT})
    assert caught.value.param == "text" and "does not split" in caught.value.message


@pytest.fixture(scope="module")
def real_runner(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path_factory.mktemp("svc-home"), threads=2, context_length=512)
    store = ModelStore.open(settings)
    loop = asyncio.new_event_loop()
    engine = loop.run_until_complete(_engine(settings, store))
    yield loop, runner_for(engine, settings.home, store, settings.default_model)
    loop.run_until_complete(engine.close())
    loop.close()


async def _engine(settings: Settings, store: ModelStore) -> InProcessEngineClient:
    return InProcessEngineClient(settings, store)


@pytest.mark.model
def test_classify_returns_one_of_the_labels(real_runner) -> None:  # type: ignore[no-untyped-def]
    loop, runner = real_runner
    labels = ["sports", "cooking", "politics"]
    data = {"text": "Whisk the eggs and bake the cake for 20 minutes.", "labels": labels}
    result = loop.run_until_complete(runner.call("classify", data))
    assert result.output in labels
    probabilities = result.details["probabilities"]
    assert list(probabilities) == labels and abs(sum(probabilities.values()) - 1) < 1e-3
    assert all(0 <= p <= 1 for p in probabilities.values())
    assert probabilities[result.output] == max(probabilities.values())


@pytest.mark.model
def test_extract_validates_against_the_schema(real_runner) -> None:  # type: ignore[no-untyped-def]
    loop, runner = real_runner
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    data = {"text": "Maria is 41 years old and lives in Rome.", "schema": schema}
    result = loop.run_until_complete(runner.call("extract", data))
    jsonschema.validate(result.output, schema)


@pytest.mark.model
def test_long_summary_goes_through_map_reduce(real_runner) -> None:  # type: ignore[no-untyped-def]
    loop, runner = real_runner
    result = loop.run_until_complete(
        runner.call(
            "summarize", {"text": LONG_TEXT}, parameters={"max_tokens": 32}, method="generate"
        )
    )
    assert result.usage.chunks > 1 and result.usage.calls > result.usage.chunks
    assert isinstance(result.output, str) and result.output.strip()


def test_examples_are_rendered_as_earlier_turns() -> None:
    definition = ServiceDefinition.from_dict(
        {
            "name": "upper",
            "description": "Upper.",
            "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
            "prompt": "Upper: {{ text }}",
            "examples": [{"input": {"text": "ab"}, "output": "AB"}],
        }
    )
    engine = WordEngine()
    asyncio.run(ServiceRunner(engine, ServiceRegistry([definition])).call("upper", {"text": "x"}))
    assert [(m["role"], m["content"]) for m in engine.requests[0].messages or []] == [
        ("user", "Upper: ab"),
        ("assistant", "AB"),
        ("user", "Upper: x"),
    ]


@pytest.mark.model
def test_extractive_summary_keeps_the_central_sentences(real_runner) -> None:  # type: ignore[no-untyped-def]
    loop, runner = real_runner
    text = (
        "The town library reopened on Monday after a two-year renovation. "
        "My cousin once owned a red bicycle with a bent wheel. "
        "The renovated library has a larger children's section and a new reading room. "
        "Library staff say visits doubled in the first week after the reopening. "
        "Bananas are a good source of potassium."
    )
    sentences = split_sentences(text)
    result = loop.run_until_complete(
        runner.call("summarize", {"text": text, "max_sentences": 2}, method="extractive")
    )
    kept = split_sentences(result.output)
    assert len(kept) == 2 and all(s in sentences for s in kept)
    assert kept == sorted(kept, key=sentences.index)  # the text's order
    assert not {sentences[1], sentences[4]} & set(kept)  # the off-topic ones are left out
    assert result.model.startswith("all-minilm") and result.usage.completion_tokens == 0


def test_a_recorded_evaluation_picks_the_method_for_its_model() -> None:
    measured: dict[str, object] = {}
    runner = ServiceRunner(
        WordEngine(context=2000),
        ServiceRegistry(builtin_definitions()),
        canonical_model=lambda name: "fake:latest" if name in (None, "fake") else str(name),
        measured=lambda service: measured.get(service),  # type: ignore[arg-type,return-value]
    )
    summarize = runner.registry.get("summarize")
    assert summarize.methods == ("extractive", "generate")
    assert runner.method_for(summarize, None) == "extractive"  # nothing measured: the first
    measured["summarize"] = {
        "model": "fake",
        "methods": {"extractive": 30.0, "generate": 35.5},
    }
    assert runner.method_for(summarize, None) == "generate"
    assert runner.method_for(summarize, "other:7b") == "extractive"  # measured on another model
    result = asyncio.run(runner.call("summarize", {"text": "One. Two. Three. Four."}))
    assert result.model == "fake:latest"  # generated, as measured best
    with pytest.raises(InvalidRequestError) as caught:
        asyncio.run(runner.call("summarize", {"text": "x"}, method="abstractive"))
    assert caught.value.param == "method" and "extractive, generate" in caught.value.message


def test_central_sentences_rank_by_cosine_and_keep_order() -> None:
    whole = [1.0, 1.0]
    vectors = [[0.0, 1.0], [1.0, 1.0], [-1.0, 0.0], [1.0, 0.9]]
    assert central_sentences(whole, vectors, 2) == [1, 3]
    assert central_sentences(whole, vectors, 10) == [0, 1, 2, 3]
