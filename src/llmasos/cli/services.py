"""``llmasos call SERVICE FILE|-`` and ``llmasos services``: named services from the shell.

``call`` reads the main text from FILE (or stdin for ``-``) into the service's text input,
takes other inputs as ``--param key=value`` (typed by the service's input schema: a comma
list for arrays, JSON for objects), and prints the output (text, or JSON when the service
has an output schema); ``--json`` prints the whole result with usage. It talks to a running
server when one answers, else runs the kernel in this process.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from llmasos.cli.output import print_json
from llmasos.cli.remote import call_server, server_url
from llmasos.cli.root import app, console, state
from llmasos.errors import InvalidRequestError
from llmasos.services.interface import ServiceDefinition, coerce_input_value
from llmasos.services.registry import ServiceRegistry


def read_text(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    path = Path(source).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRequestError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidRequestError(f"cannot read {path}: {error}") from None


def build_input(
    definition: ServiceDefinition, text: str | None, params: list[str]
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if text is not None:
        if definition.text_input is None:
            raise InvalidRequestError(
                f"service {definition.name} takes no main text; give its inputs with --param"
            )
        data[definition.text_input] = text
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidRequestError(f"--param takes KEY=VALUE, not {item!r}")
        data[key.strip()] = coerce_input_value(definition, key.strip(), value)
    return data


def _parameters(items: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidRequestError(f"--option takes NAME=VALUE, not {item!r}")
        try:
            result[key.strip()] = json.loads(value)
        except ValueError:
            result[key.strip()] = value
    return result


def run_local(
    service: str,
    data: dict[str, Any],
    model: str | None,
    parameters: dict[str, Any],
    method: str | None = None,
) -> dict[str, Any]:
    from llmasos.kernel.client import InProcessEngineClient
    from llmasos.services.runner import runner_for

    settings = state.settings

    async def go() -> dict[str, Any]:
        engine = InProcessEngineClient(settings, state.store)
        try:
            runner = runner_for(engine, settings.home, state.store, settings.default_model)
            result = await runner.call(
                service, data, model=model, parameters=parameters, method=method
            )
            return result.to_dict()
        finally:
            await engine.close()

    return asyncio.run(go())


@app.command()
def call(
    service: Annotated[str, typer.Argument(help="Service name (see `llmasos services`).")],
    source: Annotated[
        str | None, typer.Argument(help="File with the main text, or - for stdin.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="KEY=VALUE input (labels=a,b,c) (repeatable)."),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="NAME=VALUE sampling parameter (repeatable)."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model to use.")] = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            help="One of the service's methods (summarize: extractive or generate; default: "
            "the one measured best for the model).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result.")] = False,
) -> None:
    """Call a named service on a text."""
    definition = ServiceRegistry.load(state.settings.home).get(service)
    text = read_text(source) if source is not None else None
    data = build_input(definition, text, param or [])
    parameters = _parameters(option or [])
    if server_url(state.settings) is not None:
        body: dict[str, Any] = {**data, "parameters": parameters}
        if model:
            body["model"] = model
        if method:
            body["method"] = method
        result = call_server(state.settings, "POST", f"/v1/services/{service}", json=body)
    else:
        result = run_local(service, data, model, parameters, method)
    if as_json:
        print_json(result)
        return
    output = result["output"]
    if isinstance(output, str):
        console.print(output, markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(json.dumps(output, ensure_ascii=False), markup=False, highlight=False)


@app.command()
def services(
    as_json: Annotated[bool, typer.Option("--json", help="Print definitions as JSON.")] = False,
) -> None:
    """List the named services (built-in, plugins, $LLMASOS_HOME/services)."""
    registry = ServiceRegistry.load(state.settings.home)
    if as_json:
        print_json([d.to_dict() for d in registry.list()])
        return
    width = max((len(name) for name in registry.names()), default=4)
    for definition in registry.list():
        inputs = ", ".join(definition.input_schema.get("properties", {}))
        console.print(
            f"{definition.name:<{width}}  {definition.description}  [{inputs}]",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    for error in registry.errors:
        console.print(f"skipped: {error}", style="yellow", markup=False, highlight=False)
