"""Model store verbs with Ollama's names: list, show, rm, cp, import, pull, create.

Each verb is a thin face over the model store (``state.store``); failures are `LLMasOSError`s
that `llmasos.cli.main.main` prints as one line with exit code 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from llmasos.cli.jobs import BACKGROUND_HELP, start_in_background
from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.root import app, audited, console, state
from llmasos.errors import InvalidRequestError, ModelfileError
from llmasos.models.manifest import Manifest
from llmasos.models.modelfile import to_modelfile

if TYPE_CHECKING:
    from llmasos.distributed.remote.registry import RemoteProvider

OPTIMIZE_HELP = (
    "Then tune it (`llmasos tune`): serve it on this machine in the fastest weight format "
    "that keeps its quality; what you imported stays the model's current version."
)


def human_size(size: int) -> str:
    """Decimal units like Ollama: ``98 MB``, ``1.2 GB``."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if value >= 10 or unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def relative_time(iso: str, now: datetime | None = None) -> str:
    """``"2 minutes ago"`` for an ISO 8601 UTC time."""
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return "unknown"
    seconds = ((now or datetime.now(UTC)) - then).total_seconds()
    if seconds < 60:
        return "Less than a minute ago" if seconds >= 0 else "just now"
    for unit, length in (("year", 31536000), ("month", 2592000), ("week", 604800),
                         ("day", 86400), ("hour", 3600), ("minute", 60)):  # fmt: skip
        if seconds >= length:
            count = int(seconds // length)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def human_count(count: int | None) -> str:
    if not count:
        return "unknown"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}".replace(".0", "")
    return str(count)


def model_summary(name: str, manifest: Manifest) -> dict[str, Any]:
    """One model of ``llmasos list --json``."""
    return {
        "name": name,
        "id": manifest.short_id,
        "digest": manifest.digest,
        "size": manifest.size,
        "modified_at": manifest.created_at,
        "format": manifest.format,
        "kind": manifest.kind,
        "family": manifest.family,
        "parameter_count": manifest.parameter_count,
        "quantization": manifest.quantization,
        "context_length": manifest.context_length,
        "remote": None,
    }


def remote_summary(provider: RemoteProvider) -> dict[str, Any]:
    """One remote provider's model in ``llmasos list --json``."""
    return {
        "name": provider.name,
        "id": "remote",
        "digest": "",
        "size": 0,
        "modified_at": "",
        "format": "remote",
        "kind": "generate",
        "family": None,
        "parameter_count": None,
        "quantization": None,
        "context_length": provider.context_length,
        "remote": {"url": provider.url, "model": provider.model},
    }


@app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List the models in the store, then the remote providers' (`llmasos remote`).

    --json fields: name, id, digest, size, modified_at, format, kind, family, parameter_count,
    quantization, context_length, remote. ``remote`` is null for a stored model and holds the
    endpoint's url and model for a remote one.
    """
    from llmasos.distributed.remote.registry import RemoteRegistry

    models = state.store.list()
    remotes = RemoteRegistry.for_settings(state.settings).list()
    if as_json:
        print_json(
            [model_summary(name, manifest) for name, manifest in models]
            + [remote_summary(provider) for provider in remotes]
        )
        return
    rows = table(Column("NAME", key=True), Column("ID", key=True), "SIZE", "MODIFIED", plain=True)
    for name, manifest in models:
        rows.add_row(
            name, manifest.short_id, human_size(manifest.size), relative_time(manifest.created_at)
        )
    for provider in remotes:
        rows.add_row(provider.name, "remote", "-", provider.url)
    print_table(rows)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Model name (NAME, NAME:TAG or NAME@ID).")],
    versions: Annotated[bool, typer.Option("--versions", help="List the versions.")] = False,
    modelfile: Annotated[
        bool, typer.Option("--modelfile", help="Print an equivalent Modelfile.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Show a model's details, versions or Modelfile."""
    store = state.store
    if versions:
        rows = store.versions(name)
        if as_json:
            print_json([asdict(m) for m in rows])
            return
        listing = table(
            Column("ID", key=True), "CREATED", "SIZE", Column("SOURCE", key=True), plain=True
        )
        for index, manifest in enumerate(rows):
            label = manifest.short_id + (" (current)" if index == 0 else "")
            listing.add_row(label, manifest.created_at, human_size(manifest.size), manifest.source)
        print_table(listing)
        return
    manifest = store.manifest(name)
    if as_json:
        print_json(json.loads(manifest.to_json()))
    elif modelfile:
        base = str(store.resolve(name).path)
        console.print(
            to_modelfile(manifest, base), end="", markup=False, highlight=False, soft_wrap=True
        )
    else:
        _print_summary(manifest)


def _print_summary(manifest: Manifest) -> None:
    def section(title: str, rows: list[tuple[str, str]]) -> None:
        console.print(f"  [bold]{title}[/bold]")
        for key, value in rows:
            console.print(f"    {key:<20}{value}", markup=False, highlight=False)
        console.print()

    section(
        "Model",
        [
            ("name", manifest.name),
            ("id", manifest.short_id),
            ("format", f"{manifest.format} ({manifest.kind})"),
            ("capabilities", ", ".join(manifest.capabilities) or "text only"),
            *(
                [("vision projector", f"{manifest.projector.digest[:19]} (mmproj)")]
                if manifest.projector
                else []
            ),
            ("architecture", manifest.family or "unknown"),
            ("parameters", human_count(manifest.parameter_count)),
            ("quantization", manifest.quantization or "unknown"),
            ("context length", str(manifest.context_length or "unknown")),
            ("embedding length", str(manifest.embedding_length or "unknown")),
            ("size", human_size(manifest.size)),
            ("source", manifest.source or ""),
        ],
    )
    if manifest.parameters:
        section("Parameters", [(k, json.dumps(v)) for k, v in manifest.parameters.items()])
    for title, text in (
        ("System", manifest.system),
        ("Template", manifest.chat_template),
        ("License", manifest.license),
    ):
        if text:
            console.print(f"  [bold]{title}[/bold]")
            lines = text.splitlines()
            for line in lines[:12]:
                console.print(f"    {line}", markup=False, highlight=False)
            if len(lines) > 12:
                console.print(f"    ... ({len(lines) - 12} more lines)", highlight=False)
            console.print()


@app.command("rm")
def remove(names: Annotated[list[str], typer.Argument(help="Models to remove.")]) -> None:
    """Remove models (every version of each name) and free their unused files."""
    store = state.store
    for name in names:
        with audited("model.delete", name):
            store.remove(name)
        console.print(f"deleted '{store.canonical_name(name)}'", highlight=False)


@app.command("cp")
def copy(
    source: Annotated[str, typer.Argument(help="Existing model.")],
    destination: Annotated[str, typer.Argument(help="New name.")],
) -> None:
    """Copy a model to a new name (no data is duplicated)."""
    with audited("model.copy", f"{source} -> {destination}"):
        manifest = state.store.copy(source, destination)
    console.print(
        f"copied '{state.store.canonical_name(source)}' to '{manifest.name}'", highlight=False
    )


@app.command("import")
def import_model(
    path: Annotated[
        Path,
        typer.Argument(
            help="A .gguf file, a Hugging Face model directory (a VITS one is a voice for "
            "/v1/audio/speech), or a whisper directory in CTranslate2 format (faster-whisper)."
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Name (default: the file stem).")
    ] = None,
    mmproj: Annotated[
        Path | None,
        typer.Option(
            "--mmproj",
            help="The GGUF model's vision projector (an mmproj .gguf): the model then sees "
            "images in chat (needs llama.cpp built with libmtmd, as `make setup` builds it).",
        ),
    ] = None,
    optimize: Annotated[bool, typer.Option("--optimize", help=OPTIMIZE_HELP)] = False,
) -> None:
    """Import a local model file or directory into the store."""
    with console.status(f"importing {path} ..."), audited("model.import", str(path)):
        manifest = state.store.import_path(path, name, projector=mmproj)
    console.print(f"imported '{manifest.name}' ({manifest.short_id})", highlight=False)
    if optimize:
        print_tune(run_tune(manifest.name, None, 32, 2))


@app.command("pull")
def pull(
    source: Annotated[str, typer.Argument(help="HF_REPO_ID or HF_REPO_ID:FILE.gguf")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Store it as NAME.")] = None,
    optimize: Annotated[bool, typer.Option("--optimize", help=OPTIMIZE_HELP)] = False,
) -> None:
    """Download a model from the Hugging Face hub (resumable, sha256-verified)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def report(status: str, completed: int, total: int) -> None:
            if status not in tasks:
                tasks[status] = bar.add_task(status, total=total or None)
            bar.update(tasks[status], completed=completed, total=total or None)

        with audited("model.pull", source):
            manifest = state.store.pull(source, name=name, progress=report)
    console.print(f"pulled '{manifest.name}' ({manifest.short_id})", highlight=False)
    if optimize:
        print_tune(run_tune(manifest.name, None, 32, 2))


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Name of the new model.")],
    file: Annotated[Path, typer.Option("--file", "-f", help="Path to the Modelfile.")] = Path(
        "Modelfile"
    ),
) -> None:
    """Create a model from a Modelfile (FROM, PARAMETER, TEMPLATE, SYSTEM, ADAPTER ...)."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ModelfileError(f"cannot read Modelfile {file}: {error}") from None
    with audited("model.create", name):
        manifest = state.store.create(name, text, base_dir=file.resolve().parent)
    console.print(f"created '{manifest.name}' ({manifest.short_id})", highlight=False)


def run_tune(
    name: str,
    formats: list[str] | None,
    tokens: int,
    rounds: int,
    *,
    imatrix: bool = True,
    calibration: str | None = None,
    services: Sequence[str] | None = None,
    service_items: int | None = None,
) -> dict[str, Any]:
    """Tune ``name`` on this machine with progress on the console; the report as a dict."""
    import tempfile

    from llmasos.toolchain.evaluate import SERVICE_TASKS
    from llmasos.toolchain.tune import DEFAULT_FORMATS, SERVICE_GATE, tune_model

    services = SERVICE_GATE if services is None else services
    unknown = [s for s in services if s not in SERVICE_TASKS]
    if unknown:
        raise InvalidRequestError(
            f"no development set ships for service {unknown[0]!r}: "
            f"the gate can use {', '.join(sorted(SERVICE_TASKS))}",
            param="service",
        )

    texts = None
    if calibration is not None:
        from llmasos.cli.data import registry
        from llmasos.toolchain.model_eval import load_eval_data

        loaded = load_eval_data(registry(), calibration, "perplexity", split="train")
        texts = [item.text for item in loaded.items]
    store = state.store
    state.settings.models_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=".tune-", dir=state.settings.models_dir) as work,
        console.status("tuning ...") as status,
    ):
        report = tune_model(
            store,
            name,
            formats=formats or DEFAULT_FORMATS,
            tokens=tokens,
            rounds=rounds,
            batch=state.settings.max_batch_size,
            threads=state.settings.threads,
            work_dir=Path(work),
            progress=lambda line: status.update(f"tuning {name}: {line}"),
            imatrix=imatrix,
            calibration=texts,
            calibration_name=calibration or "",
            settings=state.settings,
            services=services,
            service_items=service_items,
        )
    return report.to_dict()


def print_tune(report: dict[str, Any]) -> None:
    batch = report["batch"]
    listing = table(
        Column("FORMAT", key=True),
        Column("ID", key=True),
        "SIZE",
        "DECODE TOK/S ALONE",
        f"DECODE TOK/S (BATCH {batch})",
        "PREFILL TOK/S",
        "MS ALONE + IN BATCH",
        "PERPLEXITY",
        "FRANCE",
        "",
    )
    for row in report["results"]:
        note = "serving" if row["format"] == report["chosen"] else row["why_not"]
        if row["reference"]:
            note = f"reference; {note}" if note else "reference"
        listing.add_row(
            row["format"] + (" (imatrix)" if row.get("imatrix") else ""),
            row["digest"].removeprefix("sha256:")[:12],
            human_size(row["size_bytes"]),
            f"{row['single_decode_tokens_per_second']:.1f}",
            f"{row['decode_tokens_per_second']:.1f}",
            f"{row['prefill_tokens_per_second']:.1f}",
            f"{row['seconds_alone'] * 1000:.0f} + {row['seconds_in_batch'] * 1000:.0f}",
            f"{row['perplexity']:.3f}",
            "Paris" if row["says_paris"] else row["answer"][:30] or "-",
            note,
        )
    print_table(listing)
    services = list(report["results"][0].get("services") or {})
    if services:
        scores = table(Column("SERVICE", key=True), *(row["format"] for row in report["results"]))
        for service in services:
            cells = []
            reference = report["results"][0]["services"][service]
            for row in report["results"]:
                cell = f"{row['services'][service]:.1f}"
                p = row.get("services_lower_p", {}).get(service)
                if p is not None and row["services"][service] < reference:
                    cell += f" (lower, p {p:.2f})"
                cells.append(cell)
            scores.add_row(service, *cells)
        print_table(scores)
    matrix = report.get("imatrix") or {}
    if matrix:
        console.print(
            f"importance matrix: {matrix['tokens']} tokens of {matrix['calibration']} in "
            f"{matrix['chunks']} chunks ({matrix['seconds']} s)",
            markup=False,
            highlight=False,
        )
    console.print(
        f"{report['model']} is served as {report['chosen']} on this machine ({report['machine']})",
        highlight=False,
    )
    if report.get("machine_was_busy"):
        load = report["load"]
        console.print(
            f"note: the machine was busy during the timings (load average "
            f"{load['before']:.1f} and {load['after']:.1f} on {load['cpus']:.0f} CPUs), so they "
            "measured contention; run the tune again when it is quiet",
            markup=False,
            highlight=False,
        )


@app.command("tune")
def tune(
    name: Annotated[str, typer.Argument(help="A GGUF model in the store.")],
    weight_format: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="Candidate format (repeatable; default Q4_0 and Q8_0): F16, BF16, Q8_0, "
            "Q6_K, Q5_K_M, Q5_0, Q4_K_M, Q4_K_S, Q4_1, Q4_0, IQ4_NL.",
        ),
    ] = None,
    tokens: Annotated[int, typer.Option("--tokens", help="Decode steps per measurement.")] = 32,
    rounds: Annotated[int, typer.Option("--rounds", help="Alternating measurement rounds.")] = 2,
    reset: Annotated[
        bool, typer.Option("--reset", help="Forget the choice: serve the model as it is.")
    ] = False,
    imatrix: Annotated[
        str | None,
        typer.Option(
            "--imatrix",
            help="Calibration for the importance matrix of the low-bit candidates: a prepared "
            "dataset (its train split) or a file. Default: the shipped summarize development "
            "set (not the perplexity text).",
        ),
    ] = None,
    no_imatrix: Annotated[
        bool,
        typer.Option("--no-imatrix", help="Derive low-bit candidates without importance matrix."),
    ] = False,
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            help="A service whose development-set score a candidate must not lose (repeatable;"
            " default classify, extract, answer, summarize and translate).",
        ),
    ] = None,
    no_services: Annotated[
        bool, typer.Option("--no-services", help="Skip the service gate (minutes per version).")
    ] = False,
    service_items: Annotated[
        int | None,
        typer.Option(
            "--service-items", min=1, help="Items of each service set, spread over it (all)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
    background: Annotated[bool, typer.Option("--background", help=BACKGROUND_HELP)] = False,
) -> None:
    """Serve a GGUF model in the weight format this machine runs fastest.

    Derives each candidate format with llama.cpp's quantizer (stored as versions of the
    model, with their provenance; formats below 8 bits a weight with an importance matrix
    computed by llama.cpp's forward pass over a calibration text, as llama-quantize
    --imatrix would), measures batched prefill and decode speed, perplexity on a
    public-domain text and the France question next to the current version, and serves the
    one that answers a typical request (256 prompt tokens, 128 answer tokens) soonest, alone
    and in a full batch together, among those whose perplexity is within 3% and that keep
    the services' scores on their development sets (a candidate scoring lower fails when a
    paired permutation test gives p < 0.05), from now on, on this machine only. The model's
    current version stays what it was; NAME@ID loads any version. The server does this by
    itself for its default model, in the background, the first time it runs on a machine
    (the auto_tune setting); --reset keeps the model as it is, also from then on.

    JSON fields: model, machine, batch, tokens, threads, chosen, imatrix (calibration,
    tokens, chunks, tensors, seconds), load (before, after, cpus), machine_was_busy,
    results (format, digest, size_bytes, reference,
    decode_tokens_per_second, prefill_tokens_per_second, single_decode_tokens_per_second,
    single_prefill_tokens_per_second, seconds_alone, seconds_in_batch, seconds_per_request
    (alone + in batch), perplexity,
    answer, says_paris, eligible, why_not, imatrix, services (service -> main score),
    service_items (service -> per-item scores), services_lower_p (service -> one-sided p)).
    """
    if reset:
        from llmasos.toolchain.tune import keep_as_it_is

        was = state.store.tuning_choice(name)
        keep_as_it_is(state.store, name)
        console.print(
            f"'{state.store.canonical_name(name)}' is served as it is"
            + ("" if was is not None and was.digest != was.source else " (it was not tuned)"),
            highlight=False,
        )
        return
    if start_in_background(background):
        return
    if imatrix is not None and no_imatrix:
        raise InvalidRequestError("--imatrix and --no-imatrix exclude each other")
    if service and no_services:
        raise InvalidRequestError("--service and --no-services exclude each other")
    report = run_tune(
        name,
        weight_format,
        tokens,
        rounds,
        imatrix=not no_imatrix,
        calibration=imatrix,
        services=[] if no_services else service,
        service_items=service_items,
    )
    if as_json:
        print_json(report)
    else:
        print_tune(report)
