"""The ``raw-loop`` reference: its bookkeeping on the real model, its report, its errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import pytest
from rich.console import Console

from llmasos.bench.campaign import CampaignPlan, CampaignReport
from llmasos.bench.metrics import RequestResult, summarize
from llmasos.bench.rawloop import RawLoop, RawLoopSummary, check_raw_loop_options, run_raw_loop
from llmasos.bench.serve import LoadConfig
from llmasos.bench.workloads import BenchRequest, build_workload
from llmasos.cli.bench import _serve_table
from llmasos.config import Settings
from llmasos.errors import ContextLengthExceededError, InvalidRequestError
from llmasos.models.manifest import ResolvedModel
from llmasos.models.store import ModelStore


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> ResolvedModel:
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    return ModelStore.open(settings).resolve("smollm2:135m")


@pytest.fixture(scope="module")
def loop(smollm2: ResolvedModel) -> Iterator[RawLoop]:
    with RawLoop(smollm2.path, concurrency=2, threads=1, n_ctx=1024) as raw:
        yield raw


def _prompts(loop: RawLoop, model: ResolvedModel, requests: list[BenchRequest]) -> list[list[int]]:
    return [loop.chat_prompt(model.manifest, r.messages) for r in requests]


# -- the loop on the real model -------------------------------------------------------------


@pytest.mark.model
def test_every_request_gets_its_tokens_and_slots_are_reused(
    smollm2: ResolvedModel, loop: RawLoop
) -> None:
    requests = build_workload("random", 3, input_len=16, output_len=4, seed=0)
    prompts = _prompts(loop, smollm2, requests)
    finished: list[RequestResult] = []
    run = loop.run(prompts, [4, 4, 4], progress=finished.append)

    assert [r.output_tokens for r in run.results] == [4, 4, 4]
    assert [len(o) for o in run.outputs] == [4, 4, 4]
    assert all(len(r.chunk_times) == 4 and r.ok for r in run.results)
    assert len(finished) == 3
    first, second, third = run.results
    # Two slots: the first two start at once, the third when a slot is free again.
    assert first.start == second.start == 0.0
    assert third.start >= min(first.end, second.end) > 0.0
    assert third.chunk_times[0] > third.start and run.duration_s == third.end
    stats = run.stats
    assert stats.prompt_tokens == sum(len(p) for p in prompts)
    assert stats.output_tokens == 12
    # Each first token comes from a prefill; the rest from one-token-per-sequence steps.
    assert stats.decode_tokens == 12 - 3
    assert stats.prefill_calls == 2  # the first two prompts packed into one call
    assert stats.decode_steps == 3 + 3  # the pair together, then the third alone

    # The same prompts one at a time give the same greedy tokens: slots do not leak KV.
    with RawLoop(smollm2.path, concurrency=1, threads=1, n_ctx=1024) as alone:
        assert alone.run(prompts, [4, 4, 4]).outputs == run.outputs


@pytest.mark.model
def test_prompts_are_the_ones_llmasos_builds(smollm2: ResolvedModel, loop: RawLoop) -> None:
    from llmasos.backends.interface import LoadSpec
    from llmasos.backends.llamacpp.backend import LlamaCppBackend

    spec = LoadSpec(
        path=smollm2.path,
        format="gguf",
        context_length=512,
        max_sequences=1,
        threads=1,
        chat_template=smollm2.manifest.chat_template,
    )
    backend = LlamaCppBackend.load(spec)
    try:
        for messages in (
            [{"role": "user", "content": "What is the capital of France?"}],
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Bye"},
            ],
        ):
            expected = backend.tokenize(backend.render_chat(messages), add_special=True)
            assert loop.chat_prompt(smollm2.manifest, messages) == expected
    finally:
        backend.close()


@pytest.mark.model
def test_without_ignore_eos_a_sequence_stops_at_end_of_text(
    smollm2: ResolvedModel, loop: RawLoop
) -> None:
    prompt = loop.chat_prompt(smollm2.manifest, [{"role": "user", "content": "Say only: yes."}])
    run = loop.run([prompt, prompt], [64, 3], ignore_eos=False)
    short_answer, capped = run.results
    assert 0 < short_answer.output_tokens < 64
    vocab = llama_cpp.llama_model_get_vocab(loop._model)
    assert not any(llama_cpp.llama_vocab_is_eog(vocab, t) for t in run.outputs[0])
    # Greedy: the capped copy is the same answer, cut at 3 only where it is longer than 3
    # (how many tokens the answer takes depends on the CPU's kernels).
    assert capped.output_tokens == min(3, short_answer.output_tokens)
    assert run.stats.output_tokens == short_answer.output_tokens + capped.output_tokens


@pytest.mark.model
def test_a_workload_too_big_for_the_cache_is_refused(smollm2: ResolvedModel, loop: RawLoop) -> None:
    with pytest.raises(ContextLengthExceededError, match="kv_cache_tokens"):
        loop.run([[1] * 400, [1] * 400], [200, 200])
    with pytest.raises(InvalidRequestError):
        loop.run([[1]], [0])


@pytest.mark.model
def test_run_raw_loop_summarizes_like_a_server(smollm2: ResolvedModel, tmp_path: Path) -> None:
    requests = build_workload("random", 3, input_len=16, output_len=4, seed=0)
    summary, results = run_raw_loop(
        smollm2, requests, concurrency=2, threads=1, kv_cache_tokens=1024
    )
    assert isinstance(summary, RawLoopSummary) and summary.stats is not None
    assert (summary.label, summary.completed, summary.failed) == ("raw-loop", 3, 0)
    assert summary.total_output_tokens == 12
    assert summary.total_input_tokens == summary.stats.prompt_tokens
    assert summary.output_throughput == pytest.approx(12 / summary.duration_s)
    assert summary.ttft.count == 3 and summary.ttft.p50 > 0
    assert summary.output_tokens_source == "counted"
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["raw_loop"]["concurrency"] == 2 and data["raw_loop"]["decode_tokens"] == 9

    from llmasos.bench.plot import plot_runs

    pytest.importorskip("matplotlib")
    server = summarize("llmasos", [_one_token_result()], 1.0)  # TPOT has no samples: n/a
    png = plot_runs([(server, [_one_token_result()]), (summary, results)], tmp_path / "c.png")
    assert png.stat().st_size > 10_000


# -- report ---------------------------------------------------------------------------------


def _one_token_result() -> RequestResult:
    return RequestResult(
        ok=True, start=0.0, end=0.5, chunk_times=[0.5], output_tokens=1, prompt_tokens=4
    )


def _summary(label: str, tokens: int, duration: float) -> RawLoopSummary:
    result = RequestResult(
        ok=True,
        start=0.0,
        end=duration,
        chunk_times=[duration * (i + 1) / tokens for i in range(tokens)],
        output_tokens=tokens,
        prompt_tokens=10,
    )
    fields = vars(summarize(label, [result], duration))
    return RawLoopSummary(**fields)


def _comparison(results: list[Any], concurrency: int) -> dict[str, Any]:
    plan = CampaignPlan(config=LoadConfig(concurrency=concurrency))
    return CampaignReport(plan, results=results, runs=[], exit_codes={}).comparison()


def test_comparison_line_and_table() -> None:
    ours, raw = _summary("llmasos", 90, 1.0), _summary("raw-loop", 100, 1.0)
    server = summarize("llama-cpp-server", [_one_token_result()], 1.0 / 45)
    found = _comparison([ours, raw, server], concurrency=8)
    assert found["llmasos_percent_of_raw_loop"] == pytest.approx(90.0)
    assert found["llmasos_x_llama_cpp_server"] == pytest.approx(2.0)
    assert "90.0% of raw-loop" in found["line"] and ">= 90%, met" in found["line"]
    assert "2.00x llama-cpp-server" in found["line"]
    below = _comparison([_summary("llmasos", 50, 1.0), raw], concurrency=8)["line"]
    assert "50.0% of raw-loop" in below and "NOT met" in below
    assert "target" not in _comparison([ours, raw], concurrency=2)["line"]
    assert _comparison([raw], concurrency=8) == {}

    console = Console(width=200, record=True)
    console.print(_serve_table([server, raw], "t"))
    text = console.export_text()
    tpot_row = next(line for line in text.splitlines() if line.startswith("│ TPOT"))
    assert "n/a / n/a / n/a" in tpot_row  # one-token answers: no TPOT, shown as n/a, not 0
    assert "prefill / decode (s)" not in text  # only raw-loop runs with stats have the row


def test_raw_loop_refuses_open_loop_and_scenarios() -> None:
    check_raw_loop_options(scenario="load", request_rate=math.inf)
    with pytest.raises(InvalidRequestError, match="--request-rate 2"):
        check_raw_loop_options(scenario="load", request_rate=2.0)
    with pytest.raises(InvalidRequestError, match="--scenario fairness"):
        check_raw_loop_options(scenario="fairness", request_rate=math.inf)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--request-rate", "2"), "cannot follow --request-rate 2"),
        (("--scenario", "soak"), "not --scenario soak"),
        (("--model", "all-minilm"), "needs a GGUF generation model"),
    ],
)
def test_cli_error_is_one_line(tmp_path: Path, flags: tuple[str, ...], expected: str) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "llmasos", "bench", "serve", "--peer", "raw-loop"),
            *("--base-url", "http://127.0.0.1:9", "--num-prompts", "2", *flags),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LLMASOS_HOME": str(tmp_path)},
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
