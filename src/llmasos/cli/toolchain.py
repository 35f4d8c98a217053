"""``llmasos finetune|prune|distill``: transform a model; the result is a new model in the store.

Each command runs on this machine at low priority (no server needed), shows a progress bar,
prints the before/after measurement and the registered name, and with ``--json`` the
report. The work is `llmasos.toolchain.finetune` and `llmasos.toolchain.compress`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llmasos.cli.data import registry
from llmasos.cli.jobs import BACKGROUND_HELP, start_in_background
from llmasos.cli.models import human_size
from llmasos.cli.output import JSON_OPTION_HELP, print_json
from llmasos.cli.root import app, audited, console, err_console, state

DEQUANTIZE_HELP = (
    "Consent to de-quantizing a quantized GGUF (such as the embedded smollm2) into float "
    "weights to train on; the result cannot be better than that source."
)
THREADS_HELP = "Torch threads (0: half the CPUs); the job runs at niceness 10 either way."


def default_name(base: str, suffix: str) -> str:
    stem = state.store.canonical_name(base).split("/")[-1].split(":")[0]
    return f"{stem}-{suffix}"


@contextlib.contextmanager
def progress_bar(quiet: bool) -> Iterator[Any]:
    """A rich progress bar fed by the toolchain's events (nothing shown with --json)."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
        transient=False,
    )
    with bar:
        task = bar.add_task("starting", total=None, loss="")

        def update(event: Any) -> None:
            if event.phase == "train":
                bar.update(
                    task,
                    description=f"epoch {event.epoch}",
                    completed=event.step,
                    total=event.total_steps,
                    loss=f"loss {event.loss:.3f}" if event.loss is not None else "",
                )
            else:
                bar.update(task, description=event.message or event.phase)

        yield update


def run_and_report(
    action: str, target: str, as_json: bool, call: Callable[[Any], Any], show: Callable[[Any], None]
) -> None:
    """Run one toolchain job under a progress bar and the audit log, then print its report."""
    with progress_bar(as_json) as update, audited(action, target):
        report = call(update)
    if as_json:
        print_json(report.to_dict())
    else:
        show(report)


@app.command("finetune")
def finetune_command(
    base: Annotated[str, typer.Argument(help="The model to start from (a store name).")],
    data: Annotated[str, typer.Option("--data", help="A prepared dataset (`llmasos data prep`).")],
    method: Annotated[str, typer.Option("--method", help="lora or full.")] = "lora",
    name: Annotated[
        str | None, typer.Option("--name", help="The new model's name (default BASE-DATA).")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the train split.")] = 3,
    lr: Annotated[
        float, typer.Option("--lr", help="Learning rate (0: 2e-4 for LoRA, 2e-5 full).")
    ] = 0.0,
    rank: Annotated[int, typer.Option("--rank", help="LoRA rank.")] = 16,
    alpha: Annotated[int, typer.Option("--alpha", help="LoRA alpha (scale = alpha/rank).")] = 32,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows per step.")] = 8,
    max_length: Annotated[
        int, typer.Option("--max-length", help="Tokens per row (longer rows are cut).")
    ] = 512,
    patience: Annotated[
        int,
        typer.Option(
            "--patience", help="Stop after this many epochs without a better validation loss."
        ),
    ] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the batch order.")] = 0,
    dequantize: Annotated[bool, typer.Option("--dequantize", help=DEQUANTIZE_HELP)] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Discard the checkpoint of an earlier run.")
    ] = False,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")
    ] = 50,
    max_steps: Annotated[
        int, typer.Option("--max-steps", help="Stop after this many steps in this run (0: none).")
    ] = 0,
    threads: Annotated[int, typer.Option("--threads", help=THREADS_HELP)] = 0,
    background: Annotated[bool, typer.Option("--background", help=BACKGROUND_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Fine-tune a model (PEFT LoRA or full) and register it as a new model.

    Trains on the dataset's train split, checks the validation loss each epoch (the best
    epoch is kept; --patience stops early), checkpoints as it goes (running the same command
    again resumes an interrupted run), measures the test split before and after (accuracy
    for classification, else perplexity), and stores the merged model as NAME: an F16 GGUF
    (current; llama.cpp serves it) and an HF safetensors version, after checking both
    backends give the same greedy answers. The LoRA adapter and the report (JSON and a loss
    plot) stay in the run directory. Interrupted, nothing is registered.

    JSON fields: model, base, dataset, run_id, run_dir, config, metric, before, after,
    epochs_run, best_epoch, stopped_early, resumed_from_step, steps, train_tokens,
    train_seconds, tokens_per_second, peak_memory_bytes, trainable_parameters, dequantized,
    history, versions, gguf_agreement.
    """
    if start_in_background(background):
        return
    from llmasos.toolchain.finetune import FinetuneConfig, finetune

    target = name or default_name(base, data)
    config = FinetuneConfig(
        method=method,  # type: ignore[arg-type]
        epochs=epochs,
        lr=lr,
        rank=rank,
        alpha=alpha,
        batch_size=batch_size,
        max_length=max_length,
        patience=patience,
        seed=seed,
    )
    run_and_report(
        "model.finetune",
        target,
        as_json,
        lambda update: finetune(
            state.store,
            registry(),
            base,
            data,
            name=target,
            home=state.settings.home,
            config=config,
            dequantize=dequantize,
            restart=restart,
            threads=threads,
            checkpoint_every=checkpoint_every,
            max_steps=max_steps,
            progress=update,
        ),
        print_finetune,
    )


def print_finetune(report: Any) -> None:
    fmt = "{:.1%}" if report.metric == "accuracy" else "{:.3f}"
    console.print(
        f"registered '{state.store.canonical_name(report.model)}' "
        f"({report.versions[-1].removeprefix('sha256:')[:12]})\n"
        f"test {report.metric}: {fmt.format(report.before)} before, "
        f"{fmt.format(report.after)} after\n"
        f"{report.steps} steps, {report.epochs_run} epochs (best {report.best_epoch}"
        f"{', stopped early' if report.stopped_early else ''}), "
        f"{report.tokens_per_second:.0f} tokens/s, peak memory "
        f"{human_size(report.peak_memory_bytes)}"
        + (f"; resumed from step {report.resumed_from_step}" if report.resumed_from_step else "")
        + (
            f"\nGGUF and transformers agree on {report.gguf_agreement} greedy answers"
            if report.gguf_agreement
            else ""
        )
        + f"\nreport: {report.run_dir}/report.json",
        highlight=False,
    )


def print_compress(report: Any) -> None:
    size = f"{report.parameters_before / 1e6:.1f}M -> {report.parameters_after / 1e6:.1f}M"
    nonzero = report.nonzero_after / max(1, report.parameters_after)
    console.print(
        f"registered '{state.store.canonical_name(report.model)}' "
        f"({report.versions[-1].removeprefix('sha256:')[:12]}): {report.how}\n"
        f"parameters {size} ({nonzero:.0%} nonzero)"
        + (f", removed layers {report.removed_layers}" if report.removed_layers else "")
        + f"\nperplexity on the public-domain text: {report.perplexity_before:.3f} before, "
        f"{report.perplexity_after:.3f} after"
        + (
            f" ({report.gguf_perplexity_after:.3f} as served, in llama.cpp)"
            if report.gguf_perplexity_after
            else ""
        )
        + (
            f"\nGGUF and transformers agree on {report.gguf_agreement} greedy answers"
            if report.gguf_agreement and not report.gguf_agreement.endswith("/0")
            else ""
        ),
        highlight=False,
    )


COMPRESS_JSON = (
    "JSON fields: model, source, how, parameters_before, parameters_after, nonzero_after, "
    "perplexity_before, perplexity_after, gguf_perplexity_after, removed_layers, seconds, "
    "peak_memory_bytes, history, versions, gguf_agreement."
)


@app.command("prune")
def prune_command(
    model: Annotated[str, typer.Argument(help="The model to prune (a store name).")],
    layers: Annotated[
        int, typer.Option("--layers", help="Remove this many decoder blocks (structured).")
    ] = 0,
    sparsity: Annotated[
        float,
        typer.Option("--sparsity", help="Zero this fraction of each decoder matrix (magnitude)."),
    ] = 0.0,
    name: Annotated[
        str | None, typer.Option("--name", help="The new model's name (default MODEL-pruned).")
    ] = None,
    dequantize: Annotated[bool, typer.Option("--dequantize", help=DEQUANTIZE_HELP)] = False,
    threads: Annotated[int, typer.Option("--threads", help=THREADS_HELP)] = 0,
    background: Annotated[bool, typer.Option("--background", help=BACKGROUND_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Prune a model (whole layers or smallest weights) and register it as a new model.

    --layers N removes the N decoder blocks whose output differs least from their input on
    the shipped public-domain text (never the first or last); --sparsity S zeroes the
    fraction S of smallest-magnitude weights in every decoder matrix (same file size and
    dense speed; a step before distillation). Perplexity on that text is measured before and
    after; the result is stored as an F16 GGUF (current) and an HF version.

    """
    if start_in_background(background):
        return
    from llmasos.toolchain.compress import prune

    suffix = f"pruned{layers}" if layers else f"sparse{round(sparsity * 100)}"
    target = name or default_name(model, suffix)
    run_and_report(
        "model.prune",
        target,
        as_json,
        lambda update: prune(
            state.store,
            model,
            name=target,
            home=state.settings.home,
            layers=layers,
            sparsity=sparsity,
            dequantize=dequantize,
            threads=threads,
            progress=update,
        ),
        print_compress,
    )


prune_command.__doc__ = f"{prune_command.__doc__}{COMPRESS_JSON}\n"


@app.command("distill")
def distill_command(
    teacher: Annotated[str, typer.Option("--teacher", help="The model to learn from.")],
    student: Annotated[str, typer.Option("--student", help="The model to train.")],
    data: Annotated[str, typer.Option("--data", help="A prepared dataset (its train split).")],
    name: Annotated[
        str | None, typer.Option("--name", help="The new model's name (default STUDENT-distilled).")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the train split.")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 5e-5,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Softens both distributions.")
    ] = 2.0,
    alpha: Annotated[
        float, typer.Option("--alpha", help="Weight of the KL term (1-alpha: next-token loss).")
    ] = 0.5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows per step.")] = 8,
    max_steps: Annotated[
        int, typer.Option("--max-steps", help="Stop after this many steps (0: none).")
    ] = 0,
    dequantize: Annotated[bool, typer.Option("--dequantize", help=DEQUANTIZE_HELP)] = False,
    threads: Annotated[int, typer.Option("--threads", help=THREADS_HELP)] = 0,
    background: Annotated[bool, typer.Option("--background", help=BACKGROUND_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Distill a teacher into a student (KL on the teacher's tokens) and register it.

    Trains the student's layers on the dataset's train split towards the teacher's token
    distributions at --temperature, mixed with the next-token loss; teacher and student
    share a tokenizer (e.g. a model and its pruned copy). Perplexity on the shipped
    public-domain text is measured before and after; the result is stored like `prune`'s.

    """
    if start_in_background(background):
        return
    from llmasos.toolchain.compress import distill

    target = name or default_name(student, "distilled")
    run_and_report(
        "model.distill",
        target,
        as_json,
        lambda update: distill(
            state.store,
            registry(),
            teacher,
            student,
            data,
            name=target,
            home=state.settings.home,
            epochs=epochs,
            lr=lr,
            temperature=temperature,
            alpha=alpha,
            batch_size=batch_size,
            max_steps=max_steps,
            dequantize=dequantize,
            threads=threads,
            progress=update,
        ),
        print_compress,
    )


distill_command.__doc__ = f"{distill_command.__doc__}{COMPRESS_JSON}\n"


@app.command("quantize")
def quantize_command(
    model: Annotated[str, typer.Argument(help="A GGUF model in the store.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The weight format: F16, BF16, Q8_0, Q6_K, Q5_K_M, Q5_0, Q4_K_M, Q4_K_S, "
            "Q4_1, Q4_0, IQ4_NL.",
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="The new model's name (default MODEL-FORMAT).")
    ] = None,
    imatrix: Annotated[
        str | None,
        typer.Option(
            "--imatrix",
            help="Calibration data for an importance matrix: a prepared dataset (its train "
            "split) or a text/jsonl file. Computed by llama.cpp's forward pass; the quantizer "
            "then rounds the weights that meet large activations more carefully.",
        ),
    ] = None,
    no_eval: Annotated[
        bool, typer.Option("--no-eval", help="Skip the perplexity before and after.")
    ] = False,
    threads: Annotated[int, typer.Option("--threads", help="Threads (0: all CPUs).")] = 0,
    background: Annotated[bool, typer.Option("--background", help=BACKGROUND_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Quantize a GGUF model with llama.cpp's own quantizer; register it under a new name.

    An already-quantized source (such as the embedded smollm2, Q4_1) is de-quantized by
    llama.cpp first, with a warning: the result cannot be better than the source. With
    --imatrix, the importance matrix is computed on the float weights (an F16 de-quantized
    copy for a quantized source) and kept in llama-imatrix's GGUF format under
    $LLMASOS_HOME/toolchain/imatrix/. Prints the size and the perplexity on the shipped
    public-domain text before and after.

    JSON fields: model, digest, source, source_format, format, size_before, size_after,
    warning, imatrix (dataset, chunks, tokens, tensors, file), perplexity_before,
    perplexity_after (without --no-eval).
    """
    if start_in_background(background):
        return
    import tempfile

    from llmasos.toolchain.quantize import format_name, quantize_model

    weight_format = format_name(to)
    target = name or default_name(model, weight_format.lower().replace("_", "-"))
    texts: list[str] = []
    if imatrix is not None:
        from llmasos.toolchain.model_eval import load_eval_data

        calibration = load_eval_data(registry(), imatrix, "perplexity", split="train")
        texts = [item.text for item in calibration.items]
    state.settings.models_dir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=".quantize-", dir=state.settings.models_dir) as work,
        console.status(f"quantizing {model} to {weight_format} ..."),
        audited("model.quantize", target),
    ):
        report = quantize_model(
            state.store,
            model,
            weight_format,
            new_name=target,
            work_dir=Path(work),
            threads=threads,
            measure=not no_eval,
            imatrix_texts=texts,
            imatrix_dataset=imatrix or "",
            imatrix_file=state.settings.home / "toolchain" / "imatrix" / f"{target}.gguf"
            if imatrix
            else None,
        )
    if as_json:
        print_json(report)
        return
    if report["warning"]:
        err_console.print(f"warning: {report['warning']}", highlight=False)
    line = (
        f"registered '{report['model']}' ({report['digest'].removeprefix('sha256:')[:12]}): "
        f"{report['source_format']} -> {report['format']}, "
        f"{human_size(report['size_before'])} -> {human_size(report['size_after'])}"
    )
    if report["imatrix"]:
        matrix = report["imatrix"]
        line += (
            f"\nimportance matrix: {matrix['tensors']} tensors from {matrix['chunks']} chunks "
            f"({matrix['tokens']} tokens) of {matrix['dataset']}; {matrix['file']}"
        )
    if "perplexity_after" in report:
        line += (
            f"\nperplexity on the public-domain text: {report['perplexity_before']:.3f} before, "
            f"{report['perplexity_after']:.3f} after"
        )
    console.print(line, highlight=False)
