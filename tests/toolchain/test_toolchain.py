"""The toolchain on the real embedded model: scoring, perplexity, quantizing, and tuning."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmasos.backends.interface import LoadSpec, SequenceWork
from llmasos.backends.llamacpp.backend import LlamaCppBackend
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.gguf_info import read_gguf
from llmasos.models.store import ModelStore
from llmasos.toolchain.imatrix import shipped_calibration_texts
from llmasos.toolchain.perplexity import perplexity, public_domain_text
from llmasos.toolchain.quantize import format_name, quantize_gguf
from llmasos.toolchain.tune import FormatResult, TuneReport, _choose, tune_model
from llmasos.types import SamplingParams

SMOLLM2 = package_path(BUILTINS[0])
pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(SMOLLM2 is None, reason="the embedded model package is missing"),
]


@pytest.fixture(scope="module")
def backend() -> Iterator[LlamaCppBackend]:
    assert SMOLLM2 is not None
    spec = LoadSpec(path=SMOLLM2, format="gguf", context_length=1024, max_sequences=2, threads=2)
    loaded = LlamaCppBackend.load(spec)
    yield loaded
    loaded.close()


def test_a_score_is_the_log_probability_the_sampler_sees(backend: LlamaCppBackend) -> None:
    prompt = backend.tokenize("The capital of France is")
    backend.add_sequence(1, SamplingParams(temperature=0, logprobs=0), prompt)
    try:
        (sampled,) = backend.execute([SequenceWork(1, prompt, True)])
    finally:
        backend.remove_sequence(1)
    assert sampled.logprob is not None
    scores = backend.score([*prompt, sampled.token])
    assert len(scores) == len(prompt)
    assert scores[-1] == pytest.approx(sampled.logprob, abs=1e-3)
    assert all(s <= 0 for s in scores)


def test_continuations_scored_after_one_prefix_match_whole_sequences(
    backend: LlamaCppBackend,
) -> None:
    prefix = backend.tokenize("The capital of France is")
    options = [backend.tokenize(t, add_special=False) for t in (" Paris", " the city of Lyon")]
    shared = backend.score_continuations(prefix, options)
    for option, values in zip(options, shared, strict=True):
        whole = backend.score([*prefix, *option])[len(prefix) - 1 :]
        assert values == pytest.approx(whole, abs=1e-3)
    assert sum(shared[0]) > sum(shared[1])  # Paris is the likelier reply
    with pytest.raises(InvalidRequestError):
        backend.score_continuations(prefix, [[]])


def test_perplexity_counts_every_token_once_whatever_the_window(
    backend: LlamaCppBackend,
) -> None:
    text = public_domain_text()
    tokens = backend.tokenize(text)
    whole = perplexity(backend, text)
    assert whole.tokens == len(tokens) - 1
    by_hand = -sum(backend.score(tokens)) / (len(tokens) - 1)
    assert whole.value == pytest.approx(math.exp(by_hand), rel=1e-6)
    windowed = perplexity(backend, text, window=128)
    assert windowed.tokens == len(tokens) - 1
    # less context per token can only be told apart by its value, which stays a perplexity
    assert windowed.value > 1.0 and math.isfinite(windowed.value)
    with pytest.raises(InvalidRequestError):
        perplexity(backend, "a", window=64)


def test_quantize_writes_the_format_asked_for(tmp_path: Path) -> None:
    assert SMOLLM2 is not None
    target = tmp_path / "q8.gguf"
    quantize_gguf(SMOLLM2, target, format_name("q8_0"), threads=2)
    facts = read_gguf(target)
    assert facts.quantization == "Q8_0"
    # imported, the copy keeps LLMasOS's settings for SmolLM2, not the GGUF's own template
    assert facts.chat_template and "named SmolLM" in facts.chat_template
    imported = ModelStore.open(Settings(home=tmp_path / "home")).import_path(target, "mine")
    builtin = ModelStore.open(Settings(home=tmp_path / "home")).manifest("smollm2")
    assert imported.chat_template == builtin.chat_template != facts.chat_template
    assert imported.system is None and imported.parameters == builtin.parameters
    with pytest.raises(InvalidRequestError, match="known: F16"):
        format_name("Q3_X")


def test_tune_serves_the_chosen_version_and_keeps_the_reference(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    store = ModelStore.open(settings)
    reference = store.manifest("smollm2")
    work = tmp_path / "work"
    work.mkdir()
    text = public_domain_text().split("\n\n")[0]  # one paragraph keeps the test short
    tune = functools.partial(
        tune_model, store, "smollm2", formats=["Q8_0"], batch=2, rounds=1, threads=2, text=text,
        settings=settings, served_prompt=24, served_output=6,
        services=["classify", "extract"], service_items=4,
    )  # fmt: skip
    report = tune(tokens=4, work_dir=work)
    formats = [r.format for r in report.results]
    assert formats == [reference.quantization, "Q8_0"] and report.chosen in formats
    assert all(r.perplexity > 1 and r.decode_tokens_per_second > 0 for r in report.results)
    # served by the kernel, alone and two at once
    assert all(0 < r.seconds_alone < r.seconds_in_batch < 60 for r in report.results)
    # the service gate: both versions scored on 4 items of each set, the candidate compared
    assert all(len(r.service_items["classify"]) == 4 for r in report.results)
    assert set(report.results[1].services_lower_p) == {"classify", "extract"}
    assert set(report.results[0].services) == {"classify", "extract"}
    derived = store.manifest(f"smollm2@{report.results[1].digest.removeprefix('sha256:')}")
    assert derived.quantization == "Q8_0"
    assert derived.source is not None and derived.source.startswith(f"derived:{reference.digest}")
    # the same name, template and defaults; other weights
    assert (derived.name, derived.chat_template, derived.system, derived.parameters) == (
        reference.name,
        reference.chat_template,
        reference.system,
        reference.parameters,
    )
    assert store.manifest("smollm2").digest == reference.digest  # still the current version
    chosen = next(r for r in report.results if r.format == report.chosen)
    assert store.resolve("smollm2").manifest.digest == chosen.digest
    assert store.resolve(f"smollm2@{reference.short_id}").manifest.digest == reference.digest
    # a second run reuses the derived version
    again = tune(tokens=2, work_dir=work, record=False)
    assert again.results[1].digest == derived.digest
    assert len(store.versions("smollm2")) == 2
    assert store.forget_tuning("smollm2")
    assert store.resolve("smollm2").manifest.digest == reference.digest


def test_tune_makes_low_bit_candidates_with_an_importance_matrix(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    store = ModelStore.open(settings)
    work = tmp_path / "work"
    work.mkdir()
    text = public_domain_text().split("\n\n")[0]
    tune = functools.partial(
        tune_model, store, "smollm2", formats=["Q4_0"], batch=1, rounds=1, tokens=2,
        threads=2, text=text, work_dir=work, record=False, settings=settings,
        served_prompt=16, served_output=2, services=(),
        calibration=[shipped_calibration_texts()[0][:900]], calibration_name="short",
        calibration_chunk=128,
    )  # fmt: skip
    with_matrix = tune()
    assert with_matrix.imatrix["calibration"] == "short" and with_matrix.imatrix["chunks"] == 1
    assert with_matrix.imatrix["tensors"] == 210  # 7 matrices x 30 blocks
    q4 = with_matrix.results[1]
    assert q4.format == "Q4_0" and q4.imatrix and not with_matrix.results[0].imatrix
    source = store.manifest(f"smollm2@{q4.digest.removeprefix('sha256:')}").source or ""
    assert ":Q4_0:imatrix=short:" in source
    plain = tune(imatrix=False)  # the plain Q4_0 is another version, not the one above
    assert not plain.results[1].imatrix and plain.results[1].digest != q4.digest
    assert plain.imatrix == {} and len(store.versions("smollm2")) == 3
    assert q4.perplexity > 1 and plain.results[1].perplexity > 1  # compared in benchmarks.md
    assert tune().results[1].digest == q4.digest and not work.joinpath("F16.gguf").exists()


def _result(
    fmt: str, alone: float, in_batch: float, ppl: float, paris: bool = True, ref: bool = False
) -> FormatResult:
    result = FormatResult(fmt, f"sha256:{fmt}", 1, ref, perplexity=ppl, says_paris=paris)
    result.answer = "Paris" if paris else "Lyon"
    result.seconds_alone, result.seconds_in_batch = alone, in_batch
    return result


def test_the_choice_is_the_fastest_within_the_quality_limit() -> None:
    report = TuneReport("m", "x86_64:avx2", 8, 32, 2)
    report.results = [
        _result("Q4_1", 2.0, 10.0, 10.0, ref=True),
        _result("Q4_0", 1.0, 5.0, 19.0),  # fastest, but perplexity +90 %
        _result("Q8_0", 2.1, 8.0, 10.2),
        _result("F16", 1.5, 7.0, 9.9, paris=False),  # misses Paris where the reference does not
    ]
    _choose(report)
    assert report.chosen == "Q8_0"
    assert "perplexity" in report.results[1].why_not and not report.results[3].eligible
    assert not report.machine_was_busy  # no load recorded
    report.load = {"before": 0.3, "after": 1.7, "cpus": 2.0}
    assert report.machine_was_busy and report.to_dict()["machine_was_busy"]
    assert report.to_dict()["results"][2]["seconds_per_request"] == pytest.approx(10.1)


def test_a_format_that_slows_one_user_down_is_not_chosen_for_the_batch_alone() -> None:
    # this AVX2 machine's server: F16 gives a batch of 8 the most tokens per second, and one
    # user the fewest (a lone sequence reads every weight per token: twice Q8_0's bytes)
    report = TuneReport("m", "x86_64:avx2", 8, 64, 2)
    report.results = [
        _result("Q4_1", 1.9, 9.8, 9.82, ref=True),
        _result("Q8_0", 2.0, 8.9, 9.68),
        _result("F16", 3.2, 8.6, 9.58),
    ]
    _choose(report)
    assert report.chosen == "Q8_0"
    f16 = report.results[2]
    assert f16.seconds_in_batch < report.results[1].seconds_in_batch  # F16 wins the batch only


def _scored(result: FormatResult, service: str, items: list[float]) -> FormatResult:
    result.service_items[service] = items
    result.services[service] = sum(items) / len(items)
    return result


def test_a_candidate_that_loses_a_service_score_beyond_chance_is_not_chosen() -> None:
    right, wrong = [100.0], [0.0]
    report = TuneReport("m", "x86_64:avx2", 8, 32, 2)
    reference = _result("Q4_1", 2.0, 10.0, 10.0, ref=True)
    # the reference labels 30 items of 40 right; Q8_0 loses 3 of them and wins 2 others
    # (noise: p = 0.5), F16 loses 9 and wins none (p = 0.002)
    _scored(reference, "classify", right * 30 + wrong * 10)
    q8 = _scored(
        _result("Q8_0", 1.5, 8.0, 10.1), "classify", wrong * 3 + right * 27 + right * 2 + wrong * 8
    )
    f16 = _scored(_result("F16", 1.0, 7.0, 10.0), "classify", wrong * 9 + right * 21 + wrong * 10)
    report.results = [reference, q8, f16]
    _choose(report)
    assert report.chosen == "Q8_0"
    assert q8.eligible and q8.services_lower_p["classify"] == pytest.approx(0.5)
    assert not f16.eligible and f16.services_lower_p["classify"] < 0.01
    assert f16.why_not.startswith("classify 52.5 against 75.0 (lower, p = 0.00")
    # a candidate that scores higher is never turned down, however sure the test
    better = _scored(_result("F16", 1.0, 7.0, 10.0), "classify", right * 40)
    report.results = [reference, better]
    _choose(report)
    assert report.chosen == "F16" and better.services_lower_p["classify"] == 1.0
