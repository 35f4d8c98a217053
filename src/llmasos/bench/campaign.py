"""A serving benchmark campaign: LLMasOS, then each peer, under one workload, one report.

`run_campaign` runs a `CampaignPlan` (``llmasos bench serve``'s options): it builds the
workload, measures LLMasOS (at a base URL, or a `llmasos serve` it starts in a temporary
home), then each peer in turn (llama-cpp-python's server or vLLM's CPU build, started and
stopped here — vLLM installed into its own venv and the model converted before anything
starts — or the in-process raw llama.cpp loop, run after every server is stopped), under
the ``load``, ``fairness`` or ``soak`` scenario. The result, a `CampaignReport`, compares
LLMasOS with the peers, becomes the JSON document and the chart. What the person sees while
it runs goes through a `CampaignDisplay` (the CLI gives one with rich progress bars), so
nothing here prints.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from llmasos.bench.metrics import SLO
from llmasos.bench.peers import (
    LLAMA_CPP_SERVER,
    PEERS,
    RAW_LOOP,
    VLLM,
    ServerProcess,
    llama_cpp_server,
    llmasos_server,
)
from llmasos.bench.rawloop import LABEL, check_raw_loop_model, check_raw_loop_options, run_raw_loop
from llmasos.bench.scenarios import run_fairness, run_soak
from llmasos.bench.serve import LoadConfig, Target, run_benchmark
from llmasos.bench.vllm import VllmPeer, prepare_vllm, vllm_server
from llmasos.bench.workloads import BenchRequest, build_workload
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.models import ModelStoreInterface

SCENARIOS = ("load", "fairness", "soak")
RAW_LOOP_TARGET = (8, 90.0)
"""Issue #3: at concurrency 8, LLMasOS's output tok/s should be >= 90% of the raw loop's."""


class CampaignDisplay(Protocol):
    """How a campaign tells the person what it is doing."""

    def say(self, text: str) -> None:
        """One line of status."""
        ...

    def progress(self, label: str, total: int) -> AbstractContextManager[Callable[[], None]]:
        """A progress bar of ``total`` steps for the block; the value advances it by one."""
        ...


@dataclass
class CampaignPlan:
    """What to measure: ``llmasos bench serve``'s options."""

    base_url: str = "http://127.0.0.1:8000"
    model: str | None = None
    workload: str = "random"
    num_prompts: int = 100
    input_len: int = 256
    output_len: int = 128
    config: LoadConfig = field(default_factory=LoadConfig)
    slo: SLO = field(default_factory=SLO)
    peers: list[str] = field(default_factory=list)
    start_server: bool = False
    threads: int | None = None
    scenario: str = "load"
    clients: int = 64
    duration_s: float = 120.0
    flood: int = 16
    server_pid: int | None = None

    def check(self) -> None:
        """Refuse impossible combinations before anything starts."""
        if self.scenario not in SCENARIOS:
            raise InvalidRequestError(
                f"unknown scenario {self.scenario!r}; choose load, fairness or soak"
            )
        self.peers = list(dict.fromkeys(self.peers))
        for name in self.peers:
            if name not in PEERS:
                raise InvalidRequestError(
                    f"unknown peer {name!r}; choose one of: {', '.join(PEERS)}"
                )
        if RAW_LOOP in self.peers:
            check_raw_loop_options(scenario=self.scenario, request_rate=self.config.request_rate)
            if self.config.response_format is not None:
                raise InvalidRequestError(
                    "--peer raw-loop samples without a grammar; it cannot run --structured"
                )
        self.config.check()


@dataclass
class CampaignReport:
    """Everything one campaign measured."""

    plan: CampaignPlan
    results: list[Any]
    """One summary (load) or report (fairness, soak) per server, in run order."""
    runs: list[tuple[Any, Any]]
    """(summary, per-request results) of each load run, for the chart."""
    exit_codes: dict[str, int | None]
    """How each server the campaign started ended."""

    def comparison(self) -> dict[str, Any]:
        """LLMasOS's output tok/s as % of the raw loop and as x of each server peer."""
        if self.plan.scenario != "load":
            return {}
        by_label = {s.label: s for s in self.results}
        ours = by_label.get("llmasos")
        if ours is None:
            return {}
        result: dict[str, Any] = {}
        parts: list[str] = []
        raw = by_label.get(RAW_LOOP)
        if raw is not None and raw.output_throughput > 0:
            percent = ours.output_throughput / raw.output_throughput * 100
            result["llmasos_percent_of_raw_loop"] = percent
            text = f"{percent:.1f}% of raw-loop ({raw.output_throughput:.1f}"
            target_concurrency, target_percent = RAW_LOOP_TARGET
            concurrency = self.plan.config.concurrency
            if concurrency == target_concurrency:
                verdict = "met" if percent >= target_percent else "NOT met"
                text += f"; target at concurrency {concurrency}: >= {target_percent:g}%, {verdict}"
            parts.append(text + ")")
        for peer in (LLAMA_CPP_SERVER, VLLM):
            server = by_label.get(peer)
            if server is not None and server.output_throughput > 0:
                times = ours.output_throughput / server.output_throughput
                result[f"llmasos_x_{peer.replace('-', '_')}"] = times
                parts.append(f"{times:.2f}x {peer} ({server.output_throughput:.1f})")
        if parts:
            result["line"] = f"llmasos output tok/s {ours.output_throughput:.1f} = " + ", ".join(
                parts
            )
        return result

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``--json`` writes."""
        config = {k: (str(v) if v == math.inf else v) for k, v in asdict(self.plan.config).items()}
        return {
            "scenario": self.plan.scenario,
            "workload": self.plan.workload,
            "num_prompts": self.plan.num_prompts,
            "config": config,
            "runs": [r.to_dict() for r in self.results],
            "comparison": {k: v for k, v in self.comparison().items() if k != "line"},
            "server_exit_codes": self.exit_codes,
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def write_plot(self, path: Path) -> bool:
        """Write the chart; False for the soak scenario, which has none."""
        from llmasos.bench.plot import plot_fairness, plot_runs  # matplotlib, when asked

        if self.plan.scenario == "load":
            title = f"{self.plan.workload} workload, {self.plan.num_prompts} prompts"
            plot_runs(self.runs, path, title=title)
        elif self.plan.scenario == "fairness":
            plot_fairness(self.results, path)
        else:
            return False
        return True


def check_reachable(base_url: str) -> None:
    """Raise one readable line when no OpenAI-compatible server answers at ``base_url``."""
    url = base_url.rstrip("/") + (
        "/models" if base_url.rstrip("/").endswith("/v1") else "/v1/models"
    )
    try:
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            client.get(url)
    except httpx.HTTPError as error:
        raise LLMasOSError(
            f"no server answers at {base_url} ({type(error).__name__}); start one with "
            "`llmasos serve`, or pass --start-server"
        ) from None


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt, which unwinds the servers' context managers."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_campaign(
    plan: CampaignPlan,
    *,
    settings: Settings,
    store: ModelStoreInterface,
    display: CampaignDisplay,
) -> CampaignReport:
    """Run every server of ``plan`` in turn and collect what they measured."""
    plan.check()
    model_name = plan.model or settings.default_model
    threads = plan.threads if plan.threads is not None else settings.effective_threads
    if RAW_LOOP in plan.peers:
        check_raw_loop_model(store.resolve(model_name))
    requests = build_workload(
        plan.workload,
        plan.num_prompts,
        input_len=plan.input_len,
        output_len=plan.output_len,
        seed=plan.config.seed,
    )
    if not plan.start_server:
        check_reachable(plan.base_url)
    vllm: VllmPeer | None = None
    if VLLM in plan.peers:  # install and convert before any server runs
        vllm = prepare_vllm(store, model_name, home=settings.home, say=display.say)
        display.say(f"{VLLM}: dtype {vllm.dtype} ({vllm.dtype_reason})")
    report = CampaignReport(plan, results=[], runs=[], exit_codes={})
    with interrupt_on_sigterm():  # so a started server is stopped on the way out
        for label in ("llmasos", *plan.peers):
            if label == RAW_LOOP:  # in-process; every server before it is stopped by now
                run = _run_raw_loop(plan, store, settings, model_name, requests, threads, display)
                report.runs.append(run)
                report.results.append(run[0])
                continue
            with _server(plan, label, store, settings, model_name, threads, vllm) as process:
                if process is not None:
                    display.say(f"starting {label} on port {process.port} …")
                    process.start()
                    target = Target(label, process.base_url, model_name, process.pid)
                else:
                    target = Target(label, plan.base_url, model_name, plan.server_pid)
                _measure(plan, target, requests, report, display)
                if process is not None:
                    report.exit_codes[label] = process.stop()
    return report


def _server(
    plan: CampaignPlan,
    label: str,
    store: ModelStoreInterface,
    settings: Settings,
    model_name: str,
    threads: int,
    vllm: VllmPeer | None = None,
) -> AbstractContextManager[ServerProcess | None]:
    """The server process to start for ``label``, or None to use ``plan.base_url``."""
    if label == VLLM:
        assert vllm is not None, "prepare_vllm runs before the servers"
        return vllm_server(
            vllm,
            threads=threads,
            context_length=settings.context_length,
            max_num_seqs=max(1, plan.config.concurrency or plan.num_prompts),
        )
    if label == LLAMA_CPP_SERVER:
        gguf = store.resolve(model_name).path
        return llama_cpp_server(gguf, threads=threads, context_length=settings.context_length)
    if label == "llmasos" and plan.start_server:
        return llmasos_server(threads=threads)
    return nullcontext(None)


def _measure(
    plan: CampaignPlan,
    target: Target,
    requests: list[BenchRequest],
    report: CampaignReport,
    display: CampaignDisplay,
) -> None:
    """One server under the plan's scenario; its result joins the report."""
    label = target.label
    if plan.scenario == "fairness":
        display.say(f"{label}: fairness scenario ({plan.flood} long requests from tenant-a) …")
        report.results.append(
            run_fairness(target, plan.config, flood=plan.flood, output_len=plan.output_len)
        )
    elif plan.scenario == "soak":
        display.say(f"{label}: soak, {plan.clients} clients for {plan.duration_s:g} s …")
        report.results.append(
            run_soak(
                target,
                plan.config,
                clients=plan.clients,
                duration_s=plan.duration_s,
                output_len=plan.output_len,
            )
        )
    else:
        with display.progress(label, len(requests)) as advance:
            summary, raw = run_benchmark(
                target, requests, plan.config, plan.slo, lambda _result: advance()
            )
        report.runs.append((summary, raw))
        report.results.append(summary)


def _run_raw_loop(
    plan: CampaignPlan,
    store: ModelStoreInterface,
    settings: Settings,
    model_name: str,
    requests: list[BenchRequest],
    threads: int,
    display: CampaignDisplay,
) -> tuple[Any, Any]:
    """The in-process reference loop on the model's GGUF."""
    config = plan.config
    resolved = store.resolve(model_name)
    width = min(config.concurrency or len(requests), len(requests))
    display.say(
        f"{LABEL}: in-process llama.cpp loop on {resolved.manifest.name}, {width} sequences, "
        f"{threads} threads, greedy{'' if config.ignore_eos else ', stops at end of text'} …"
    )
    with display.progress(LABEL, len(requests)) as advance:
        return run_raw_loop(
            resolved,
            requests,
            concurrency=config.concurrency,
            threads=threads,
            kv_cache_tokens=settings.kv_cache_tokens,
            ignore_eos=config.ignore_eos,
            slo=plan.slo,
            progress=lambda _result: advance(),
        )
