"""``fs ask``'s plans: what the model proposes is parsed leniently, every step is checked
against the real tree, and nothing destructive runs without confirmation. The "model" is the
fake engine's script (the real one is exercised by the CLI test)."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.knowledge import fsplan
from llmasos.knowledge.filesystem import FileSystem
from tests.knowledge.conftest import ALICE
from tests.memory.conftest import WordEngine


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


async def summarizer(text: str) -> tuple[str, str]:
    return f"summary of {len(text)} characters", "test-model"


def statuses(steps: list[fsplan.PlanStep]) -> list[tuple[str, str | None, str]]:
    return [(s.action, s.path, s.status) for s in steps]


@pytest.fixture
def files(fs: FileSystem) -> FileSystem:
    run(fs.put_bytes(ALICE, "/notes/budget.md", b"The budget for the garden shed."))
    run(fs.put_bytes(ALICE, "/notes/budget.md", b"The budget for the new garden shed."))
    run(fs.put_bytes(ALICE, "/notes/recipes.txt", b"Soup and bread."))
    run(fs.put_bytes(ALICE, "/photo.jpg", b"\xff\xd8\xff\0binary"))
    return fs


def test_find_then_summarize_found_runs_and_destructive_steps_wait(files: FileSystem) -> None:
    steps = fsplan.parse_steps(
        [
            {"action": "find", "query": "garden shed budget"},
            {"action": "summarize", "path": "@found"},
            {"action": "delete", "path": "/notes/recipes.txt"},
            {"action": "move", "path": "/notes/budget.md", "to": "/archive/"},
        ]
    )
    done = run(fsplan.run(files, ALICE, steps, summarizer, confirm=False))
    assert done[0].status == "done" and done[0].result[0]["path"] == "/notes/budget.md"
    summaries = [s for s in done if s.action == "summarize"]
    assert summaries and all(s.status == "done" for s in summaries)
    assert statuses(done)[-2:] == [
        ("delete", "/notes/recipes.txt", "needs_confirmation"),
        ("move", "/notes/budget.md", "needs_confirmation"),
    ]
    assert files.read(ALICE, "/notes/recipes.txt") == b"Soup and bread."  # nothing changed
    confirmed = run(fsplan.run(files, ALICE, done[-2:], summarizer, confirm=True))
    assert [s.status for s in confirmed] == ["done", "done"]
    assert [e.path for e in files.list_dir(ALICE, "/archive")] == ["/archive/budget.md"]


def test_invalid_steps_are_refused_with_the_reason(files: FileSystem) -> None:
    steps = fsplan.parse_steps(
        [
            {"action": "format_disk"},
            {"action": "delete", "path": "/nope.txt"},
            {"action": "delete"},
            {"action": "move", "path": "/notes/recipes.txt"},
            {"action": "move", "path": "/notes/recipes.txt", "to": "/notes/budget.md"},
            {"action": "rollback", "path": "/notes/recipes.txt"},
            {"action": "rollback", "path": "/notes/budget.md", "to": "seven"},
            {"action": "summarize", "path": "/photo.jpg"},
        ]
    )
    assert len(steps) == 8
    done = run(fsplan.run(files, ALICE, steps, summarizer, confirm=True))
    problems = [(s.status, s.problem or "") for s in done]
    assert problems[0][0] == "refused" and "unknown action" in problems[0][1]
    assert "no file /nope.txt" in problems[1][1]
    assert "needs a path" in problems[2][1]
    assert "destination" in problems[3][1]
    assert problems[4][0] == "refused" and "already exists" in problems[4][1]
    assert "only one version" in problems[5][1]
    assert "version number" in problems[6][1]
    assert "no text" in problems[7][1]
    assert files.read(ALICE, "/notes/recipes.txt") == b"Soup and bread."
    with pytest.raises(InvalidRequestError):
        fsplan.parse_steps({"steps": []})
    summarize_found = fsplan.parse_steps([{"action": "summarize", "path": "@found"}])
    [refused] = run(fsplan.run(files, ALICE, summarize_found, summarizer, confirm=True))
    assert "needs a find step" in (refused.problem or "")


def test_propose_asks_under_the_schema_and_lists_the_paths(
    files: FileSystem, engine: WordEngine
) -> None:
    answer = {"steps": [{"action": "find", "query": "budget"}, {"action": "eat"}]}
    engine.script = lambda request: [json.dumps(answer)]
    plan = run(fsplan.propose(engine, files, ALICE, "find my budget"))
    request = engine.requests[-1]
    assert request.sampling.structured is not None
    assert request.sampling.structured.schema == fsplan.plan_schema()
    assert "/notes/budget.md" in str(request.messages)
    assert [s.action for s in plan.steps] == ["find", "eat"] and plan.steps[1].status == "refused"
    engine.script = lambda request: ['{"steps": [{"act']  # cut off
    with pytest.raises(LLMasOSError, match="did not return a plan"):
        run(fsplan.propose(engine, files, ALICE, "find my budget"))
    with pytest.raises(InvalidRequestError):
        run(fsplan.propose(engine, files, ALICE, "  "))
