"""`llmasos bench serve`: metric arithmetic, workload determinism, SSE parsing, end to end."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmasos.bench.campaign import CampaignPlan
from llmasos.bench.metrics import (
    SLO,
    Distribution,
    RequestResult,
    percentile,
    summarize,
    throughput_timeline,
)
from llmasos.bench.serve import (
    STRUCTURED,
    LoadConfig,
    Target,
    arrival_delays,
    request_body,
    stream_chat,
)
from llmasos.bench.workloads import WORDS, BenchRequest, build_workload, chat_workload
from llmasos.errors import InvalidRequestError
from llmasos.net import free_port

# -- metrics -------------------------------------------------------------------------------


def test_percentile_interpolates_linearly() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 99) == pytest.approx(3.97)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def _result(start: float, chunks: list[float], tokens: int, end: float) -> RequestResult:
    return RequestResult(
        ok=True,
        start=start,
        end=end,
        chunk_times=chunks,
        output_tokens=tokens,
        prompt_tokens=10,
        tokens_from_usage=True,
    )


def test_ttft_tpot_itl_of_one_request() -> None:
    result = _result(1.0, [1.5, 1.6, 1.8, 2.1], tokens=4, end=2.1)
    assert result.ttft == pytest.approx(0.5)
    assert result.latency == pytest.approx(1.1)
    assert result.tpot == pytest.approx((1.1 - 0.5) / 3)
    assert result.itls == pytest.approx([0.1, 0.2, 0.3])
    one_token = _result(0.0, [0.2], tokens=1, end=0.2)
    assert one_token.tpot is None
    assert one_token.itls == []


def test_summary_throughput_latencies_and_goodput() -> None:
    fast = _result(0.0, [0.1, 0.2, 0.3], tokens=3, end=0.3)  # ttft 100 ms, tpot 100 ms
    slow = _result(0.0, [1.0, 1.5, 2.0], tokens=3, end=2.0)  # ttft 1000 ms, tpot 500 ms
    failed = RequestResult(ok=False, start=0.0, end=0.5, status=503, error="http 503: full")
    summary = summarize("x", [fast, slow, failed], duration_s=2.0, slo=SLO(ttft_ms=500))
    assert (summary.completed, summary.failed) == (2, 1)
    assert summary.errors == {"http 503": 1}
    assert summary.request_throughput == pytest.approx(1.0)
    assert summary.output_throughput == pytest.approx(3.0)
    assert summary.total_throughput == pytest.approx((6 + 20) / 2.0)
    assert summary.ttft.mean == pytest.approx(550.0)
    assert summary.ttft.p50 == pytest.approx(550.0)
    assert summary.tpot.mean == pytest.approx(300.0)
    assert summary.itl.count == 4
    assert summary.itl.p50 == pytest.approx(300.0)
    assert summary.e2e.max == pytest.approx(2000.0)
    assert summary.goodput == pytest.approx(0.5)  # only `fast` meets TTFT <= 500 ms
    both = summarize("x", [fast, slow], 2.0, SLO(ttft_ms=2000, tpot_ms=200))
    assert both.goodput == pytest.approx(0.5)  # `slow` misses the TPOT objective
    assert summarize("x", [fast], 1.0).goodput is None
    data = summary.to_dict()
    assert data["ttft_ms"]["p99"] == pytest.approx(percentile([100.0, 1000.0], 99))
    json.dumps(data)


def test_empty_distribution_serializes_as_nulls() -> None:
    empty = Distribution.of_seconds([])
    assert empty.count == 0
    assert empty.to_dict()["p50"] is None


def test_throughput_timeline_spreads_tokens_over_chunks() -> None:
    # 4 tokens in 2 chunks (usage says 4): 2 tokens per chunk.
    result = _result(0.0, [0.5, 2.5], tokens=4, end=2.5)
    assert throughput_timeline([result]) == [2.0, 0.0, 2.0]


# -- workloads -----------------------------------------------------------------------------


def test_workloads_are_deterministic_by_seed() -> None:
    a = build_workload("random", 5, input_len=50, output_len=16, seed=3)
    b = build_workload("random", 5, input_len=50, output_len=16, seed=3)
    c = build_workload("random", 5, input_len=50, output_len=16, seed=4)
    assert [r.messages for r in a] == [r.messages for r in b]
    assert [r.messages for r in a] != [r.messages for r in c]
    assert all(r.max_tokens == 16 and r.prompt_words == 50 for r in a)
    words = a[0].messages[0]["content"].split()
    assert set(words[-40:]) <= set(WORDS)
    chat = chat_workload(40, output_len=100, seed=1)
    assert [r.messages for r in chat] == [r.messages for r in chat_workload(40, 100, seed=1)]
    assert len({r.kind for r in chat}) >= 4  # short, medium, long, multi-turn mixes
    assert any(len(r.messages) >= 3 for r in chat)
    assert all(1 <= r.max_tokens <= 100 for r in chat)
    assert all(r.messages[-1]["role"] == "user" for r in chat)


def test_bad_workload_input_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequestError, match="unknown workload"):
        build_workload("sharegpt", 1, input_len=1, output_len=1)
    with pytest.raises(InvalidRequestError, match="--num-prompts"):
        build_workload("random", 0, input_len=1, output_len=1)
    with pytest.raises(InvalidRequestError, match="--request-rate"):
        LoadConfig(request_rate=0).check()


def test_poisson_arrivals() -> None:
    assert arrival_delays(3, math.inf, 0) == [0.0, 0.0, 0.0]
    gaps = arrival_delays(2000, 4.0, 0)
    assert gaps == arrival_delays(2000, 4.0, 0)
    assert sum(gaps) / len(gaps) == pytest.approx(0.25, rel=0.1)


# -- the streaming client, against httpx's mock transport ------------------------------------


def _sse(*events: object) -> bytes:
    return b"".join(
        f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events
    )


def _chunk(content: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}


def _run(handler: httpx.MockTransport, request: BenchRequest) -> RequestResult:
    async def go() -> RequestResult:
        async with httpx.AsyncClient(transport=handler) as client:
            target = Target("t", "http://127.0.0.1:1", "m")
            return await stream_chat(client, target, request, LoadConfig(), time.perf_counter())

    return asyncio.run(go())


REQUEST = BenchRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=8, user="u1")


def test_stream_counts_usage_tokens_and_skips_empty_chunks() -> None:
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        body = _sse(
            _chunk(""),
            _chunk("Hel"),
            _chunk("lo"),
            {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}},
            "[DONE]",
        )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    result = _run(httpx.MockTransport(handler), REQUEST)
    assert result.ok and result.tokens_from_usage
    assert (result.output_tokens, result.prompt_tokens, len(result.chunk_times)) == (3, 5, 2)
    sent = seen[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert (sent["model"], sent["max_tokens"], sent["user"]) == ("m", 8, "u1")


def test_stream_without_usage_counts_chunks() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_sse(_chunk("a"), _chunk("b"), "[DONE]"))

    result = _run(httpx.MockTransport(handler), REQUEST)
    assert result.ok and not result.tokens_from_usage and result.output_tokens == 2


def test_http_and_stream_errors_are_failed_results() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"message": "queue is full"}})

    result = _run(httpx.MockTransport(busy), REQUEST)
    assert not result.ok and result.status == 503 and "queue is full" in (result.error or "")

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_sse(_chunk("a"), {"error": {"message": "boom"}}))

    result = _run(httpx.MockTransport(broken), REQUEST)
    assert not result.ok and result.error == "stream error: boom"


def test_ignore_eos_asks_for_exact_lengths() -> None:
    body = request_body(Target("t", "http://h"), REQUEST, LoadConfig(ignore_eos=True))
    assert body["ignore_eos"] is True and body["min_tokens"] == 8
    assert "model" not in body
    assert Target("t", "http://h:1/v1/").chat_url == "http://h:1/v1/chat/completions"


def test_structured_runs_ask_for_the_schema_and_end_where_it_ends() -> None:
    body = request_body(Target("t", "http://h"), REQUEST, LoadConfig(response_format=STRUCTURED))
    assert body["response_format"]["type"] == "json_schema" and "ignore_eos" not in body
    with pytest.raises(InvalidRequestError, match="drop --ignore-eos"):
        LoadConfig(response_format=STRUCTURED, ignore_eos=True).check()
    plan = CampaignPlan(config=LoadConfig(response_format=STRUCTURED), peers=["raw-loop"])
    with pytest.raises(InvalidRequestError, match="without a grammar"):
        plan.check()


# -- end to end ----------------------------------------------------------------------------


@pytest.mark.model
def test_bench_serve_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LLMASOS_HOME": str(tmp_path / "home")}
    server = subprocess.Popen(
        [sys.executable, "-m", "llmasos", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

        def bench(out_json: Path, *options: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run(
                [
                    *(sys.executable, "-m", "llmasos", "bench", "serve", *options),
                    *("--base-url", f"http://127.0.0.1:{port}", "--json", str(out_json)),
                    *("--num-prompts", "4", "--concurrency", "2", "--input-len", "32"),
                    *("--output-len", "8"),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            return done

        out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
        done = bench(out_json, "--plot", str(out_png), "--peer", "raw-loop", "--threads", "1")
        document = json.loads(out_json.read_text())
        run, raw = document["runs"]
        assert (run["completed"], run["failed"]) == (4, 0)
        assert run["output_throughput"] > 0 and run["total_output_tokens"] > 0
        assert run["output_tokens_source"] == "usage"
        assert run["ttft_ms"]["p50"] > 0
        # The raw loop served the same four prompts, tokenized the same way.
        assert (raw["label"], raw["completed"], raw["failed"]) == ("raw-loop", 4, 0)
        assert raw["total_input_tokens"] == run["total_input_tokens"]
        assert raw["raw_loop"]["concurrency"] == 2 and raw["raw_loop"]["threads"] == 1
        assert document["comparison"]["llmasos_percent_of_raw_loop"] > 0
        assert "of raw-loop" in done.stdout
        assert out_png.stat().st_size > 10_000
        # The same requests under a JSON schema: every one completes, counted the same way.
        structured_json = tmp_path / "structured.json"
        bench(structured_json, "--structured")
        (structured,) = json.loads(structured_json.read_text())["runs"]
        assert (structured["completed"], structured["failed"]) == (4, 0)
        assert structured["total_output_tokens"] > 0
        assert json.loads(structured_json.read_text())["config"]["response_format"] == STRUCTURED
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
    assert code == 0
