"""``llmasos remote add|ls|rm``: OpenAI-compatible endpoints served as models.

A remote is written to ``$LLMASOS_HOME/remotes.toml`` (`llmasos.distributed.remote`); a
running server picks the change up on its next request. The key is never stored, only the
name of the environment variable the server reads it from. (Finding a running LLMasOS
server from the CLI is `llmasos.cli.remote`, a different thing.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.root import app, audited, console, state
from llmasos.errors import InvalidRequestError, LLMasOSError

if TYPE_CHECKING:
    from llmasos.distributed.remote.registry import RemoteRegistry

remote_app = typer.Typer(
    help="Serve OpenAI-compatible endpoints (vLLM, Ollama, llama.cpp, another LLMasOS, a "
    "hosted provider) as models.",
    no_args_is_help=True,
)
app.add_typer(remote_app, name="remote")


def _registry() -> RemoteRegistry:
    from llmasos.distributed.remote.registry import RemoteRegistry

    return RemoteRegistry.for_settings(state.settings)


@remote_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The model name clients will use here.")],
    url: Annotated[
        str,
        typer.Argument(help="The endpoint's OpenAI base URL (http://host:port/v1; /v1 if none)."),
    ],
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env",
            help="Environment variable holding the endpoint's key (the key is never stored).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="The model name at the endpoint (default: NAME)."),
    ] = None,
    max_concurrency: Annotated[
        int,
        typer.Option(
            "--max-concurrency", help="Requests in flight to it at once; more wait, fairly."
        ),
    ] = 4,
    timeout: Annotated[
        float,
        typer.Option("--timeout", help="Seconds to wait for its response and between events."),
    ] = 300.0,
    context_length: Annotated[
        int,
        typer.Option(
            "--context-length", help="Its context window, for the Responses API's compaction."
        ),
    ] = 8192,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a remote of the same name.")
    ] = False,
) -> None:
    """Register an OpenAI-compatible endpoint as the model NAME."""
    from llmasos.distributed.remote.registry import RemoteProvider

    provider = RemoteProvider.create(
        name,
        url,
        model=model,
        api_key_env=api_key_env,
        max_concurrency=max_concurrency,
        timeout=timeout,
        context_length=context_length,
    )
    try:
        state.store.manifest(provider.name)
    except LLMasOSError:
        pass
    else:
        raise InvalidRequestError(
            f"{provider.name} is a model in the store; give the remote another name"
        )
    with audited("remote.add", provider.name):
        _registry().add(provider, replace=replace)
    console.print(f"added remote {provider.name} -> {provider.url} (model {provider.model})")


@remote_app.command("ls")
def list_remotes(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List the remotes.

    --json fields: name, url, model, api_key_env, max_concurrency, timeout, context_length.
    """
    remotes = _registry().list()
    if as_json:
        print_json([p.public() for p in remotes])
        return
    rows = table(Column("NAME", key=True), Column("URL", key=True), "MODEL", "KEY FROM", "MAX")
    for p in remotes:
        key_from = f"${p.api_key_env}" if p.api_key_env else "-"
        rows.add_row(p.name, p.url, p.model, key_from, str(p.max_concurrency))
    print_table(rows)


@remote_app.command("rm")
def remove(name: Annotated[str, typer.Argument(help="The remote to remove.")]) -> None:
    """Remove a remote (requests for it stop at once)."""
    with audited("remote.remove", name):
        provider = _registry().remove(name)
    console.print(f"removed remote {provider.name}")
