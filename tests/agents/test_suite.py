"""The task suite's grading on real final states, made by running the tools directly (no
model): the right changes pass; a wrong target, an extra change or a wrong answer fails.
And the suite itself: at least 40 tasks, every tool they name registered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.access.users import UserManager
from llmasos.agents.suite import AppState, SuiteTask, grade, load_tasks, seed, snapshot
from llmasos.agents.suite_bench import delivered_count
from llmasos.config import Settings
from llmasos.knowledge.filesystem import FileSystem
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.plugins import PluginRegistry, register_builtins
from llmasos.storage import Database, open_database
from llmasos.tools import ToolContext, ToolSystem
from llmasos.tools.personal import Personal, personal_of
from llmasos.tools.registry import ToolSet
from tests.memory.conftest import WordEngine
from tests.tools.conftest import SmtpSink, smtp_sink

__all__ = ["smtp_sink"]

TASKS = {task.id: task for task in load_tasks()}
FINAL = {"completed", "stopped", "failed", "cancelled"}


def test_suite_has_forty_tasks_over_the_personal_tools() -> None:
    assert len(TASKS) >= 40
    categories = {task.category for task in TASKS.values()}
    assert {
        "notes", "calendar", "reminders", "mail", "files", "calculator", "clock", "knowledge", "os"
    } < categories  # fmt: skip
    registry = PluginRegistry()
    register_builtins(registry)
    names = {tool.spec.name for tool in registry.tools() if hasattr(tool, "spec")}
    for task in TASKS.values():
        assert set(task.tools) <= names, task.id
        assert task.expect, f"{task.id} checks nothing"


class World:
    """One database with the personal stores, the file space and a user per scenario."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.engine = WordEngine()
        self.database = database
        self.users = UserManager(database)
        self.users.create("admin")
        self.system = ToolSystem(
            settings, database, self.engine, files=FileSystem.open(settings, database, self.engine)
        )
        self.personal: Personal = personal_of(settings, database, self.engine)
        self.count = self.calls = 0

    def user(self) -> Principal:
        self.count += 1
        info = self.users.create(f"u{self.count}", role="user")
        return Principal(user_id=info.id, name=info.name, role="user", scopes=ROLE_SCOPES["user"])

    def state(self, principal: Principal) -> AppState:
        return asyncio.run(snapshot(self.personal, self.system.files, principal.user_id))

    def start(self, task: SuiteTask) -> tuple[Principal, AppState]:
        principal = self.user()
        asyncio.run(seed(task, self.personal, self.system.files, principal.user_id))
        return principal, self.state(principal)

    def call(self, principal: Principal, tool: str, arguments: dict[str, Any]) -> Any:
        self.calls += 1  # a step of its own: side effects are keyed by task and step
        context = ToolContext(principal, self.system, task_id="task_suite", step=self.calls)
        registry = PluginRegistry()
        register_builtins(registry)

        async def run() -> Any:
            tools = await ToolSet.load(context, registry=registry)
            result = await tools.call(tool, arguments, context)
            assert not result.is_error, result.output
            return result.output

        return asyncio.run(run())


@pytest.fixture
def world(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[World]:
    settings = Settings(
        home=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=smtp_sink.port,
        smtp_security="none",
        mail_from="suite@llmasos.local",
    )
    with open_database(settings) as database:
        yield World(settings, database)


def note_id(world: World, principal: Principal, title: str) -> str:
    found = world.call(principal, "notes_search", {"query": title})["results"]
    return str(next(n["id"] for n in found if n["title"] == title))


def test_the_asked_deletion_passes_and_a_wrong_one_fails(world: World) -> None:
    task = TASKS["notes-delete-old"]
    principal, before = world.start(task)
    world.call(principal, "notes_delete", {"id": note_id(world, principal, "Old passwords")})
    assert grade(task, before, world.state(principal), "Deleted.").passed

    principal, before = world.start(task)  # collateral damage: the wrong note goes
    world.call(principal, "notes_delete", {"id": note_id(world, principal, "Recipes")})
    failed = grade(task, before, world.state(principal), "Deleted.")
    assert not failed.passed
    assert any("nothing removed matching" in f for f in failed.failures)


def test_mail_and_event_graded_with_delivery_and_collateral(
    world: World, smtp_sink: SmtpSink
) -> None:
    task = TASKS["multi-mail-event"]
    principal, before = world.start(task)
    world.call(
        principal,
        "calendar_create_event",
        {"title": "Project kickoff", "start": "2030-04-02T14:00"},
    )
    world.call(
        principal,
        "mail_send",
        {"to": ["team@example.com"], "subject": "Kickoff", "body": "April 2 at 14:00."},
    )
    after = world.state(principal)
    new = set(after["outbox"]) - set(before["outbox"])
    received = [raw for _, _, raw in smtp_sink.received]
    delivered = delivered_count(world.personal, principal.user_id, new, received)
    assert delivered == 1
    assert grade(task, before, after, "Done.", delivered=delivered).passed
    assert not grade(task, before, after, "Done.", delivered=0).passed  # never arrived

    world.call(principal, "notes_create", {"title": "stray"})  # something nobody asked for
    collateral = grade(task, before, world.state(principal), "Done.", delivered=delivered)
    assert not collateral.passed
    assert any(f.startswith("notes: 1 added beyond") for f in collateral.failures)


def test_read_only_tasks_are_graded_by_answer_and_unchanged_state(world: World) -> None:
    task = TASKS["files-plate"]
    principal, before = world.start(task)
    assert set(before["files"]) == {"/car/insurance.txt", "/notes/ideas.txt"}
    assert grade(task, before, world.state(principal), "The plate is KL-349-ZX.").passed
    assert not grade(task, before, world.state(principal), "I could not find it.").passed
    assert not grade(task, before, world.state(principal), None).passed

    reminder_task = TASKS["reminder-create-tokyo"]
    principal, before = world.start(reminder_task)
    world.call(
        principal,
        "reminder_create",
        {"text": "call Kenji", "due": "2030-03-01T19:00", "time_zone": "Asia/Tokyo"},
    )
    assert grade(reminder_task, before, world.state(principal), None).passed
    principal, before = world.start(reminder_task)  # the right text at the wrong time
    world.call(principal, "reminder_create", {"text": "call Kenji", "due": "2030-03-01T19:00"})
    assert not grade(reminder_task, before, world.state(principal), None).passed


@pytest.mark.model
@pytest.mark.skipif(
    any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
)
def test_bench_tasks_runs_a_task_on_the_embedded_model(tmp_path: Path) -> None:
    """`llmasos bench tasks --limit 1` end to end: both modes, graded, table, JSON and PNG.
    Whether the tiny model passes is not asserted; with the first turn ``required`` the
    grammar makes its first step a call of the task's tool."""
    from typer.testing import CliRunner

    from llmasos.cli.main import app

    out, png = tmp_path / "tasks.json", tmp_path / "tasks.png"
    result = CliRunner().invoke(
        app,
        ["bench", "tasks", "--category", "calculator", "--limit", "1", "--trials", "1",
         "--max-steps", "2", "--max-seconds", "300", "--tool-choice", "required",
         "--json", str(out), "--plot", str(png)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pass^1" in result.stdout and "unconstrained" in result.stdout
    report = json.loads(out.read_text())
    assert [r["mode"] for r in report["results"]] == ["constrained", "unconstrained"]
    assert report["settings"]["tool_choice"] == "required"
    assert report["results"][0]["tools_called"][:1] == ["calculator"]
    for trial in report["results"]:
        assert trial["task"] == "calc-multiply" and trial["status"] in FINAL
        assert trial["passed"] == (not trial["failures"])
    assert {m["mode"] for m in report["modes"]} == {"constrained", "unconstrained"}
    assert png.read_bytes().startswith(b"\x89PNG")


def test_a_knowledge_task_is_indexed_before_it_starts(world: World, tmp_path: Path) -> None:
    """A task's ``knowledge`` documents are in a vector store of the user's, indexed, before
    the task runs: file_search finds the passage, and the note made from it passes."""
    task = TASKS["knowledge-to-note"]
    settings = Settings(home=tmp_path)
    knowledge = KnowledgeBase.open(settings, world.database, world.engine)
    system = replace(world.system, knowledge=knowledge)
    principal = world.user()

    async def scenario() -> tuple[Any, AppState, AppState]:
        await seed(task, world.personal, system.files, principal.user_id, knowledge)
        before = await snapshot(world.personal, system.files, principal.user_id)
        registry = PluginRegistry()
        register_builtins(registry)
        context = ToolContext(principal, system, task_id="task_suite", step=1)
        tools = await ToolSet.load(context, registry=registry)
        found = await tools.call("file_search", {"query": "wifi password"}, context)
        await tools.call(
            "notes_create",
            {"title": "Wifi", "body": "maple-7731"},
            ToolContext(principal, system, task_id="task_suite", step=2),
        )
        after = await snapshot(world.personal, system.files, principal.user_id)
        await knowledge.worker.close()
        return found, before, after

    found, before, after = asyncio.run(scenario())
    assert not found.is_error, found.output
    assert "maple-7731" in found.text() and "house-guide.md" in found.text()
    assert [s.name for s in knowledge.list_stores(principal.user_id)] == ["documents"]
    assert grade(task, before, after, "Saved.").passed
