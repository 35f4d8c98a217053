"""``llmasos bench …``: performance measurements. ``bench backend`` times one backend's steps.

``llmasos bench backend MODEL_OR_PATH`` decodes through `BackendInterface` (one stream, and
with ``--batch B`` B streams together) next to raw llama-cpp-python on the same GGUF, prints a
table and optionally writes JSON. MODEL_OR_PATH is a file or directory, else a model name in
the store. ``llmasos bench serve`` measures LLMasOS over HTTP, then each ``--peer`` in turn
(a server, or the in-process ``raw-loop`` reference), in one table, JSON document and chart.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmasos.cli.root import app, console, state
from llmasos.errors import InvalidRequestError, ModelNotFoundError

if TYPE_CHECKING:
    from llmasos.bench.campaign import CampaignReport

bench_app = typer.Typer(help="Measure performance (backends, serving).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def progress_bar() -> Progress:
    """The bar every benchmark shows while it runs (gone once it is done)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _locate(model: str) -> tuple[Path, str]:
    """The path and format of a model given as a path or a store name."""
    path = Path(model).expanduser()
    if path.is_file():
        return path, "gguf" if path.suffix.lower() == ".gguf" else "safetensors"
    if path.is_dir():
        kind = "sentence-transformers" if (path / "modules.json").exists() else "safetensors"
        return path, kind
    try:
        resolved = state.store.resolve(model)
    except ImportError:
        raise ModelNotFoundError(
            f"{model} is not a file, and the model store is not available"
        ) from None
    return resolved.path, resolved.manifest.format


@bench_app.command("backend")
def backend(
    model: Annotated[str, typer.Argument(help="A .gguf file, a model directory or a model name.")],
    backend_name: Annotated[
        str, typer.Option("--backend", help="Backend to measure: llama.cpp or transformers.")
    ] = "llama.cpp",
    tokens: Annotated[int, typer.Option(help="Tokens to decode per sequence.")] = 128,
    batch: Annotated[int, typer.Option(help="Also decode this many sequences together.")] = 1,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads (default: the threads setting).")
    ] = None,
    structured: Annotated[
        str, typer.Option(help="Constrain output: none, or json (a JSON-object grammar).")
    ] = "none",
    raw: Annotated[
        bool, typer.Option(help="Also measure raw llama-cpp-python (GGUF only).")
    ] = True,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON to this file.")
    ] = None,
) -> None:
    """Decode speed of a backend through the kernel's interface, next to raw llama.cpp."""
    from llmasos.bench.backend import benchmark_backend
    from llmasos.plugins import get_registry

    path, model_format = _locate(model)
    registry = get_registry()
    if backend_name in registry.backend_names() and backend_name not in (
        registry.backends_for_format(model_format)
    ):
        raise InvalidRequestError(f"the {backend_name} backend cannot load {model_format} models")
    backend_class = registry.backend(backend_name)
    n_threads = threads if threads is not None else state.settings.effective_threads

    with progress_bar() as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = int(bar.add_task(phase, total=total))
            bar.update(tasks[phase], completed=done)  # type: ignore[arg-type]

        report = benchmark_backend(
            backend_class,
            path,
            model_format,
            tokens=tokens,
            batch=batch,
            threads=n_threads,
            structured=structured,
            compare_raw=raw,
            progress=progress,
        )

    table = Table(
        "engine",
        "batch",
        "prompt tok",
        "prefill tok/s",
        "decode tok/s",
        title=f"{path.name}: {tokens} tokens/sequence, {n_threads} threads, "
        f"structured={structured}",
    )
    for row in report.rows:
        table.add_row(
            row.engine,
            str(row.batch),
            str(row.prompt_tokens),
            f"{row.prefill_tokens_per_second:.1f}",
            f"{row.decode_tokens_per_second:.1f}",
        )
    console.print(table)
    overhead = report.overhead_percent()
    if overhead is not None:
        console.print(f"single-stream overhead vs raw llama-cpp-python: {overhead:+.1f}%")
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {json_path}")


# -- bench serve ---------------------------------------------------------------------------
# The campaign (servers, peers, scenarios) runs in llmasos.bench.campaign; this parses the
# options and prints what it measured.


def _serve_table(summaries: list[Any], title: str) -> Table:
    """One column per server, one row per metric."""
    table = Table("metric", *(s.label for s in summaries), title=title)

    def row(name: str, values: list[str]) -> None:
        table.add_row(name, *values)

    def number(value: float | None, digits: int = 2) -> str:
        return "n/a" if value is None or value != value else f"{value:.{digits}f}"

    row("completed / failed", [f"{s.completed} / {s.failed}" for s in summaries])
    row("duration (s)", [number(s.duration_s) for s in summaries])
    row("requests/s", [number(s.request_throughput, 3) for s in summaries])
    row("output tok/s", [number(s.output_throughput, 1) for s in summaries])
    row("total tok/s", [number(s.total_throughput, 1) for s in summaries])
    row(
        "input / output tokens",
        [
            f"{'?' if s.total_input_tokens is None else s.total_input_tokens} / "
            f"{s.total_output_tokens}"
            for s in summaries
        ],
    )
    for name, attr in (("TTFT", "ttft"), ("TPOT", "tpot"), ("ITL", "itl"), ("E2E", "e2e")):
        dists = [getattr(s, attr) for s in summaries]
        row(
            f"{name} mean/p50/p99 (ms)",
            [f"{number(d.mean, 1)} / {number(d.p50, 1)} / {number(d.p99, 1)}" for d in dists],
        )
    if any(s.goodput is not None for s in summaries):
        row("goodput (req/s in SLO)", [number(s.goodput, 3) for s in summaries])
    row("output tokens from", [s.output_tokens_source for s in summaries])
    loops = [getattr(s, "stats", None) for s in summaries]
    if any(loops):
        row(
            "prefill / decode (s)",
            [
                f"{number(x.prefill_seconds)} / {number(x.decode_seconds)}" if x else "n/a"
                for x in loops
            ],
        )
        row(
            "decode-step tok/s",
            [number(x.decode_tokens_per_second, 1) if x else "n/a" for x in loops],
        )
    if any(s.errors for s in summaries):
        row(
            "errors",
            [", ".join(f"{k}: {v}" for k, v in s.errors.items()) or "-" for s in summaries],
        )
    return table


@bench_app.command("serve")
def serve_bench(
    base_url: Annotated[
        str, typer.Option(help="The LLMasOS (or any OpenAI-compatible) server.")
    ] = "http://127.0.0.1:8000",
    model: Annotated[
        str | None, typer.Option(help="Model name (default: the default_model setting).")
    ] = None,
    workload: Annotated[str, typer.Option(help="Request set: random or chat.")] = "random",
    num_prompts: Annotated[int, typer.Option(help="Requests to send.")] = 100,
    concurrency: Annotated[int, typer.Option(help="Most requests in flight (0: no limit).")] = 4,
    request_rate: Annotated[
        float, typer.Option(help="Poisson arrivals per second; inf: all at once.")
    ] = float("inf"),
    input_len: Annotated[
        int, typer.Option(help="Prompt tokens of the random workload (about).")
    ] = 256,
    output_len: Annotated[
        int, typer.Option(help="max_tokens per request (the cap for chat).")
    ] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the workload and the arrivals.")] = 0,
    temperature: Annotated[
        float, typer.Option(help="Sampling temperature sent with every request.")
    ] = 0.0,
    ignore_eos: Annotated[
        bool, typer.Option(help="Ask for exactly max_tokens (ignore_eos + min_tokens).")
    ] = False,
    structured: Annotated[
        bool,
        typer.Option(
            help="Structured output: every request asks for JSON of a fixed schema "
            "(response_format json_schema), to compare with a run without it."
        ),
    ] = False,
    slo_ttft: Annotated[
        float | None, typer.Option(help="Goodput SLO: TTFT at most this many ms.")
    ] = None,
    slo_tpot: Annotated[
        float | None, typer.Option(help="Goodput SLO: TPOT at most this many ms.")
    ] = None,
    peer: Annotated[
        list[str] | None,
        typer.Option(
            help="Also measure a peer: llama-cpp-server (llama-cpp-python's server), vllm "
            "(vLLM's CPU build in a venv of its own under LLMASOS_HOME/peers, installed on "
            "first use, on the model de-quantized to a Hugging Face directory) or raw-loop "
            "(an in-process batched llama.cpp loop, the ceiling; closed loop only)."
        ),
    ] = None,
    start_server: Annotated[
        bool,
        typer.Option(help="Start `llmasos serve` (temporary home) instead of using --base-url."),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(help="CPU threads for started servers (default: the threads setting)."),
    ] = None,
    scenario: Annotated[str, typer.Option(help="load (default), fairness or soak.")] = "load",
    clients: Annotated[int, typer.Option(help="Soak: concurrent closed-loop clients.")] = 64,
    duration: Annotated[float, typer.Option(help="Soak: seconds to run.")] = 120.0,
    flood: Annotated[int, typer.Option(help="Fairness: tenant A's long requests.")] = 16,
    server_pid: Annotated[
        int | None, typer.Option(help="Soak: pid of the --base-url server, for memory samples.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds one request may take.")] = 600.0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON to this file.")
    ] = None,
    plot_path: Annotated[
        Path | None, typer.Option("--plot", help="Write a PNG chart to this file.")
    ] = None,
) -> None:
    """Serving benchmark (TTFT, TPOT, ITL, goodput) against OpenAI-compatible servers."""
    from llmasos.bench.campaign import CampaignPlan, run_campaign
    from llmasos.bench.metrics import SLO
    from llmasos.bench.serve import STRUCTURED, LoadConfig

    plan = CampaignPlan(
        base_url=base_url,
        model=model,
        workload=workload,
        num_prompts=num_prompts,
        input_len=input_len,
        output_len=output_len,
        config=LoadConfig(
            concurrency=concurrency,
            request_rate=request_rate,
            seed=seed,
            temperature=temperature,
            ignore_eos=ignore_eos,
            timeout_s=timeout,
            response_format=STRUCTURED if structured else None,
        ),
        slo=SLO(ttft_ms=slo_ttft, tpot_ms=slo_tpot),
        peers=list(peer or []),
        start_server=start_server,
        threads=threads,
        scenario=scenario,
        clients=clients,
        duration_s=duration,
        flood=flood,
        server_pid=server_pid,
    )
    report = run_campaign(
        plan, settings=state.settings, store=state.store, display=_ConsoleDisplay()
    )
    console.print(_report_table(report))
    line = report.comparison().get("line")
    if line:
        console.print(line, highlight=False)
    if json_path is not None:
        report.write_json(json_path)
        console.print(f"wrote {json_path}")
    if plot_path is not None:
        if report.write_plot(plot_path):
            console.print(f"wrote {plot_path}")
        else:
            console.print("(no chart for the soak scenario)")


class _ConsoleDisplay:
    """A campaign's status lines and progress bars on the console."""

    def say(self, text: str) -> None:
        console.print(text, highlight=False)

    @contextlib.contextmanager
    def progress(self, label: str, total: int) -> Iterator[Callable[[], None]]:
        with progress_bar() as bar:
            task_id = bar.add_task(label, total=total)
            yield lambda: bar.advance(task_id)


def _report_table(report: CampaignReport) -> Table:
    """The table of a campaign: fairness, soak, or one column per server."""
    results = report.results
    if report.plan.scenario == "fairness":
        table = Table(
            "server",
            "idle TTFT ms",
            "TTFT under flood ms",
            "ratio",
            "<= 3x",
            "flood done",
            title="Fairness: tenant-b during tenant-a's flood",
        )
        for r in results:
            table.add_row(
                r.label,
                f"{r.idle_ttft_ms:.1f}",
                f"{r.loaded_ttft_ms:.1f}",
                f"{r.ratio:.2f}x",
                "ok" if r.passed else "MISSED",
                f"{r.flood_completed}/{r.flood_requests}",
            )
        return table
    if report.plan.scenario == "soak":
        table = Table(
            "server",
            "completed",
            "503",
            "other errors",
            "RSS start/end/max MiB",
            "verdict",
            title="Soak",
        )
        for r in results:
            memory = r.to_dict()["memory"]
            rss = (
                f"{memory['start_mib']:.0f} / {memory['end_mib']:.0f} / {memory['max_mib']:.0f}"
                if memory
                else "- (pid unknown)"
            )
            table.add_row(
                r.label,
                str(r.completed),
                str(r.rejected_503),
                str(sum(r.other_errors.values())),
                rss,
                "ok" if r.passed else "FAILED",
            )
        return table
    plan = report.plan
    title = (
        f"bench serve: {plan.workload}, {plan.num_prompts} prompts, "
        f"concurrency {plan.config.concurrency or 'unlimited'}, "
        f"rate {plan.config.request_rate:g}/s"
    )
    return _serve_table(results, title)


@bench_app.command("speech")
def speech_bench(
    speech: Annotated[bool, typer.Option(help="Measure the speech round trip.")] = True,
    ocr: Annotated[bool, typer.Option(help="Measure OCR on rendered pages.")] = True,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="A recognizer to measure (pocketsphinx, a whisper model such as "
            "whisper:tiny.en); repeat for several. Default: pocketsphinx and every whisper "
            "in the store.",
        ),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON to this file.")
    ] = None,
) -> None:
    """Speech and OCR: round-trip WER and real-time factor of each recognizer, TTS speed, OCR
    CER and latency."""
    from llmasos.bench.speech import run_perception_bench, table_rows

    with console.status("speaking, recognizing and reading (a minute or two)"):
        report = run_perception_bench(
            speech=speech, ocr=ocr, store=state.store, models=model or None
        )
    table = Table("measure", "figure", "detail", title="Perception on this machine")
    for row in table_rows(report):
        table.add_row(*row)
    console.print(table)
    machine = report.machine
    console.print(
        f"{machine['cpus']} CPUs, load average {machine['load_average_1m_at_start']} at start, "
        f"{machine['load_average_1m_at_end']} at end",
        highlight=False,
    )
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        console.print(f"wrote {json_path}", highlight=False)


@bench_app.command("console")
def console_bench(
    url: Annotated[
        str | None, typer.Option(help="A running server to measure (default: start one).")
    ] = None,
    name: Annotated[str, typer.Option(help="User to sign in as (with --url).")] = "bench-admin",
    password: Annotated[
        str, typer.Option(help="That user's password (with --url).")
    ] = "bench-console-password",
    repeat: Annotated[int, typer.Option(min=1, help="Loads per page.")] = 20,
    chats: Annotated[int, typer.Option(min=1, help="Streamed chat replies timed.")] = 10,
    model: Annotated[str, typer.Option(help="Model the chat replies use.")] = "smollm2",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON to this file.")
    ] = None,
) -> None:
    """Web console: time to first byte and first-load weight per page, first streamed token."""
    from llmasos.bench.console import run_console_bench, table

    report = run_console_bench(
        url=url,
        name=name,
        password=password,
        repeat=repeat,
        chats=chats,
        model=model,
        threads=state.settings.threads,
        say=lambda message: console.print(message, style="dim", highlight=False),
    )
    console.print(table(report), highlight=False)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        console.print(f"wrote {json_path}", highlight=False)


@bench_app.command("router")
def router_bench(
    replicas: Annotated[int, typer.Option("--replicas", min=2, help="Simulated replicas.")] = 100,
    tenants: Annotated[int, typer.Option("--tenants", min=1, help="Simulated tenants.")] = 10_000,
    requests: Annotated[
        int, typer.Option("--requests", min=100, help="Requests in the synthetic trace.")
    ] = 30_000,
    load: Annotated[
        float, typer.Option("--load", min=0.1, max=2.0, help="Offered load / capacity.")
    ] = 0.9,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic trace.")] = 7,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON to this file.")
    ] = None,
    plot_path: Annotated[
        Path | None, typer.Option("--plot", help="Draw the results as a PNG to this file.")
    ] = None,
) -> None:
    """The cluster router in simulation: prefix hits, queueing, fairness, overhead."""
    from llmasos.bench.router import SimulationConfig, plot, run

    config = SimulationConfig(
        replicas=replicas, tenants=tenants, requests=requests, load=load, seed=seed
    )
    with console.status("simulating four routers on one trace"):
        report = run(config)
    result = Table(
        "router",
        "prefix hits",
        "queue mean s",
        "queue p95 s",
        "light tenants s",
        "10 heaviest s",
        "fairness gap",
        "overhead p50/p95 µs",
        title=f"{replicas} replicas, {tenants} tenants, {requests} requests, load {load}",
    )
    for row in report["results"]:
        result.add_row(
            row["router"],
            f"{100 * row['prefix_hit_rate']:.1f}%",
            f"{row['queue_mean_s']:.2f}",
            f"{row['queue_p95_s']:.2f}",
            f"{row['light_queue_mean_s']:.2f}",
            f"{row['heavy_queue_mean_s']:.2f}",
            f"{row['fairness_gap']:.1f}",
            f"{row['overhead_p50_us']:.1f} / {row['overhead_p95_us']:.1f}",
        )
    console.print(result)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {json_path}", highlight=False)
    if plot_path is not None:
        plot(report, str(plot_path))
        console.print(f"wrote {plot_path}", highlight=False)
