"""``llmasos tune``: find the weight format this machine serves a GGUF model fastest in.

For the model's current version (the reference) and each candidate format, `tune_model`
derives the candidate with llama.cpp's quantizer (`llmasos.toolchain.quantize`), stores it
as a version of the same name with its provenance (``derived:<source digest>:<format>:<tool>``,
reused on later runs), and measures, with every version loaded side by side and in
alternating rounds (the machine may be shared):

- speed as served: the kernel `llmasos serve` runs (`InProcessEngineClient`, the same
  scheduler, chunked prefill and continuous batching) answers a typical request
  (``SERVED_PROMPT`` prompt tokens, ``SERVED_OUTPUT`` answer tokens) alone, then ``batch``
  of them at once; the best of the rounds counts;
- the backend's raw rates, for the table: a batch of ``batch`` sequences prefilled together,
  then ``tokens`` decode steps, and one sequence alone;
- quality: perplexity on the public-domain text LLMasOS ships, a greedy answer to "What
  is the capital of France?" that must name Paris when the reference's does, and the named
  services' scores on their shipped development sets (the service gate, below).

A candidate below 8 bits a weight (Q4_0, Q4_K_M, IQ4_NL ...) is made with an importance
matrix (`llmasos.toolchain.imatrix`), as ``llama-quantize --imatrix`` would: the current
version is de-quantized to F16 by llama.cpp once, the matrix is computed on that F16 over a
calibration text (by default the shipped ``summarize`` development set, not the perplexity
text), and every low-bit candidate is quantized from the F16 with it. So each format is
judged by its good version; ``imatrix=False`` derives them plainly (both kinds are kept
apart in the store by their provenance, ``...:<format>:imatrix=<calibration>:...``).

The service gate runs each of ``SERVICE_GATE`` (classify, extract, answer, summarize,
translate) on its shipped development set through the kernel, with every version, and
compares each item's score with the reference's on the same item. A candidate fails it when
its mean is lower and a paired permutation test says the difference is unlikely to be chance
(one-sided p below ``SIGNIFICANCE``): on sets of 40 to 120 items, a strict "no score lower"
would turn a format down for one item that two greedy decoders happen to label differently,
while a real loss of a few points shows. The scores are in the report either way.

Among the versions whose perplexity is within ``QUALITY_TOLERANCE`` of the reference's (and
that pass the France question and the service gate), the one that serves the typical
request soonest, alone and in a full batch together, is recorded in the store for this machine
(`llmasos.models.tuning`), and `resolve` serves it from then on;
the reference stays the model's current version, and ``name@DIGEST`` still loads any one.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmasos.backends.interface import BackendInterface, LoadSpec, SequenceWork
from llmasos.config import Settings, load_settings
from llmasos.errors import InvalidRequestError
from llmasos.models import ModelStoreInterface
from llmasos.models.manifest import Manifest
from llmasos.models.tuning import TuningChoice, machine_fingerprint
from llmasos.toolchain.imatrix import SHIPPED_CALIBRATION, shipped_calibration_texts
from llmasos.toolchain.metrics import paired_lower_p
from llmasos.toolchain.perplexity import perplexity, public_domain_text
from llmasos.toolchain.quantize import TOOL, format_name, quantize_gguf
from llmasos.toolchain.registering import greedy_text
from llmasos.types import SamplingParams

DEFAULT_FORMATS = ("Q4_0", "Q8_0")
"""Candidates on CPUs: Q4_0 is what llama.cpp repacks for AVX2/ARM matrix kernels, Q8_0
the high-quality fallback when requantizing a 4-bit source to 4 bits costs too much."""
WITHOUT_IMATRIX = ("F32", "F16", "BF16", "Q8_0")
"""Formats of 8 bits a weight or more: rounding is fine enough that no importance matrix is
used (llama.cpp's quantizer ignores one for them)."""
QUALITY_TOLERANCE = 0.03
"""A candidate's perplexity may exceed the reference's by at most this fraction."""
SERVED_PROMPT = 256
SERVED_OUTPUT = 128
"""The request a choice is made for: prompts are about twice as long as answers in chat and
in the serve benchmark's random workload, so on a CPU whose decode rates are close across
formats (llama.cpp repacks several of them) the prefill rate weighs. It is timed twice,
alone and in a full batch: a format that reads more bytes a weight prefills a batch faster
but decodes a lone sequence slower (memory-bound), and the sum keeps either from paying for
the other."""
SERVICE_GATE = ("classify", "extract", "answer", "summarize", "translate")
"""The services whose development-set scores a candidate must not lose (`evaluate`)."""
SIGNIFICANCE = 0.05
"""A candidate scoring lower on a service fails the gate when the paired test's one-sided
p-value is below this."""
QUIET_LOAD_PER_CPU = 0.5
"""The machine counts as busy while its 1-minute load average exceeds this per CPU: a tune
timed beside other work measures the contention (on two cores shared with compilers it
chose F16, which is faster only when the cores are contended), so the server's first-start
tune waits for quiet, and a report made on a busy machine says so."""
FRANCE = "What is the capital of France?"
SPEED_PROMPT = "Write a long, detailed story about a robot who learns to paint, part {n}."

Progress = Callable[[str], None]


@dataclass
class FormatResult:
    """One version of the model as measured."""

    format: str
    digest: str
    size_bytes: int
    reference: bool
    decode_tokens_per_second: float = 0.0
    prefill_tokens_per_second: float = 0.0
    """Rates of a batch of sequences (``TuneReport.batch``) run together."""
    single_decode_tokens_per_second: float = 0.0
    single_prefill_tokens_per_second: float = 0.0
    """Rates of one sequence alone: one user of the machine."""
    perplexity: float = 0.0
    answer: str = ""
    says_paris: bool = False
    eligible: bool = True
    why_not: str = ""
    imatrix: bool = False
    """Quantized with the run's importance matrix."""
    services: dict[str, float] = field(default_factory=dict)
    """Service -> its main score on the development set (`evaluate`)."""
    service_items: dict[str, list[float]] = field(default_factory=dict)
    """Service -> the main score of each item, in the set's order."""
    services_lower_p: dict[str, float] = field(default_factory=dict)
    """Service -> one-sided p-value that this version scores lower than the reference."""

    seconds_alone: float = math.inf
    """The kernel serving the typical request when it is the only one."""
    seconds_in_batch: float = math.inf
    """The kernel serving ``batch`` typical requests sent at once (the time of all of them)."""

    @property
    def seconds_per_request(self) -> float:
        """What the choice minimizes: the typical request alone plus in a full batch, so
        neither one user nor a busy server pays for the other's gain."""
        return self.seconds_alone + self.seconds_in_batch


@dataclass
class TuneReport:
    model: str
    machine: str
    batch: int
    tokens: int
    threads: int
    results: list[FormatResult] = field(default_factory=list)
    chosen: str = ""
    """Format chosen."""
    imatrix: dict[str, Any] = field(default_factory=dict)
    """The importance matrix the low-bit candidates were made with (calibration, tokens,
    chunks, seconds), empty when none was computed in this run."""
    load: dict[str, float] = field(default_factory=dict)
    """The machine's 1-minute load average when the timings began and ended, and its CPUs."""

    @property
    def machine_was_busy(self) -> bool:
        """Other work ran beside the timings (`QUIET_LOAD_PER_CPU`): they measure contention."""
        limit = QUIET_LOAD_PER_CPU * self.load.get("cpus", 1)
        return max(self.load.get("before", 0.0), self.load.get("after", 0.0)) > limit

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["machine_was_busy"] = self.machine_was_busy
        for row, result in zip(data["results"], self.results, strict=True):
            row["seconds_per_request"] = round(result.seconds_per_request, 4)
        return data


def provenance(source: Manifest, weight_format: str, imatrix: str = "") -> str:
    import llama_cpp

    how = f"{weight_format}:imatrix={imatrix}" if imatrix else weight_format
    return f"derived:{source.digest}:{how}:{TOOL} {llama_cpp.__version__}"


@dataclass
class Calibration:
    """An importance matrix for the low-bit candidates: computed at most once per run, on an
    F16 de-quantization of the current version, from which those candidates are then made."""

    name: str
    texts: Sequence[str]
    chunk_size: int = 512
    float_copy: Path | None = None
    entries: dict[str, Any] | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def prepare(self, source: Path, work_dir: Path, threads: int) -> tuple[Path, dict[str, Any]]:
        """The F16 to quantize from and the matrix's entries for the quantizer."""
        from llmasos.toolchain.imatrix import compute_imatrix, quantizer_entries

        if self.float_copy is None or self.entries is None:
            started = time.perf_counter()
            self.float_copy = work_dir / "F16.gguf"
            quantize_gguf(source, self.float_copy, "F16", threads=threads)
            matrix = compute_imatrix(
                self.float_copy,
                self.texts,
                chunk_size=self.chunk_size,
                threads=threads,
                dataset=self.name,
            )
            self.entries = quantizer_entries(matrix)
            self.report = {
                "calibration": self.name,
                "tokens": matrix.tokens,
                "chunks": matrix.chunks,
                "tensors": len(self.entries),
                "seconds": round(time.perf_counter() - started, 1),
            }
        return self.float_copy, self.entries


def derive(
    store: ModelStoreInterface,
    name: str,
    weight_format: str,
    *,
    threads: int,
    work_dir: Path,
    calibration: Calibration | None = None,
) -> Manifest:
    """The version of ``name`` in ``weight_format`` derived from its current one (made now,
    or found from an earlier run), with ``calibration``'s importance matrix if given."""
    current = store.manifest(name)
    tag = calibration.name if calibration else ""
    prefix = f"derived:{current.digest}:{weight_format}:" + (f"imatrix={tag}:" if tag else "")
    for version in store.versions(name):
        source_text = version.source or ""
        if source_text.startswith(prefix) and (tag or ":imatrix=" not in source_text):
            return version
    source = store.resolve(f"{name}@{current.digest.removeprefix('sha256:')}")
    target = work_dir / f"{weight_format}.gguf"
    try:
        if calibration is not None:
            origin, entries = calibration.prepare(source.path, work_dir, threads)
            quantize_gguf(origin, target, weight_format, threads=threads, imatrix=entries)
        else:
            quantize_gguf(source.path, target, weight_format, threads=threads)
        return store.add_version(
            name, target, quantization=weight_format, source=provenance(current, weight_format, tag)
        )
    finally:
        target.unlink(missing_ok=True)


def _measure_speed(
    backend: BackendInterface, prompts: list[list[int]], tokens: int
) -> tuple[float, float]:
    """(prefill tok/s, decode tok/s) of ``len(prompts)`` sequences decoded together."""
    params = SamplingParams(temperature=0.0, ignore_eos=True, repetition_guard=False)
    start = time.perf_counter()
    for seq_id, prompt in enumerate(prompts):
        backend.add_sequence(seq_id, params, prompt)
    sampled = backend.execute([SequenceWork(i, p, True) for i, p in enumerate(prompts)])
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(tokens):
        sampled = backend.execute([SequenceWork(s.seq_id, [s.token], True) for s in sampled])
    decode = time.perf_counter() - start
    for seq_id in range(len(prompts)):
        backend.remove_sequence(seq_id)
    prompt_tokens = sum(len(p) for p in prompts)
    return prompt_tokens / prefill, tokens * len(prompts) / decode


async def _served(
    engine: Any, model: str, batch: int, prompt_tokens: int, output_tokens: int
) -> tuple[float, float]:
    """Seconds the kernel takes for one typical request alone, and for ``batch`` at once."""
    from llmasos.kernel.interface import GenerateRequest

    words = SPEED_PROMPT.format(n="0").split()
    text = ""
    while len(await engine.tokenize(model, text)) < prompt_tokens:
        text = " ".join([text, *words]).strip()
    params = SamplingParams(
        temperature=0.0, max_tokens=output_tokens, ignore_eos=True, repetition_guard=False
    )

    async def one(index: int) -> None:
        request = GenerateRequest(
            model=model, prompt=f"{index}. {text}", raw=True, sampling=params,
            apply_model_defaults=False, keep_alive=None,
        )  # fmt: skip
        async for _ in engine.generate(request):
            pass

    await one(-1)  # warm: the model loaded, its first step behind it
    start = time.perf_counter()
    await one(0)
    alone = time.perf_counter() - start
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(1, batch + 1)))
    return alone, time.perf_counter() - start


async def _measure_served(
    settings: Settings,
    store: ModelStoreInterface,
    versions: Sequence[str],
    batch: int,
    rounds: int,
    prompt_tokens: int,
    output_tokens: int,
    progress: Progress,
) -> list[tuple[float, float]]:
    """(alone, in batch) seconds of each of ``versions`` (``name@digest``), best of
    ``rounds`` alternating rounds, one version resident at a time."""
    from llmasos.kernel.client import InProcessEngineClient

    engine = InProcessEngineClient(settings, store)
    best = [(math.inf, math.inf)] * len(versions)
    try:
        for round_number in range(rounds):
            for index, version in enumerate(versions):
                progress(f"{version}: served alone and {batch} at once, round {round_number + 1}")
                alone, together = await _served(
                    engine, version, batch, prompt_tokens, output_tokens
                )
                await engine.unload(version)
                best[index] = (min(best[index][0], alone), min(best[index][1], together))
    finally:
        await engine.close()
    return best


async def _measure_services(
    settings: Settings,
    store: ModelStoreInterface,
    versions: Sequence[str],
    services: Sequence[str],
    limit: int | None,
    progress: Progress,
) -> list[dict[str, tuple[float, list[float]]]]:
    """For each of ``versions``: service -> (main score, per-item scores) on the service's
    shipped development set, run through the kernel one version at a time."""
    from llmasos.kernel.client import InProcessEngineClient
    from llmasos.services.runner import runner_for
    from llmasos.toolchain.evaluate import (
        dataset_path,
        evaluate_service,
        item_scores,
        load_dataset,
    )

    sets = {service: load_dataset(dataset_path(service), limit) for service in services}
    engine = InProcessEngineClient(settings, store)
    runner = runner_for(engine, settings.home, store, settings.default_model)
    measured: list[dict[str, tuple[float, list[float]]]] = []
    try:
        for version in versions:
            scores: dict[str, tuple[float, list[float]]] = {}
            for service, items in sets.items():
                progress(f"{version}: {service} on {len(items)} development items")
                report = await evaluate_service(
                    engine, runner, service, items, model=version, references=False
                )
                predictions = [p["service"] for p in report["predictions"]]
                scores[service] = (
                    float(report["scores"]["service"][report["main"]]),
                    item_scores(service, predictions, items),
                )
            measured.append(scores)
            await engine.unload(version)
    finally:
        await engine.close()
    return measured


def _answer(backend: BackendInterface, question: str, max_tokens: int = 16) -> str:
    prompt = backend.tokenize(backend.render_chat([{"role": "user", "content": question}]))
    return greedy_text(backend, prompt, max_tokens)


def tune_model(
    store: ModelStoreInterface,
    name: str,
    *,
    formats: Sequence[str] = DEFAULT_FORMATS,
    batch: int = 8,
    tokens: int = 32,
    rounds: int = 2,
    threads: int = 0,
    work_dir: Path,
    progress: Progress = lambda line: None,
    record: bool = True,
    text: str | None = None,
    imatrix: bool = True,
    calibration: Sequence[str] | None = None,
    calibration_name: str = "",
    calibration_chunk: int = 512,
    settings: Settings | None = None,
    served_prompt: int = SERVED_PROMPT,
    served_output: int = SERVED_OUTPUT,
    services: Sequence[str] = SERVICE_GATE,
    service_items: int | None = None,
) -> TuneReport:
    """Measure ``name``'s current version and each of ``formats``; record the best.

    ``text`` replaces the shipped public-domain text for the perplexity. Low-bit candidates
    are made with an importance matrix over ``calibration`` (default: the shipped
    calibration texts, in chunks of ``calibration_chunk`` tokens) unless ``imatrix`` is
    False. ``settings`` are the kernel's for the served timings (``threads`` and ``batch``
    override theirs); the typical request is ``served_prompt`` + ``served_output`` tokens.
    ``services`` are scored on their shipped development sets (``service_items`` of each,
    spread over the set; all by default); an empty list skips the service gate."""
    from llmasos.backends.llamacpp.backend import LlamaCppBackend

    if batch < 1 or tokens < 1 or rounds < 1:
        raise InvalidRequestError("batch, tokens and rounds must be >= 1")
    current = store.manifest(name)
    if current.format != "gguf" or current.kind != "generate":
        raise InvalidRequestError(f"{current.name} is not a GGUF generation model; only those tune")
    wanted = [format_name(f) for f in formats]
    matrix = None
    if imatrix:
        matrix = Calibration(
            calibration_name or (SHIPPED_CALIBRATION if calibration is None else "calibration"),
            list(calibration) if calibration is not None else shipped_calibration_texts(),
            calibration_chunk,
        )
    versions = [current]
    with_matrix: set[str] = set()
    try:
        for weight_format in dict.fromkeys(wanted):
            if weight_format == (current.quantization or "").upper():
                continue
            low_bit = matrix is not None and weight_format not in WITHOUT_IMATRIX
            how = " and an importance matrix" if low_bit else ""
            progress(f"deriving {weight_format} with {TOOL}{how}")
            version = derive(store, name, weight_format, threads=threads, work_dir=work_dir,
                             calibration=matrix if low_bit else None)  # fmt: skip
            versions.append(version)
            if low_bit:
                with_matrix.add(version.digest)
    finally:
        if matrix is not None and matrix.float_copy is not None:
            matrix.float_copy.unlink(missing_ok=True)
    report = TuneReport(current.name, machine_fingerprint(), batch, tokens, threads)
    report.imatrix = matrix.report if matrix is not None else {}
    text = text or public_domain_text()
    report.load = {"before": os.getloadavg()[0], "cpus": float(os.cpu_count() or 1)}
    backends: list[BackendInterface] = []
    try:
        for version in versions:
            resolved = store.resolve(f"{name}@{version.digest.removeprefix('sha256:')}")
            spec = LoadSpec(
                path=resolved.path,
                format="gguf",
                context_length=1024,
                max_sequences=batch,
                kv_capacity_tokens=1024 * batch,
                threads=threads,
                chat_template=version.chat_template,
            )
            backend: BackendInterface = LlamaCppBackend.load(spec)
            backends.append(backend)
            result = FormatResult(
                format=(version.quantization or "?").upper(),
                digest=version.digest,
                size_bytes=version.size,
                reference=version is current,
                imatrix=version.digest in with_matrix,
            )
            progress(f"{result.format}: perplexity and the France question")
            result.perplexity = perplexity(backend, text, window=1024).value
            result.answer = _answer(backend, FRANCE)
            result.says_paris = "paris" in result.answer.lower()
            report.results.append(result)
        for round_number in range(rounds):
            for backend, result in zip(backends, report.results, strict=True):
                progress(f"{result.format}: speed, round {round_number + 1} of {rounds}")
                prompts = [
                    backend.tokenize(SPEED_PROMPT.format(n=f"{round_number}.{i}"))
                    for i in range(batch)
                ]
                prefill, decode = _measure_speed(backend, prompts, tokens)
                result.prefill_tokens_per_second = max(result.prefill_tokens_per_second, prefill)
                result.decode_tokens_per_second = max(result.decode_tokens_per_second, decode)
                prefill, decode = _measure_speed(backend, prompts[:1], tokens)
                result.single_prefill_tokens_per_second = max(
                    result.single_prefill_tokens_per_second, prefill
                )
                result.single_decode_tokens_per_second = max(
                    result.single_decode_tokens_per_second, decode
                )
    finally:
        for backend in backends:
            backend.close()
    kernel_settings = (settings or load_settings()).model_copy(
        update={"threads": threads, "max_batch_size": batch, "auto_tune": False}
    )
    pinned = [f"{name}@{v.digest.removeprefix('sha256:')}" for v in versions]
    served = asyncio.run(
        _measure_served(
            kernel_settings,
            store,
            pinned,
            batch,
            rounds,
            served_prompt,
            served_output,
            progress,
        )
    )
    for result, (alone, together) in zip(report.results, served, strict=True):
        result.seconds_alone, result.seconds_in_batch = alone, together
    report.load["after"] = os.getloadavg()[0]
    if services:
        scored = asyncio.run(
            _measure_services(
                kernel_settings,
                store,
                pinned,
                services,
                service_items,
                progress,
            )
        )
        for result, by_service in zip(report.results, scored, strict=True):
            for service, (score, items) in by_service.items():
                result.services[service] = round(score, 2)
                result.service_items[service] = items
    _choose(report)
    if record:
        chosen = next(r for r in report.results if r.format == report.chosen)
        store.record_tuning(
            TuningChoice(
                source=current.digest,
                digest=chosen.digest,
                format=chosen.format,
                measured={r.format: _figures(r) for r in report.results},
                tuned_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
        )
    return report


def _figures(result: FormatResult) -> dict[str, float]:
    return {
        "decode_tokens_per_second": round(result.decode_tokens_per_second, 1),
        "prefill_tokens_per_second": round(result.prefill_tokens_per_second, 1),
        "single_decode_tokens_per_second": round(result.single_decode_tokens_per_second, 1),
        "seconds_alone": round(result.seconds_alone, 4),
        "seconds_in_batch": round(result.seconds_in_batch, 4),
        "seconds_per_request": round(result.seconds_per_request, 4),
        "perplexity": round(result.perplexity, 4),
        **{f"service:{name}": score for name, score in result.services.items()},
    }


def _choose(report: TuneReport) -> None:
    """Mark ineligible versions and pick the eligible one (the reference always is) that
    serves the typical request soonest, alone and in a full batch together."""
    reference = next(r for r in report.results if r.reference)
    limit = reference.perplexity * (1 + QUALITY_TOLERANCE)
    for result in report.results:
        if result.reference:
            continue
        if result.perplexity > limit:
            result.eligible = False
            worse = (result.perplexity / reference.perplexity - 1) * 100
            result.why_not = f"perplexity {worse:+.1f}% (limit {QUALITY_TOLERANCE:.0%})"
        elif reference.says_paris and not result.says_paris:
            result.eligible = False
            result.why_not = "does not answer Paris"
        for service, items in result.service_items.items():
            wanted = reference.service_items.get(service)
            if wanted is None or len(wanted) != len(items):
                continue
            p = paired_lower_p(items, wanted)
            result.services_lower_p[service] = round(p, 4)
            lower = result.services[service] < reference.services[service]
            if result.eligible and lower and p < SIGNIFICANCE:
                result.eligible = False
                result.why_not = (
                    f"{service} {result.services[service]:.1f} against "
                    f"{reference.services[service]:.1f} (lower, p = {p:.3f})"
                )
    eligible = [r for r in report.results if r.eligible]
    report.chosen = min(eligible, key=lambda r: r.seconds_per_request).format


def machine_is_busy(load: Callable[[], float] = lambda: os.getloadavg()[0]) -> bool:
    """Whether other work keeps this machine's CPUs busy now (`QUIET_LOAD_PER_CPU`)."""
    return load() > QUIET_LOAD_PER_CPU * (os.cpu_count() or 1)


def keep_as_it_is(store: ModelStoreInterface, name: str) -> None:
    """Serve ``name``'s current version on this machine from now on (``tune --reset``): a
    choice of the version itself, so the server's first-start tune (`autotune`) leaves the
    model alone too."""
    current = store.manifest(name)
    store.record_tuning(
        TuningChoice(
            source=current.digest,
            digest=current.digest,
            format=(current.quantization or "?").upper(),
            measured={},
            tuned_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
    )
