"""``llmasos bench tasks``: the task suite run k times per task, with and without the grammar.

Each trial of each task runs for a fresh user in a throwaway home (SQLite, the real content
cipher, the real personal stores and file space, mail delivered to a real SMTP server,
aiosmtpd, on loopback) through the real `AgentRuntime` on a real model, with the task's
side effects granted in advance; it is graded by `suite.grade` from the apps' state before
and after. Two modes:

* ``constrained``: the runtime as it is, every tool call grammar-constrained (the first
  turn's ``tool_choice`` auto by default, ``required`` with ``--tool-choice required``);
* ``unconstrained``: the same prompt and tools, no grammar, and calls read leniently out of
  whatever the model wrote (`parse_tool_output_lenient`) — what a runtime without
  constrained decoding gets.

Reported per mode, overall and per category: the success rate over all trials (pass^1) and
pass^k (τ-bench's: the share of tasks that passed in all k trials).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.access.users import UserManager
from llmasos.agents.interface import Budget, TaskSpec, TaskStatus
from llmasos.agents.runtime import AgentRuntime
from llmasos.agents.store import TaskStore
from llmasos.agents.suite import SuiteTask, grade, load_tasks, seed, snapshot
from llmasos.config import Settings
from llmasos.errors import InvalidRequestError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.knowledge.filesystem import FileSystem
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.net import free_port
from llmasos.storage import ContentCipher, open_database
from llmasos.storage.crypto import load_master_key
from llmasos.tools.interface import ToolSystem
from llmasos.tools.personal import personal_of
from llmasos.tools.records import Owner

MODES: Final = ("constrained", "unconstrained")
TASK_BUDGET: Final = Budget(max_steps=6, max_tokens=16_000, max_seconds=600)


@dataclass
class TrialResult:
    task: str
    category: str
    mode: str
    trial: int
    passed: bool
    status: str
    steps: int
    tokens: int
    seconds: float
    tools_called: list[str]
    answer: str | None
    failures: list[str]


@dataclass
class ModeSummary:
    mode: str
    trials: int
    success_rate: float
    """Passed trials over all trials (pass^1)."""
    pass_k: float
    """Tasks that passed in every one of their k trials, over tasks."""
    by_category: dict[str, dict[str, float]] = field(default_factory=dict)
    """Category -> {"success_rate", "pass_k", "tasks"}."""


@dataclass
class SuiteReport:
    model: str
    k: int
    tasks: int
    modes: list[ModeSummary]
    results: list[TrialResult]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _SmtpSink:
    """aiosmtpd handler that keeps what it received (envelope recipients, raw message)."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def delivered_count(
    personal: Any, user_id: int | None, new_ids: set[str], received: Sequence[bytes]
) -> int:
    """How many of the messages a trial added reached the SMTP server (by Message-ID)."""
    owner = Owner.for_user(user_id)
    count = 0
    for message_id in new_ids:
        header = personal.mail.get(owner, message_id).get("message_id")
        if header and any(header.encode() in raw for raw in received):
            count += 1
    return count


def summarize(results: Sequence[TrialResult], modes: Sequence[str]) -> list[ModeSummary]:
    summaries = []
    for mode in modes:
        mine = [r for r in results if r.mode == mode]
        summary = ModeSummary(mode, len(mine), *_rates(mine))
        for category in sorted({r.category for r in mine}):
            of = [r for r in mine if r.category == category]
            rate, pass_k = _rates(of)
            summary.by_category[category] = {
                "success_rate": rate,
                "pass_k": pass_k,
                "tasks": len({r.task for r in of}),
            }
        summaries.append(summary)
    return summaries


def _rates(results: Sequence[TrialResult]) -> tuple[float, float]:
    if not results:
        return 0.0, 0.0
    by_task: dict[str, list[bool]] = {}
    for result in results:
        by_task.setdefault(result.task, []).append(result.passed)
    rate = sum(r.passed for r in results) / len(results)
    return rate, sum(all(v) for v in by_task.values()) / len(by_task)


async def run_task_suite(
    *,
    engine: EngineClientInterface,
    model: str,
    trials: int = 3,
    modes: Sequence[str] = MODES,
    limit: int | None = None,
    categories: Sequence[str] | None = None,
    concurrency: int = 4,
    progress: Callable[[str], None] = lambda message: None,
    tasks: Sequence[SuiteTask] | None = None,
    budget: Budget = TASK_BUDGET,
    tool_choice: str = "auto",
) -> SuiteReport:
    """Every (task, mode, trial) on ``engine``/``model``, at most ``concurrency`` at once (the
    kernel batches them), each for its own user of one throwaway home. ``tool_choice`` is
    the tasks' first turn's (``required``: a tool call, as the openai-agents SDK forces it;
    later turns are ``auto`` either way)."""
    from aiosmtpd.controller import Controller  # the bench extra

    chosen = list(tasks if tasks is not None else load_tasks())
    if categories:
        chosen = [t for t in chosen if t.category in categories]
    chosen = chosen[:limit] if limit else chosen
    if tool_choice not in ("auto", "required"):
        raise InvalidRequestError(f"tool_choice {tool_choice!r}: use auto or required")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise InvalidRequestError(f"unknown mode {', '.join(unknown)}; use {', '.join(MODES)}")
    started = time.monotonic()
    sink = _SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory(prefix="llmasos-bench-tasks-") as tmp:
            settings = Settings.model_validate(
                {
                    "home": Path(tmp),
                    "default_model": model,
                    "smtp_host": "127.0.0.1",
                    "smtp_port": port,
                    "smtp_security": "none",
                    "mail_from": "suite@llmasos.local",
                }
            )
            with open_database(settings) as database:
                users = UserManager(database)
                users.create("suite-admin")  # the first user is the admin; trials are users
                files = FileSystem.open(settings, database, engine)
                knowledge = KnowledgeBase.open(settings, database, engine)
                personal = personal_of(settings, database, engine)
                system = ToolSystem(settings, database, engine, files=files, knowledge=knowledge)
                store = TaskStore(database, ContentCipher(load_master_key(settings)))
                runtimes = {
                    mode: AgentRuntime(store, system, priority=0, constrained=mode == "constrained")
                    for mode in modes
                }
                gate = asyncio.Semaphore(max(1, concurrency))
                counter = iter(range(1_000_000))

                async def one(task: SuiteTask, mode: str, trial: int) -> TrialResult:
                    async with gate:
                        info = users.create(f"suite{next(counter)}", role="user")
                        principal = Principal(
                            user_id=info.id,
                            name=info.name,
                            role="user",
                            scopes=ROLE_SCOPES["user"],
                        )
                        return await _trial(task, mode, trial, runtimes[mode], principal)

                async def _trial(
                    task: SuiteTask,
                    mode: str,
                    trial: int,
                    runtime: AgentRuntime,
                    principal: Principal,
                ) -> TrialResult:
                    await seed(task, personal, files, principal.user_id, knowledge)
                    before = await snapshot(personal, files, principal.user_id)
                    trial_started = time.monotonic()
                    spec = TaskSpec(
                        instruction=task.instruction,
                        model=model,
                        tools=task.tools,
                        granted=task.tools,
                        budget=budget,
                        tool_choice=tool_choice,
                    )
                    record = await runtime.create(principal, spec)
                    await runtime.wait(record.id)
                    record = store.load(record.id)
                    after = await snapshot(personal, files, principal.user_id)
                    new_ids = set(after["outbox"]) - set(before["outbox"])
                    delivered = delivered_count(
                        personal, principal.user_id, new_ids, [raw for _, raw in sink.received]
                    )
                    graded = grade(
                        task,
                        before,
                        after,
                        record.result if record.status == TaskStatus.COMPLETED else None,
                        delivered=delivered,
                    )
                    steps = store.steps(record.id)
                    result = TrialResult(
                        task=task.id,
                        category=task.category,
                        mode=mode,
                        trial=trial,
                        passed=graded.passed,
                        status=record.status.label,
                        steps=len(steps),
                        tokens=record.tokens,
                        seconds=round(time.monotonic() - trial_started, 3),
                        tools_called=[s.tool for s in steps if s.tool],
                        answer=record.result,
                        failures=graded.failures,
                    )
                    mark = "pass" if result.passed else "fail"
                    progress(f"{task.id} [{mode} #{trial}] {mark} ({record.status.label})")
                    return result

                jobs = [
                    one(task, mode, trial)
                    for trial in range(1, trials + 1)
                    for mode in modes
                    for task in chosen
                ]
                results = list(await asyncio.gather(*jobs))
                for runtime in runtimes.values():
                    await runtime.close()
                await knowledge.worker.close()
    finally:
        controller.stop()
    return SuiteReport(
        model=model,
        k=trials,
        tasks=len(chosen),
        modes=summarize(results, modes),
        results=results,
        seconds=round(time.monotonic() - started, 1),
        settings={
            "budget": budget.to_dict(),
            "concurrency": concurrency,
            "tool_choice": tool_choice,
        },
    )


def plot_suite(report: SuiteReport, path: Path) -> None:
    """Bars per category: success rate and pass^k for each mode."""
    from llmasos.bench.plot import _pyplot

    plt = _pyplot()
    categories = [*sorted({c for m in report.modes for c in m.by_category}), "all"]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    width = 0.8 / max(1, len(report.modes))
    for axis, metric, label in (
        (axes[0], "success_rate", "success rate (pass^1)"),
        (axes[1], "pass_k", f"pass^{report.k}"),
    ):
        for index, summary in enumerate(report.modes):
            values = [summary.by_category.get(c, {}).get(metric, 0.0) for c in categories[:-1]]
            values.append(getattr(summary, metric))
            positions = [i + index * width for i in range(len(categories))]
            axis.bar(positions, values, width, label=summary.mode)
        axis.set_xticks([i + width * (len(report.modes) - 1) / 2 for i in range(len(categories))])
        axis.set_xticklabels(categories, rotation=30, ha="right")
        axis.set_title(label)
        axis.set_ylim(0, 1)
        axis.legend()
    figure.suptitle(f"task suite: {report.tasks} tasks x {report.k} trials, {report.model}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_json(report: SuiteReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
