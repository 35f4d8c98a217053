"""What a workflow is: typed inputs, named nodes, outputs; parsed from YAML and validated.

`load_workflow` reads YAML (or takes the same mapping from Python) and returns a `Workflow`,
or raises `WorkflowError` naming the node and the YAML line and column of what is wrong:
invalid YAML, an unknown node type, a missing field, a reference to a node or input that
does not exist, a node that references itself, a cycle, a map over something that is not a
list, a reference to a field the referenced node's declared output does not have. Nothing
runs before a definition passes.

A node's dependencies are the nodes its parameters reference (``{{ nodes.NAME.output }}``),
those it lists under ``needs``, the condition whose ``then``/``else`` names it, and the node
whose ``on_error: branch`` lists it under ``fallback``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from llmasos.workflows.errors import WorkflowError

NODE_TYPES: Final = (
    "llm",
    "service",
    "tool",
    "retrieval",
    "condition",
    "map",
    "transform",
    "http",
    "code",
    "human",
    "workflow",
)
INPUT_TYPES: Final = ("string", "integer", "number", "boolean", "array", "object")
ERROR_STRATEGIES: Final = ("fail", "default", "branch")
NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,63}")
NODE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
REFERENCE: Final = re.compile(r"\bnodes\.([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
INPUT_REFERENCE: Final = re.compile(r"\binputs\.([A-Za-z_][A-Za-z0-9_]*)")
TEMPLATE: Final = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)
MAX_RETRIES: Final = 10
MAX_CONCURRENCY: Final = 64
MAX_TIMEOUT_S: Final = 24 * 3600.0
# the keys every node may have; the rest are its type's parameters
COMMON_KEYS: Final = frozenset(
    {
        "type",
        "needs",
        "timeout_s",
        "retries",
        "backoff_s",
        "on_error",
        "default",
        "fallback",
        "cache",
        "description",
    }
)
REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "llm": ("prompt",),
    "service": ("service",),
    "tool": ("tool",),
    "retrieval": ("vector_store_ids", "query"),
    "condition": ("if",),
    "map": ("over", "node"),
    "transform": (),
    "http": ("url",),
    "code": ("code",),
    "human": ("prompt",),
    "workflow": ("workflow",),
}
VERBATIM: Final[dict[str, frozenset[str]]] = {"code": frozenset({"code"})}
"""Parameters taken as written, never templated: a code node's Python, whose own braces
and ``nodes.x`` attributes are not templates or references (its data comes in ``input``)."""


def templated(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of a ``kind`` node that templates are resolved in."""
    verbatim = VERBATIM.get(kind, frozenset())
    return {key: value for key, value in params.items() if key not in verbatim}


@dataclass(frozen=True)
class Position:
    line: int
    column: int

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}"


@dataclass
class Node:
    """One step. ``params`` are the type's own keys, templated; the rest is policy."""

    name: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)
    timeout_s: float | None = None
    retries: int = 0
    backoff_s: float = 0.5
    on_error: str = "fail"
    default: Any = None
    fallback: list[str] = field(default_factory=list)
    cache: bool = False
    position: Position | None = None

    @property
    def side_effect(self) -> bool:
        """Whether running it twice could change the world twice (tool, http, workflow)."""
        return self.type in ("tool", "http", "workflow")

    def references(self) -> set[str]:
        """The node names its parameters reference."""
        texts = _strings(templated(self.type, self.params))
        return {m.group(1) for text in texts for m in REFERENCE.finditer(text)}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, **self.params}
        if self.needs:
            data["needs"] = list(self.needs)
        if self.timeout_s is not None:
            data["timeout_s"] = self.timeout_s
        if self.retries:
            data["retries"] = self.retries
            data["backoff_s"] = self.backoff_s
        if self.on_error != "fail":
            data["on_error"] = self.on_error
            if self.on_error == "default":
                data["default"] = self.default
            if self.fallback:
                data["fallback"] = list(self.fallback)
        if self.cache:
            data["cache"] = True
        return data


@dataclass
class Workflow:
    """A validated workflow. Build one from Python with keyword arguments, or from YAML with
    `load_workflow`; both go through the same checks (`validate`)."""

    name: str
    nodes: dict[str, Node]
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    allow_http: bool = False
    schedule: str | None = None
    source: str = ""
    order: list[str] = field(default_factory=list)
    """The nodes in an order that respects every dependency (filled by `validate`)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str | None = None) -> Workflow:
        """The same definition as YAML, given as Python data (no positions in errors)."""
        source = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
        return load_workflow(source, name=name)

    def input_schema(self) -> dict[str, Any]:
        """The JSON schema a run's input must match."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for key, spec in self.inputs.items():
            properties[key] = {k: v for k, v in spec.items() if k != "required"}
            if spec.get("required", "default" not in spec):
                required.append(key)
        return {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }

    def dependencies(self, node: Node) -> set[str]:
        deps = set(node.needs) | node.references()
        for other in self.nodes.values():
            if other.type == "condition":
                branches = _branch_names(other.params)
                if node.name in branches:
                    deps.add(other.name)
            if node.name in other.fallback:
                deps.add(other.name)
        deps.discard(node.name)
        return deps

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        if self.inputs:
            data["inputs"] = self.inputs
        data["nodes"] = {name: node.to_dict() for name, node in self.nodes.items()}
        if self.outputs:
            data["outputs"] = self.outputs
        if self.allow_http:
            data["allow_http"] = True
        if self.schedule:
            data["schedule"] = self.schedule
        return data


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if key != "node":  # a map's inner node is checked as its own node
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _branch_names(params: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for key in ("then", "else"):
        value = params.get(key) or []
        names.extend([value] if isinstance(value, str) else list(value))
    return names


# -- parsing ---------------------------------------------------------------------------------


def _positions(source: str) -> tuple[Any, dict[str, Position]]:
    """The parsed document and, per node name, where its entry starts."""
    try:
        document = yaml.compose(source, Loader=yaml.SafeLoader)
        data = yaml.safe_load(source)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise WorkflowError(f"invalid YAML{where}: {error.problem or error}") from None
    except yaml.YAMLError as error:
        raise WorkflowError(f"invalid YAML: {error}") from None
    positions: dict[str, Position] = {}
    if isinstance(document, yaml.MappingNode):
        for key, value in document.value:
            if key.value == "nodes" and isinstance(value, yaml.MappingNode):
                seen: set[str] = set()
                for node_key, _ in value.value:
                    at = Position(node_key.start_mark.line + 1, node_key.start_mark.column + 1)
                    if node_key.value in seen:
                        raise WorkflowError(f"node {node_key.value!r} ({at}): defined twice")
                    seen.add(node_key.value)
                    positions[str(node_key.value)] = at
    return data, positions


def load_workflow(source: str, *, name: str | None = None) -> Workflow:
    """Parse and validate a YAML definition; ``name`` overrides the one inside."""
    data, positions = _positions(source)
    if not isinstance(data, dict):
        raise WorkflowError("a workflow is a YAML mapping with at least `nodes`")
    known = {"name", "description", "inputs", "nodes", "outputs", "allow_http", "schedule"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise WorkflowError(
            f"unknown top-level key {unknown[0]!r}; the keys are: {', '.join(sorted(known))}"
        )
    workflow_name = name or data.get("name")
    if not isinstance(workflow_name, str) or not NAME.fullmatch(workflow_name):
        raise WorkflowError(
            f"the workflow needs a name matching {NAME.pattern} (got {workflow_name!r})",
            param="name",
        )
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        raise WorkflowError("`nodes` must be a mapping of node name to node", param="nodes")
    nodes = {
        str(key): _node(str(key), value, positions.get(str(key)))
        for key, value in raw_nodes.items()
    }
    inputs = _inputs(data.get("inputs") or {})
    outputs = data.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise WorkflowError("`outputs` must be a mapping of output name to a template")
    schedule = data.get("schedule")
    if schedule is not None:
        _check_schedule(schedule)
    workflow = Workflow(
        name=workflow_name,
        nodes=nodes,
        inputs=inputs,
        outputs=dict(outputs),
        description=str(data.get("description") or ""),
        allow_http=bool(data.get("allow_http", False)),
        schedule=schedule,
        source=source,
    )
    validate(workflow)
    return workflow


def _inputs(raw: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise WorkflowError("`inputs` must map each input's name to its type")
    inputs: dict[str, dict[str, Any]] = {}
    for key, spec in raw.items():
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict) or spec.get("type") not in INPUT_TYPES:
            raise WorkflowError(
                f"input {key!r}: type must be one of {', '.join(INPUT_TYPES)}", param=str(key)
            )
        inputs[str(key)] = dict(spec)
    return inputs


def _node(name: str, raw: Any, position: Position | None) -> Node:
    where = f"node {name!r}" + (f" ({position})" if position else "")
    if not NODE_NAME.fullmatch(name):
        raise WorkflowError(f"{where}: a node name is letters, digits and _ ({NODE_NAME.pattern})")
    if not isinstance(raw, dict):
        raise WorkflowError(f"{where}: a node is a mapping with a `type`")
    kind = raw.get("type")
    if kind not in NODE_TYPES:
        raise WorkflowError(
            f"{where}: unknown node type {kind!r}; the types are: {', '.join(NODE_TYPES)}"
        )
    params = {k: v for k, v in raw.items() if k not in COMMON_KEYS}
    missing = [key for key in REQUIRED[kind] if key not in params]
    if kind == "transform" and not ({"expression", "template"} & set(params)):
        missing = ["expression or template"]
    if missing:
        raise WorkflowError(f"{where}: a {kind} node needs `{missing[0]}`")
    if kind == "code":
        _check_code(params["code"], where)
    try:
        node = Node(
            name=name,
            type=kind,
            params=params,
            needs=_names(raw.get("needs")),
            timeout_s=None if raw.get("timeout_s") is None else float(raw["timeout_s"]),
            retries=int(raw.get("retries", 0)),
            backoff_s=float(raw.get("backoff_s", 0.5)),
            on_error=str(raw.get("on_error", "fail")),
            default=raw.get("default"),
            fallback=_names(raw.get("fallback")),
            cache=bool(raw.get("cache", False)),
            position=position,
        )
    except (TypeError, ValueError) as error:
        raise WorkflowError(f"{where}: {error}") from None
    if node.on_error not in ERROR_STRATEGIES:
        raise WorkflowError(f"{where}: on_error must be one of {', '.join(ERROR_STRATEGIES)}")
    if node.on_error == "branch" and not node.fallback:
        raise WorkflowError(f"{where}: on_error: branch needs `fallback`, the nodes to run")
    if not 0 <= node.retries <= MAX_RETRIES:
        raise WorkflowError(f"{where}: retries must be between 0 and {MAX_RETRIES}")
    if node.timeout_s is not None and not 0 < node.timeout_s <= MAX_TIMEOUT_S:
        raise WorkflowError(f"{where}: timeout_s must be positive and at most a day")
    if kind == "map":
        inner = params["node"]
        if not isinstance(inner, dict) or inner.get("type") in (None, "map", "human"):
            raise WorkflowError(f"{where}: `node` must be a node of another type than map/human")
        _node(f"{name}_item", inner, position)
        concurrency = params.get("concurrency", 4)
        if not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise WorkflowError(f"{where}: concurrency must be 1 to {MAX_CONCURRENCY}")
    return node


def _check_code(code: Any, where: str) -> None:
    """A code node's ``code`` is Python that compiles (compiled, never run, here)."""
    if not isinstance(code, str) or not code.strip():
        raise WorkflowError(f"{where}: `code` must be the Python source, as text")
    try:
        compile(code, "code", "exec", dont_inherit=True)
    except SyntaxError as error:
        line = f" (line {error.lineno} of the code)" if error.lineno else ""
        raise WorkflowError(f"{where}: `code` is not valid Python: {error.msg}{line}") from None
    except ValueError as error:  # a NUL character
        raise WorkflowError(f"{where}: `code` is not valid Python: {error}") from None


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("expected a node name or a list of node names")


def _check_schedule(schedule: Any) -> None:
    from llmasos.workflows.schedule import parse_cron

    if not isinstance(schedule, str):
        raise WorkflowError("`schedule` is a cron expression such as '0 7 * * *'")
    parse_cron(schedule)


# -- validation ------------------------------------------------------------------------------


def _where(node: Node) -> str:
    return f"node {node.name!r}" + (f" ({node.position})" if node.position else "")


def validate(workflow: Workflow) -> None:
    """Check references, branches, map sources and the graph; fill ``workflow.order``."""
    for node in workflow.nodes.values():
        where = _where(node)
        texts = list(_strings(templated(node.type, node.params)))
        if node.type == "map":
            inner = node.params["node"]
            texts.extend(_strings(templated(str(inner.get("type")), inner)))
        for text in texts:
            _check_templates(text, where)
            for match in REFERENCE.finditer(text):
                target, path = match.group(1), match.group(2)
                if target == node.name:
                    raise WorkflowError(f"{where}: references itself ({match.group(0)})")
                if target not in workflow.nodes:
                    raise WorkflowError(f"{where}: references a missing node {target!r}")
                _check_field(workflow.nodes[target], path, where)
            for match in INPUT_REFERENCE.finditer(text):
                if match.group(1) not in workflow.inputs:
                    raise WorkflowError(
                        f"{where}: references a missing input {match.group(1)!r}; the inputs "
                        f"are: {', '.join(workflow.inputs) or 'none'}"
                    )
        for target in [*node.needs, *node.fallback, *_conditional(node)]:
            if target == node.name:
                raise WorkflowError(f"{where}: references itself ({target!r})")
            if target not in workflow.nodes:
                raise WorkflowError(f"{where}: names a missing node {target!r}")
        if node.type == "map":
            _check_map_source(workflow, node)
        if node.type == "http" and not workflow.allow_http:
            raise WorkflowError(
                f"{where}: http nodes are off; set `allow_http: true` on the workflow to permit "
                "requests to public addresses"
            )
    for text in _strings(workflow.outputs):
        _check_templates(text, "outputs")
        for match in REFERENCE.finditer(text):
            if match.group(1) not in workflow.nodes:
                raise WorkflowError(f"outputs: reference a missing node {match.group(1)!r}")
    workflow.order = _topological_order(workflow)


def _conditional(node: Node) -> list[str]:
    return _branch_names(node.params) if node.type == "condition" else []


def _check_templates(text: str, where: str) -> None:
    from llmasos.workflows.expressions import check_template

    check_template(text, where)


def _check_field(target: Node, path: str, where: str) -> None:
    """``.output.FIELD`` must exist when the target declares its output's shape."""
    parts = [p for p in path.split(".") if p]
    if not parts:
        return
    if parts[0] not in ("output", "status", "error"):
        raise WorkflowError(
            f"{where}: nodes.{target.name}.{parts[0]}: a node has output, status and error"
        )
    if parts[0] != "output" or len(parts) < 2:
        return
    schema = declared_output(target)
    if schema is None or schema.get("type") != "object" or "properties" not in schema:
        return
    if parts[1] not in schema["properties"]:
        raise WorkflowError(
            f"{where}: nodes.{target.name}.output has no field {parts[1]!r}; its fields are: "
            f"{', '.join(schema['properties'])}"
        )


def declared_output(node: Node) -> dict[str, Any] | None:
    """The JSON schema a node's output is known to match, where the definition says."""
    if node.type == "llm" and isinstance(node.params.get("schema"), dict):
        return dict(node.params["schema"])
    if node.type in ("map",):
        return {"type": "array"}
    if node.type == "human":
        return {"type": "object", "properties": {"answer": {}}}
    if node.type == "condition":
        return {"type": "object", "properties": {"result": {"type": "boolean"}}}
    if node.type == "retrieval":
        return {"type": "object", "properties": {"results": {"type": "array"}, "text": {}}}
    if node.type == "code":
        fields = ("exit_code", "stdout", "stderr", "truncated", "json")
        return {"type": "object", "properties": {name: {} for name in fields}}
    return None


def _check_map_source(workflow: Workflow, node: Node) -> None:
    over = node.params["over"]
    where = _where(node)
    if isinstance(over, list):
        return
    if not isinstance(over, str):
        raise WorkflowError(f"{where}: `over` must be a list or a reference to one")
    expression = over.strip()
    match = re.fullmatch(r"\{\{\s*(.*?)\s*\}\}", expression)
    if match is None:
        raise WorkflowError(f"{where}: `over` must be a single {{{{ reference }}}} to a list")
    inner = match.group(1)
    found = re.fullmatch(r"inputs\.([A-Za-z_]\w*)", inner)
    if found and workflow.inputs.get(found.group(1), {}).get("type") not in (None, "array"):
        kind = workflow.inputs[found.group(1)]["type"]
        raise WorkflowError(f"{where}: map over a non-list: input {found.group(1)!r} is {kind}")
    found = re.fullmatch(r"nodes\.(\w+)\.output((?:\.\w+)*)", inner)
    if found and found.group(1) in workflow.nodes:
        schema = declared_output(workflow.nodes[found.group(1)])
        for part in [p for p in found.group(2).split(".") if p]:
            if schema is None:
                break
            schema = (schema.get("properties") or {}).get(part)
        if schema is not None and schema.get("type") not in (None, "array"):
            raise WorkflowError(f"{where}: map over a non-list: {inner} is {schema.get('type')}")


def _topological_order(workflow: Workflow) -> list[str]:
    deps = {name: workflow.dependencies(node) for name, node in workflow.nodes.items()}
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            node = workflow.nodes[name]
            raise WorkflowError(f"{_where(node)}: a cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for dep in sorted(deps[name]):
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in workflow.nodes:
        visit(name, [])
    return order
