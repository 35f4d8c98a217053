"""``llmasos bench …``: performance measurements. ``bench backend`` times one backend's steps.

``llmasos bench backend MODEL_OR_PATH`` decodes through `BackendInterface` (one stream, and
with ``--batch B`` B streams together) next to raw llama-cpp-python on the same GGUF, prints a
table and optionally writes JSON. MODEL_OR_PATH is a file or directory, else a model name in
the store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmasos.cli.app import app, console, state
from llmasos.errors import InvalidRequestError, ModelNotFoundError

bench_app = typer.Typer(help="Measure performance (backends, serving).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


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

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
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
