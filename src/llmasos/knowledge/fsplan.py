"""``fs ask``: an instruction in words -> a checked plan of file operations -> its results.

`propose` asks the model, under a JSON schema (grammar-constrained decoding through the
kernel), for steps among find, summarize, move, delete and rollback; the prompt lists the
owner's paths so the model can name real ones. Nothing the model says is trusted: `run`
checks every step against the real tree before doing anything (the path exists, the
destination is free, a version exists ...) and refuses a bad step with the reason, which
the plan shows. A step may name ``@found`` for the files the latest find step returned.
Find and summarize never change anything and run at once; move, delete and rollback run
only when the caller confirms (``confirm=True``), otherwise they are returned as
``needs_confirmation`` so a face can ask and send the same steps back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.kernel.interface import EngineClientInterface, GenerateRequest
from llmasos.knowledge.filesystem import FileSystem, Summarizer
from llmasos.knowledge.fspaths import check_path
from llmasos.knowledge.fstypes import FileOwner
from llmasos.types import SamplingParams, StructuredOutput

ACTIONS: Final = ("find", "summarize", "move", "delete", "rollback")
DESTRUCTIVE: Final = frozenset({"move", "delete", "rollback"})
FOUND: Final = "@found"
MAX_STEPS: Final = 8
MAX_INSTRUCTION_CHARS: Final = 2000
LISTED_PATHS: Final = 60
FIND_RESULTS: Final = 3

PLAN_PROMPT = (
    "You turn a user's request about their files into a plan of file operations. The "
    "operations are: find (a search query), summarize (a path), move (a path and the "
    "destination 'to'), delete (a path), rollback (a path, and 'to' a version number or "
    "empty for the previous version). Use the path @found for the files the last find "
    "returned. Use only the paths listed. Answer with JSON only."
)


def plan_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_STEPS,
                "items": {
                    "type": "object",
                    "properties": {
                        "action": {"type": "string", "enum": list(ACTIONS)},
                        "query": {"type": "string", "maxLength": 200},
                        "path": {"type": "string", "maxLength": 300},
                        "to": {"type": "string", "maxLength": 300},
                    },
                    "required": ["action"],
                },
            }
        },
        "required": ["steps"],
    }


@dataclass(frozen=True)
class PlanStep:
    action: str
    query: str | None = None
    path: str | None = None
    to: str | None = None
    status: str = "planned"
    """``done``, ``refused``, ``needs_confirmation``, ``failed`` or ``planned``."""
    problem: str | None = None
    result: Any = None

    @property
    def destructive(self) -> bool:
        return self.action in DESTRUCTIVE

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "query": self.query,
            "path": self.path,
            "to": self.to,
            "destructive": self.destructive,
            "status": self.status,
            "problem": self.problem,
            "result": self.result,
        }


@dataclass
class Plan:
    steps: list[PlanStep]
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    raw: str = ""
    """The model's answer as it came (empty when the steps were given)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "fs.plan",
            "steps": [s.to_dict() for s in self.steps],
            "model": self.model or None,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
        }


def parse_steps(data: Any, where: str = "steps") -> list[PlanStep]:
    """Steps from JSON (the model's answer or a client's list); malformed ones are kept as
    refused steps so the plan shows them."""
    if not isinstance(data, list):
        raise InvalidRequestError(f"{where}: must be a list of steps", param=where)
    if len(data) > MAX_STEPS:
        raise InvalidRequestError(f"{where}: at most {MAX_STEPS} steps", param=where)
    steps = []
    for item in data:
        if not isinstance(item, dict) or item.get("action") not in ACTIONS:
            action = item.get("action") if isinstance(item, dict) else None
            steps.append(
                PlanStep(
                    str(action or "?")[:40],
                    status="refused",
                    problem=f"unknown action; use one of {', '.join(ACTIONS)}",
                )
            )
            continue
        values = {
            key: (str(item[key]).strip() or None) if item.get(key) is not None else None
            for key in ("query", "path", "to")
        }
        steps.append(
            PlanStep(item["action"], query=values["query"], path=values["path"], to=values["to"])
        )
    return steps


async def propose(
    engine: EngineClientInterface,
    fs: FileSystem,
    owner: FileOwner,
    instruction: str,
    *,
    model: str | None = None,
    tenant: str = "anonymous",
) -> Plan:
    """Ask the model for a plan (not yet checked or run)."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise InvalidRequestError("instruction: must be non-empty text", param="instruction")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise InvalidRequestError(
            f"instruction: at most {MAX_INSTRUCTION_CHARS} characters", param="instruction"
        )
    paths = fs.all_paths(owner, LISTED_PATHS)
    listing = "\n".join(paths) if paths else "(no files)"
    request = GenerateRequest(
        model=model,
        messages=[
            {"role": "system", "content": PLAN_PROMPT},
            {"role": "user", "content": f"My files:\n{listing}\n\nRequest: {instruction}"},
        ],
        sampling=SamplingParams(
            temperature=0.0,
            max_tokens=80 * MAX_STEPS,
            structured=StructuredOutput(kind="json_schema", schema=plan_schema()),
        ),
        explicit=frozenset({"temperature", "max_tokens", "structured"}),
        tenant=tenant,
    )
    pieces: list[str] = []
    plan = Plan(steps=[])
    async for output in engine.generate(request):
        pieces.append(output.text)
        plan.model = output.model
        if output.finished:
            plan.prompt_tokens = output.prompt_tokens
            plan.completion_tokens = output.completion_tokens
    plan.raw = "".join(pieces)
    try:
        data = json.loads(plan.raw)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise LLMasOSError(
            "the model did not return a plan (its answer was cut off or not JSON); rephrase "
            "the request or name the files"
        )
    plan.steps = parse_steps(data["steps"][:MAX_STEPS])
    return plan


async def run(
    fs: FileSystem,
    owner: FileOwner,
    steps: Sequence[PlanStep],
    summarizer: Summarizer,
    *,
    confirm: bool,
) -> list[PlanStep]:
    """Check and run the steps in order: a refused step says why and does nothing;
    destructive steps run only with ``confirm``. ``@found`` becomes the paths the latest
    find returned (one step per path)."""
    found: list[str] | None = None
    done: list[PlanStep] = []
    for step in steps:
        if step.status == "refused":
            done.append(step)
            continue
        if step.action == "find":
            if not step.query:
                done.append(replace(step, status="refused", problem="find needs a query"))
                continue
            try:
                hits = await fs.find(owner, step.query, k=FIND_RESULTS)
            except InvalidRequestError as error:
                done.append(replace(step, status="refused", problem=error.message))
                continue
            found = [hit.path for hit in hits]
            done.append(replace(step, status="done", result=[h.to_dict() for h in hits]))
            continue
        targets: list[str | None] = [step.path]
        if step.path == FOUND:
            if found is None:
                done.append(
                    replace(step, status="refused", problem="@found needs a find step before it")
                )
                continue
            if not found:
                done.append(replace(step, status="refused", problem="the find found nothing"))
                continue
            targets = list(found)
        for target in targets:
            done.append(await _run_one(fs, owner, replace(step, path=target), summarizer, confirm))
    return done


async def _run_one(
    fs: FileSystem, owner: FileOwner, step: PlanStep, summarizer: Summarizer, confirm: bool
) -> PlanStep:
    problem = _check(fs, owner, step)
    if problem is not None:
        return replace(step, status="refused", problem=problem)
    assert step.path is not None
    if step.destructive and not confirm:
        return replace(step, status="needs_confirmation")
    try:
        if step.action == "summarize":
            [summary] = await fs.summarize(owner, [step.path], summarizer)
            return replace(step, status="done", result=summary.to_dict())
        if step.action == "move":
            assert step.to is not None
            version = await fs.move(owner, step.path, step.to)
        elif step.action == "delete":
            version = await fs.delete(owner, step.path)
        else:
            version = await fs.rollback(owner, step.path, int(step.to) if step.to else None)
    except LLMasOSError as error:
        return replace(step, status="failed", problem=error.message)
    return replace(step, status="done", result=version.to_dict())


def _check(fs: FileSystem, owner: FileOwner, step: PlanStep) -> str | None:
    """Why ``step`` cannot run against the tree as it is now (None: it can)."""
    if not step.path:
        return f"{step.action} needs a path"
    try:
        path = check_path(step.path)
        if step.action == "rollback":
            history = fs.history(owner, path)
            if step.to is not None:
                if not step.to.isdigit():
                    return f"rollback 'to' must be a version number, not {step.to[:40]!r}"
                if not 1 <= int(step.to) < history[0].version:
                    return (
                        f"{path} has versions 1 to {history[0].version}; cannot restore {step.to}"
                    )
            elif history[0].version < 2:
                return f"{path} has only one version"
            return None
        info = fs.stat(owner, path)
        if step.action == "summarize" and info.type == "binary":
            return f"{path} has no text to summarize"
        if step.action == "move":
            if not step.to:
                return "move needs a destination 'to'"
            destination = check_path(step.to, "to", directory=True)
            if destination == path:
                return "move: the destination is the file itself"
            if not step.to.endswith("/") and destination in fs.all_paths(owner):
                return f"move: {destination} already exists"
    except LLMasOSError as error:
        return error.message
    return None


__all__ = [
    "ACTIONS",
    "DESTRUCTIVE",
    "FOUND",
    "Plan",
    "PlanStep",
    "parse_steps",
    "plan_schema",
    "propose",
    "run",
]
