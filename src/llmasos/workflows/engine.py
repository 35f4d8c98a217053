"""Runs workflows durably: each node's record is committed when it starts and when it ends.

`WorkflowEngine.start` checks a run's input against the workflow's input schema (a 400
naming the field), stores the run and executes it as an asyncio task. Execution walks the
DAG in waves: every node whose dependencies have finished runs (concurrently), and its step
row is committed before the next wave. A run resumed after a crash (`resume_unfinished` at
server start) reads its steps back and runs only what has no finished record, so a
completed node — side effect or not — never runs twice. A node that was *running* when the
process died runs again; tools see the same idempotency key (run and node) both times.

Per node: ``timeout_s``, ``retries`` with exponential ``backoff_s``, ``on_error`` (``fail``
the run, use a ``default`` output, or run the ``fallback`` nodes) and ``cache`` (a finished
step of the owner's runs with the same type and resolved parameters is reused). A ``human``
node stops the run as ``waiting`` until `answer`; ``cancel`` stops it between nodes and aborts
the node in flight. Events (node started, llm tokens, node finished, run finished) go to
whoever `subscribe`\\ s.

Several servers may share one database: a run executes under a lease (`WorkflowStore.claim`,
``LEASE_SECONDS``, renewed a third of the way through), so exactly one engine runs it; a
cancel made on another server reaches the executing one at its next renewal, and the runs
of a server that stopped are taken over by the others once their lease expires
(`adopt_orphans`, from the scheduler's loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import jsonschema

from llmasos.errors import InvalidRequestError, LLMasOSError, NotFoundError
from llmasos.storage.schema import utcnow
from llmasos.workflows.definition import Node, Workflow, load_workflow, templated
from llmasos.workflows.errors import NodeFailure, WorkflowError
from llmasos.workflows.expressions import evaluate, render, resolve
from llmasos.workflows.nodes import NodeCall, NodeOutcome, NodeRuntime, execute
from llmasos.workflows.store import ACTIVE, RunRecord, StepRecord, StepWrite, WorkflowStore

logger = logging.getLogger(__name__)
MAX_DEPTH: Final = 4
DONE: Final = ("succeeded", "skipped", "failed")
PURE: Final = ("transform", "condition")
"""Node types whose output follows from recorded steps alone (no outside world, no model)."""
EVENT_QUEUE: Final = 1000
PARSED_CACHE: Final = 256
LEASE_SECONDS: Final = 30.0


class _Waiting(Exception):
    """A human node is waiting for an answer: the run pauses here."""


@dataclass
class _Graph:
    """One workflow being executed within a run (the run's own, or a sub-workflow's)."""

    run: RunRecord
    workflow: Workflow
    inputs: dict[str, Any]
    prefix: str
    depth: int
    steps: dict[str, StepRecord]

    def key(self, name: str) -> str:
        return self.prefix + name


def _tenant(user_id: int | None, names: Callable[[int | None], str] | None) -> str:
    if names is not None:
        return names(user_id)
    return "local" if user_id is None else f"user:{user_id}"


def validate_inputs(workflow: Workflow, inputs: Any) -> dict[str, Any]:
    """The input checked against the workflow's schema, defaults filled in (400 naming the
    field otherwise)."""
    if not isinstance(inputs, dict):
        raise InvalidRequestError("a run's input must be a JSON object", param="input")
    schema = workflow.input_schema()
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(inputs))
    if error is not None:
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required":
            missing = [n for n in error.validator_value if n not in error.instance]
            path = [*path, *missing[:1]]
        elif error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(schema["properties"]))
            path = [*path, *extra[:1]]
        name = ".".join(path) or "input"
        raise InvalidRequestError(
            f"workflow {workflow.name}: input {name!r}: {error.message[:300]}", param=name
        )
    values = {k: spec["default"] for k, spec in workflow.inputs.items() if "default" in spec}
    values.update(inputs)
    return values


class WorkflowEngine:
    def __init__(
        self,
        store: WorkflowStore,
        runtime: NodeRuntime,
        *,
        tenant_name: Callable[[int | None], str] | None = None,
        lookup: Callable[[int | None, str], Workflow] | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.store = store
        self.lookup = lookup or self._stored
        self.runtime = runtime
        self.tenant_name = tenant_name
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._listeners: dict[str, list[asyncio.Queue[dict[str, Any]]]] = {}
        self._deferred: dict[str, list[StepWrite]] = {}
        self._cancelled: set[str] = set()
        self.deferred_types: tuple[str, ...] = PURE
        """Node types whose step rows wait for the run's next commit (see `_record`)."""
        self._parsed: dict[tuple[str, str], Workflow] = {}
        self.node_timings: list[float] = []
        """Engine time per node (seconds, excluding the node's own work), for the benchmark."""
        self.measure = False
        self.instance = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"
        """This engine's name in run leases (host, process, a random tag)."""
        self.lease_seconds = lease_seconds

    def _stored(self, user_id: int | None, name: str) -> Workflow:
        return self.store.get(user_id, name).workflow()

    # -- starting, stopping ----------------------------------------------------------------

    def start(
        self, user_id: int | None, workflow: Workflow, inputs: Any, trigger: str = "manual"
    ) -> RunRecord:
        values = validate_inputs(workflow, inputs)
        run = self.store.create_run(user_id, workflow, values, trigger)
        self._launch(run)
        return run

    def _launch(self, run: RunRecord) -> None:
        if run.id in self._tasks and not self._tasks[run.id].done():
            return
        task = asyncio.get_running_loop().create_task(self._execute(run), name=f"run {run.id}")
        self._tasks[run.id] = task
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for run_id, known in list(self._tasks.items()):
            if known is task:
                del self._tasks[run_id]

    async def resume_unfinished(self) -> int:
        """Start again every run a crash interrupted; returns how many were launched (a run
        another live server holds the lease of stays with it; the lease of a process of this
        host that is gone is freed at once, so a restart does not wait for it to expire)."""
        self.store.free_leases(_dead_here)
        runs = self.store.unfinished_runs()
        for run in runs:
            self._launch(run)
        return len(runs)

    def adopt_orphans(self) -> int:
        """Take over the runs no engine holds any more (their server stopped); how many."""
        runs = [r for r in self.store.orphaned_runs(self.lease_seconds) if r.id not in self._tasks]
        for run in runs:
            self._launch(run)
        return len(runs)

    async def _keep_lease(self, run_id: str, task: asyncio.Task[None]) -> None:
        """Renew the run's lease while it executes; stop the run when another server
        cancelled it or the lease was lost (another engine took the run over)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            status = await asyncio.to_thread(
                self.store.renew, run_id, self.instance, self.lease_seconds
            )
            if status is None or status == "cancelled":
                why = "cancelled elsewhere" if status else "its lease was taken over"
                logger.info("workflow run %s stops here: %s", run_id, why)
                self._cancelled.add(run_id)
                task.cancel()
                return

    async def wait(self, run_id: str) -> None:
        task = self._tasks.get(run_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    def cancel(self, user_id: int | None, run_id: str) -> RunRecord:
        run = self.store.run(user_id, run_id)
        if run.status not in ACTIVE:
            raise InvalidRequestError(
                f"run {run_id} is {run.status}; only a queued, running or waiting run can be "
                "cancelled",
                code="run_finished",
            )
        self._cancelled.add(run_id)
        self._deferred.pop(run_id, None)
        self.store.set_status(run_id, "cancelled", error="cancelled", only_from=ACTIVE)
        task = self._tasks.get(run_id)
        if task is not None:
            task.cancel()
        self._emit(run_id, {"type": "run.finished", "status": "cancelled"})
        return self.store.run(user_id, run_id)

    def resume(self, user_id: int | None, run_id: str) -> RunRecord:
        """Run a failed, cancelled or waiting run again from its last finished node."""
        run = self.store.run(user_id, run_id)
        if run.status == "succeeded":
            raise InvalidRequestError(f"run {run_id} has succeeded", code="run_finished")
        if run.status in ("queued", "running"):
            raise InvalidRequestError(f"run {run_id} is {run.status} already", code="run_active")
        if run.status in ("failed", "cancelled"):
            self.store.clear_failed_steps(run_id)
        self._cancelled.discard(run_id)
        self.store.set_status(run_id, "queued")
        run = self.store.run(user_id, run_id)
        self._launch(run)
        return run

    def answer(self, user_id: int | None, run_id: str, node: str, answer: Any) -> RunRecord:
        self.store.answer(user_id, run_id, node, answer)
        self._emit(run_id, {"type": "node.finished", "node": node, "status": "succeeded"})
        return self.resume(user_id, run_id)

    async def close(self) -> None:
        """Stop executing (runs stay running in the database and resume at next start)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- events ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def listen(self, run_id: str) -> Any:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(EVENT_QUEUE)
        self._listeners.setdefault(run_id, []).append(queue)
        try:
            yield queue
        finally:
            listeners = self._listeners.get(run_id, [])
            if queue in listeners:
                listeners.remove(queue)
            if not listeners:
                self._listeners.pop(run_id, None)

    def _emit(self, run_id: str, event: dict[str, Any]) -> None:
        for queue in self._listeners.get(run_id, []):
            with contextlib.suppress(asyncio.QueueFull):  # a slow reader loses tokens only
                queue.put_nowait({"run_id": run_id, **event})

    async def events(self, user_id: int | None, run_id: str) -> AsyncIterator[dict[str, Any]]:
        """The run's events: what already happened (from its steps), then live ones until
        it finishes or waits."""
        run = self.store.run(user_id, run_id)
        with self.listen(run_id) as queue:
            for key, step in self.store.steps(run_id).items():
                yield {"type": "node.started", "run_id": run_id, "node": key}
                if step.status == "waiting":
                    prompt = (step.inputs or {}).get("prompt")
                    yield {"type": "node.waiting", "run_id": run_id, "node": key, "prompt": prompt}
                if step.status in DONE:
                    yield _finished_event(run_id, key, step.status, step.output, step.error)
            run = self.store.run(user_id, run_id)
            if run.status not in ("queued", "running"):
                yield {
                    "type": "run.finished",
                    "run_id": run_id,
                    "status": run.status,
                    "output": run.output,
                    "error": run.error,
                }
                return
            while True:
                event = await queue.get()
                yield event
                if event["type"] == "run.finished":
                    return

    # -- execution -------------------------------------------------------------------------

    async def _execute(self, run: RunRecord) -> None:
        if not self.store.claim(run.id, self.instance, self.lease_seconds):
            return  # another server executes it
        task = asyncio.current_task()
        assert task is not None
        keeper = asyncio.get_running_loop().create_task(self._keep_lease(run.id, task))
        try:
            await self._execute_leased(run)
        finally:
            keeper.cancel()
            self.store.release(run.id, self.instance)

    async def _execute_leased(self, run: RunRecord) -> None:
        try:
            if not self.store.set_status(run.id, "running", only_from=("queued", "running")):
                return
            workflow = self._parse(run)
            graph = _Graph(run, workflow, run.inputs, "", 0, self.store.steps(run.id))
            output = await self._graph(graph)
        except _Waiting:
            self.store.set_status(
                run.id, "waiting", only_from=("running",), deferred=self._take(run.id)
            )
            self._emit(run.id, {"type": "run.finished", "status": "waiting"})
        except asyncio.CancelledError:
            self._deferred.pop(run.id, None)
            raise
        except LLMasOSError as error:
            message = error.message
            self.store.set_status(
                run.id, "failed", error=message, only_from=("running",), deferred=self._take(run.id)
            )
            self._emit(run.id, {"type": "run.finished", "status": "failed", "error": message})
        except Exception as error:
            logger.exception("workflow run %s failed", run.id)
            message = f"internal error: {type(error).__name__}: {error}"
            self._deferred.pop(run.id, None)
            self.store.set_status(run.id, "failed", error=message, only_from=("running",))
            self._emit(run.id, {"type": "run.finished", "status": "failed", "error": message})
        else:
            self.store.set_status(
                run.id,
                "succeeded",
                output=output,
                only_from=("running",),
                deferred=self._take(run.id),
            )
            self._emit(run.id, {"type": "run.finished", "status": "succeeded", "output": output})

    def _parse(self, run: RunRecord) -> Workflow:
        """The run's definition, parsed once per distinct source."""
        key = (run.workflow, hashlib.sha256(run.source.encode()).hexdigest())
        workflow = self._parsed.get(key)
        if workflow is None:
            if len(self._parsed) >= PARSED_CACHE:
                self._parsed.clear()
            workflow = self._parsed[key] = load_workflow(run.source, name=run.workflow)
        return workflow

    def _scope(self, graph: _Graph, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        nodes: dict[str, Any] = {}
        for name in graph.workflow.nodes:
            step = graph.steps.get(graph.key(name))
            if step is None:
                nodes[name] = {"output": None, "status": "pending", "error": None}
            else:
                nodes[name] = {"output": step.output, "status": step.status, "error": step.error}
        return {"inputs": graph.inputs, "nodes": nodes, **(extra or {})}

    async def _graph(self, graph: _Graph) -> Any:
        workflow = graph.workflow
        deps = {name: workflow.dependencies(node) for name, node in workflow.nodes.items()}
        while True:
            status = {
                name: graph.steps[graph.key(name)].status
                for name in workflow.nodes
                if graph.key(name) in graph.steps
            }
            if any(s == "waiting" for s in status.values()):
                raise _Waiting
            pending = [n for n in workflow.order if status.get(n) not in DONE]
            if not pending:
                break
            ready = [n for n in pending if all(status.get(d) in DONE for d in deps[n])]
            if not ready:
                raise _Waiting
            if graph.run.id in self._cancelled:
                raise asyncio.CancelledError
            results = await asyncio.gather(
                *(self._node(graph, workflow.nodes[name], status) for name in ready),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        return (
            resolve(workflow.outputs, self._scope(graph), "outputs")
            if workflow.outputs
            else {name: self._scope(graph)["nodes"][name]["output"] for name in workflow.order[-1:]}
        )

    def _skipped(self, graph: _Graph, node: Node, status: dict[str, str]) -> str | None:
        """Why ``node`` does not run this time, or None when it does."""
        workflow = graph.workflow
        for other in workflow.nodes.values():
            if other.type == "condition" and status.get(other.name) == "succeeded":
                taken = graph.steps[graph.key(other.name)].output or {}
                branch = "then" if taken.get("result") else "else"
                names = other.params.get("else" if branch == "then" else "then") or []
                names = [names] if isinstance(names, str) else names
                if node.name in names:
                    return f"the condition {other.name} took its {branch} branch"
            if node.name in other.fallback and status.get(other.name) != "failed":
                return f"{other.name} did not fail"
        for dep in workflow.dependencies(node):
            if status.get(dep) == "skipped":
                return f"{dep} was skipped"
            if status.get(dep) == "failed" and node.name not in workflow.nodes[dep].fallback:
                return f"{dep} failed"
        return None

    async def _record(
        self,
        graph: _Graph,
        key: str,
        node: Node,
        status: str,
        outcome: NodeOutcome | None = None,
        error: str | None = None,
        attempts: int = 1,
        cache_key: str | None = None,
        started_at: datetime | None = None,
    ) -> None:
        """Record a finished node. A pure node (transform, condition) or a skipped one is
        derived from recorded steps alone, so its row waits for the run's next commit
        (a crash before it recomputes the same value); any other is committed now."""
        write = StepWrite(
            key,
            node.type,
            status,
            output=outcome.output if outcome else None,
            error=error,
            attempts=attempts,
            model=outcome.model if outcome else None,
            prompt_tokens=outcome.prompt_tokens if outcome else 0,
            completion_tokens=outcome.completion_tokens if outcome else 0,
            cache_key=cache_key,
            started_at=started_at or utcnow(),
            finished_at=utcnow(),
        )
        if status == "skipped" or (node.type in self.deferred_types and status == "succeeded"):
            self._deferred.setdefault(graph.run.id, []).append(write)
        else:
            self.store.finish_step(graph.run.id, write, self._take(graph.run.id))
        graph.steps[key] = _record_of(write)
        self._emit(graph.run.id, _finished_event(graph.run.id, key, status, write.output, error))

    def _take(self, run_id: str) -> list[StepWrite]:
        return self._deferred.pop(run_id, [])

    async def _node(self, graph: _Graph, node: Node, status: dict[str, str]) -> None:
        started = time.perf_counter()
        key = graph.key(node.name)
        reason = self._skipped(graph, node, status)
        if reason is not None:
            await self._record(graph, key, node, "skipped", error=reason, attempts=0)
            return
        scope = self._scope(graph)
        where = f"node {key!r}"
        if node.type == "human":
            prompt = resolve(node.params["prompt"], scope, where)
            inputs = {"prompt": prompt}
            self.store.start_step(
                graph.run.id, key, "human", inputs, "waiting", self._take(graph.run.id)
            )
            graph.steps[key] = _record_of(
                StepWrite(key, "human", "waiting", inputs=inputs, attempts=0, started_at=utcnow())
            )
            self._emit(graph.run.id, {"type": "node.waiting", "node": key, "prompt": prompt})
            raise _Waiting
        await self._attempts(graph, node, key, scope, where, started)

    async def _attempts(
        self,
        graph: _Graph,
        node: Node,
        key: str,
        scope: dict[str, Any],
        where: str,
        started: float,
    ) -> NodeOutcome | None:
        """Run ``node`` under its policy and record the outcome; None when it failed and
        its strategy let the run go on."""
        try:
            params = self._params(node, scope, where)
        except NodeFailure as error:
            return await self._failed(graph, node, key, error.message, 1)
        cache_key = None
        if node.cache:
            text = json.dumps([node.type, params], sort_keys=True, default=str)
            cache_key = hashlib.sha256(text.encode()).hexdigest()
            hit = self.store.cached(graph.run.user_id, cache_key)
            if hit is not None:
                outcome = NodeOutcome(hit.output, hit.model)
                await self._record(graph, key, node, "succeeded", outcome, cache_key=cache_key)
                return outcome
        began = utcnow()
        if node.type not in self.deferred_types:
            self.store.start_step(
                graph.run.id, key, node.type, _shown(params), "running", self._take(graph.run.id)
            )
        self._emit(graph.run.id, {"type": "node.started", "node": key, "node_type": node.type})
        attempt = 0
        while True:
            attempt += 1
            engine_time = time.perf_counter() - started
            try:
                outcome = await asyncio.wait_for(
                    self._work(graph, node, key, params, scope), node.timeout_s
                )
            except (LLMasOSError, TimeoutError) as error:
                message = (
                    error.message
                    if isinstance(error, LLMasOSError)
                    else f"{where}: timed out after {node.timeout_s:g} s"
                )
                if attempt <= node.retries:
                    await asyncio.sleep(node.backoff_s * 2 ** (attempt - 1))
                    continue
                return await self._failed(graph, node, key, message, attempt)
            after = time.perf_counter()
            await self._record(
                graph, key, node, "succeeded", outcome, None, attempt, cache_key, began
            )
            if self.measure:
                self.node_timings.append(engine_time + time.perf_counter() - after)
            return outcome

    async def _failed(
        self, graph: _Graph, node: Node, key: str, message: str, attempts: int
    ) -> NodeOutcome | None:
        if node.on_error == "default":
            outcome = NodeOutcome(node.default)
            await self._record(graph, key, node, "succeeded", outcome, message, attempts)
            return outcome
        await self._record(graph, key, node, "failed", None, message, attempts)
        if node.on_error == "fail":
            raise NodeFailure(
                message if message.startswith("node ") else f"node {key!r}: {message}"
            )
        return None

    def _params(self, node: Node, scope: dict[str, Any], where: str) -> dict[str, Any]:
        params = node.params
        if node.type == "transform":
            if "expression" in params:
                return {"expression": evaluate(str(params["expression"]), scope, where)}
            return {"template": render(str(params["template"]), scope, where)}
        if node.type == "condition":
            return {"result": bool(evaluate(str(params["if"]), scope, where))}
        if node.type == "map":
            over = resolve(params["over"], scope, where)
            if not isinstance(over, list):
                raise NodeFailure(
                    f"{where}: map over a non-list ({type(over).__name__}); `over` must be a list"
                )
            return {"over": over, "concurrency": params.get("concurrency", 4)}
        resolved = {k: resolve(v, scope, where) for k, v in templated(node.type, params).items()}
        return {**params, **resolved}  # a code node's `code` is taken as written

    async def _work(
        self, graph: _Graph, node: Node, key: str, params: dict[str, Any], scope: dict[str, Any]
    ) -> NodeOutcome:
        if node.type == "condition":
            return NodeOutcome({"result": params["result"]})
        if node.type == "transform":
            return NodeOutcome(params.get("expression", params.get("template")))
        if node.type == "map":
            return await self._map(graph, node, key, params, scope)
        if node.type == "workflow":
            return await self._subworkflow(graph, node, key, params)
        run_id = graph.run.id

        async def on_token(text: str) -> None:
            self._emit(run_id, {"type": "node.token", "node": key, "text": text})

        call = NodeCall(
            run_id, key, graph.run.user_id, _tenant(graph.run.user_id, self.tenant_name), on_token
        )
        return await execute(node.type, params, self.runtime, call, graph.workflow.allow_http)

    async def _map(
        self, graph: _Graph, node: Node, key: str, params: dict[str, Any], scope: dict[str, Any]
    ) -> NodeOutcome:
        from llmasos.workflows.definition import _node

        inner = _node(f"{node.name}_item", node.params["node"], node.position)
        limit = asyncio.Semaphore(int(params["concurrency"]))
        items = params["over"]

        async def one(index: int, item: Any) -> Any:
            item_key = f"{key}[{index}]"
            done = graph.steps.get(item_key)
            if done is not None and done.status == "succeeded":
                return done.output
            async with limit:
                item_scope = {**scope, "item": item, "index": index}
                outcome = await self._attempts(
                    graph, inner, item_key, item_scope, f"node {item_key!r}", time.perf_counter()
                )
                return outcome.output if outcome is not None else None

        outputs = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        return NodeOutcome(list(outputs))

    async def _subworkflow(
        self, graph: _Graph, node: Node, key: str, params: dict[str, Any]
    ) -> NodeOutcome:
        if graph.depth + 1 > MAX_DEPTH:
            raise NodeFailure(f"node {key!r}: sub-workflows nest at most {MAX_DEPTH} deep")
        name = str(params["workflow"])
        try:
            child = self.lookup(graph.run.user_id, name)
        except NotFoundError:
            raise NodeFailure(f"node {key!r}: no workflow named {name!r}") from None
        except WorkflowError as error:
            raise NodeFailure(f"node {key!r}: workflow {name}: {error.message}") from None
        try:
            inputs = validate_inputs(child, params.get("input") or {})
        except InvalidRequestError as error:
            raise NodeFailure(f"node {key!r}: {error.message}") from None
        sub = _Graph(graph.run, child, inputs, f"{key}/", graph.depth + 1, graph.steps)
        return NodeOutcome(await self._graph(sub))


def _dead_here(owner: str) -> bool:
    """Whether a lease owner (``host:pid:tag``) is a process of this host that has ended."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:32] or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def _shown(params: dict[str, Any]) -> Any:
    """Parameters as stored in the trace (JSON-able)."""
    return json.loads(json.dumps(params, default=str))


def _finished_event(
    run_id: str, key: str, status: str, output: Any, error: str | None
) -> dict[str, Any]:
    return {
        "type": "node.finished",
        "run_id": run_id,
        "node": key,
        "status": status,
        "output": output,
        "error": error,
    }


def _record_of(write: StepWrite) -> StepRecord:
    return StepRecord(
        write.key,
        write.node_type,
        write.status,
        write.inputs,
        write.output,
        write.error,
        write.attempts,
        write.model,
        write.prompt_tokens,
        write.completion_tokens,
        write.started_at or utcnow(),
        write.finished_at,
        write.cost if write.prompt_tokens or write.completion_tokens else 0.0,
    )
