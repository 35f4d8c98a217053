"""What each node type does, through the OS's own doors.

`NodeRuntime` holds the parts a run may use (the kernel client, the services runner, the
tool system, the knowledge base); `execute` runs one node whose parameters are already
resolved and returns a `NodeOutcome`. ``llm`` generates on the kernel (grammar-constrained
JSON when the node has a ``schema``; each token is handed to ``on_token``), ``service`` calls
the services runner, ``tool`` goes through `ToolSet` (so every registered tool works, its
permission checked against the run's owner, its side effect keyed by the run and node),
``retrieval`` searches vector stores, ``http`` fetches a public address only (the SSRF guard
of `llmasos.net.fetch_public`), ``code`` runs Python in the OS sandbox through the runner of
the ``python_run`` tool (`llmasos.tools.code.CodeSandbox`; the run's owner needs the
``code`` scope), ``transform`` evaluates an expression or renders a template in Jinja's
sandbox. ``condition``, ``map``, ``human`` and ``workflow`` are the engine's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from llmasos.errors import LLMasOSError
from llmasos.kernel.interface import EngineClientInterface, GenerateRequest
from llmasos.types import SamplingParams, StructuredOutput
from llmasos.workflows.errors import NodeFailure

if TYPE_CHECKING:
    from llmasos.access.principal import Principal
    from llmasos.knowledge.stores import KnowledgeBase
    from llmasos.plugins import PluginRegistry
    from llmasos.services.runner import ServiceRunner
    from llmasos.tools.interface import ToolSystem

MAX_HTTP_BYTES: Final = 2_000_000
SAMPLING_KEYS: Final = ("temperature", "top_p", "max_tokens", "seed", "stop")


@dataclass
class NodeOutcome:
    output: Any
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class NodeRuntime:
    """The parts of the OS a workflow's nodes reach; None where this process has none."""

    engine: EngineClientInterface | None = None
    services: ServiceRunner | None = None
    tools: ToolSystem | None = None
    knowledge: KnowledgeBase | None = None
    principal_for: Callable[[int | None], Principal] | None = None
    registry: PluginRegistry | None = None
    """Where tools are found (None: the process's plugin registry)."""


@dataclass
class NodeCall:
    """One node's call: who runs it and under which key its side effects are stored."""

    run_id: str
    key: str
    user_id: int | None
    tenant: str
    on_token: Callable[[str], Awaitable[None]] | None = None


def _need(value: Any, what: str, where: str) -> Any:
    if value is None:
        raise NodeFailure(f"{where}: this server runs no {what}")
    return value


async def execute(
    kind: str, params: Mapping[str, Any], runtime: NodeRuntime, call: NodeCall, allow_http: bool
) -> NodeOutcome:
    where = f"node {call.key!r}"
    if kind == "transform":
        if "expression" in params:
            return NodeOutcome(params["expression"])
        return NodeOutcome(params["template"])
    if kind == "llm":
        return await _llm(params, _need(runtime.engine, "model", where), call, where)
    if kind == "service":
        runner = _need(runtime.services, "services runner", where)
        data = params.get("input") or {}
        if not isinstance(data, dict):
            raise NodeFailure(f"{where}: `input` must be an object")
        result = await runner.call(
            str(params["service"]),
            data,
            model=params.get("model"),
            parameters=params.get("parameters"),
            tenant=call.tenant,
        )
        return NodeOutcome(
            result.output, result.model, result.usage.prompt_tokens, result.usage.completion_tokens
        )
    if kind == "tool":
        return await _tool(params, runtime, call, where)
    if kind == "retrieval":
        knowledge = _need(runtime.knowledge, "knowledge base", where)
        ids = params["vector_store_ids"]
        ids = [ids] if isinstance(ids, str) else list(ids)
        page = await knowledge.search(
            call.user_id,
            ids,
            str(params["query"]),
            max_num_results=int(params.get("max_results", 5)),
        )
        results = [r.to_dict() for r in page.results]
        text = "\n\n".join(
            "".join(part.get("text", "") for part in r.get("content", [])) for r in results
        )
        return NodeOutcome({"results": results, "text": text})
    if kind == "http":
        if not allow_http:
            raise NodeFailure(f"{where}: http nodes are off for this workflow")
        from llmasos.net import fetch_public

        url = str(params["url"])
        body = await asyncio.to_thread(fetch_public, url, max_bytes=MAX_HTTP_BYTES)
        text = body.decode("utf-8", "replace")
        try:
            return NodeOutcome({"json": json.loads(text), "text": text})
        except json.JSONDecodeError:
            return NodeOutcome({"json": None, "text": text})
    if kind == "code":
        return await _code(params, runtime, call, where)
    raise NodeFailure(f"{where}: the engine runs {kind} nodes itself")


async def _llm(
    params: Mapping[str, Any], engine: EngineClientInterface, call: NodeCall, where: str
) -> NodeOutcome:
    messages: list[dict[str, Any]] = []
    if params.get("system"):
        messages.append({"role": "system", "content": str(params["system"])})
    messages.append({"role": "user", "content": str(params["prompt"])})
    given = {k: params[k] for k in SAMPLING_KEYS if params.get(k) is not None}
    schema = params.get("schema")
    if isinstance(schema, dict):
        given["structured"] = StructuredOutput(kind="json_schema", schema=schema)
        given.setdefault("max_tokens", 256)
    request = GenerateRequest(
        model=params.get("model"),
        messages=messages,
        sampling=SamplingParams(**given),
        explicit=frozenset(given),
        tenant=call.tenant,
    )
    pieces: list[str] = []
    outcome = NodeOutcome(None)
    finish = "stop"
    async for output in engine.generate(request):
        pieces.append(output.text)
        outcome.model = output.model
        if output.text and call.on_token is not None:
            await call.on_token(output.text)
        if output.finished:
            finish = output.finish_reason or "stop"
            outcome.prompt_tokens += output.prompt_tokens
            outcome.completion_tokens += output.completion_tokens
    text = "".join(pieces).strip()
    if not isinstance(schema, dict):
        outcome.output = text
        return outcome
    try:
        outcome.output = json.loads(text)
    except json.JSONDecodeError:
        cut = " (cut off at max_tokens; raise it)" if finish == "length" else ""
        raise NodeFailure(f"{where}: the model's output is not the JSON asked for{cut}") from None
    return outcome


async def _tool(
    params: Mapping[str, Any], runtime: NodeRuntime, call: NodeCall, where: str
) -> NodeOutcome:
    from llmasos.tools.interface import ToolContext
    from llmasos.tools.registry import ToolSet

    system = _need(runtime.tools, "tool system", where)
    principal_for = _need(runtime.principal_for, "principal lookup", where)
    name = str(params["tool"])
    context = ToolContext(
        principal=principal_for(call.user_id),
        system=system,
        task_id=f"workflow:{call.run_id}:{call.key}",
        step=0,
    )
    try:
        tools = await ToolSet.load(context, allowed=[name], registry=runtime.registry)
    except LLMasOSError as error:
        raise NodeFailure(f"{where}: {error.message}") from None
    result = await tools.call(name, params.get("arguments") or {}, context)
    if result.is_error:
        message = result.output.get("error") if isinstance(result.output, dict) else result.output
        raise NodeFailure(f"{where}: tool {name} failed: {message}")
    return NodeOutcome({"result": result.output, "effects": list(result.effects)})


async def _code(
    params: Mapping[str, Any], runtime: NodeRuntime, call: NodeCall, where: str
) -> NodeOutcome:
    """Run the node's ``code`` confined, ``input`` as JSON on its standard input; a failed
    run (exit status, time or memory limit) fails the node with the end of its stderr."""
    from llmasos.tools.code import PERMISSION, CodeSandbox

    system = _need(runtime.tools, "tool system", where)
    principal_for = _need(runtime.principal_for, "principal lookup", where)
    if not principal_for(call.user_id).allows_scope(PERMISSION):
        raise NodeFailure(
            f"{where}: code nodes need the `{PERMISSION}` scope, which the workflow's owner "
            "does not hold"
        )
    given = params.get("input")
    stdin = None if given is None else json.dumps(given, ensure_ascii=False, default=str).encode()
    try:
        result = await CodeSandbox.from_settings(system.settings).run_async(
            str(params["code"]), stdin=stdin
        )
    except LLMasOSError as error:  # ConfinementError: strict mode on a machine without it
        raise NodeFailure(f"{where}: {error.message}", code=error.code) from None
    if not result.ok:
        why = result.reason or f"exit status {result.exit_code}"
        tail = " | ".join(result.stderr.strip().splitlines()[-3:])[-500:]
        raise NodeFailure(f"{where}: the code failed ({why})" + (f": {tail}" if tail else ""))
    try:
        parsed = json.loads(result.stdout) if result.stdout.strip() else None
    except json.JSONDecodeError:
        parsed = None
    return NodeOutcome(
        {
            "exit_code": result.exit_code,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "truncated": result.stdout_truncated or result.stderr_truncated,
            "json": parsed,
        }
    )
