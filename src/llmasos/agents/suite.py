"""The task suite: hand-written tasks over the personal tools, graded by the apps' final state.

A `SuiteTask` is data (``agents/data/tasks.yaml``): an instruction, the tools it may use,
what the user's apps hold before it runs (`setup`), and what must be true after (`expect`).
Grading follows AppWorld: `snapshot` reads every app the tools touch (notes, events,
reminders, the mail outbox, files) for one user, and `grade` compares the snapshot after
the task with the one before. Each expected addition, removal or change must be there, and
nothing else may differ: an edit, a deletion, a message or a file the task did not ask for
is collateral damage and fails the task, as does an app the task was not about that
changed. Read-only tasks are graded by their answer (``expect.answer``) and by nothing
having changed. This module knows nothing of models: it grades states, whoever made them.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import yaml

from llmasos.errors import InvalidRequestError
from llmasos.knowledge.filesystem import FileSystem
from llmasos.knowledge.fstypes import FileOwner
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.tools.personal import Personal
from llmasos.tools.records import Owner

TASKS_FILE: Final = Path(__file__).parent / "data" / "tasks.yaml"
APPS: Final = ("notes", "events", "reminders", "outbox", "files")
SETUPS: Final = (*APPS, "knowledge")
"""What a task's ``setup`` may fill: the apps, and ``knowledge`` (documents, by file name,
indexed into a vector store of the user's before the task starts)."""
KNOWLEDGE_STORE: Final = "documents"
CHANGE_KINDS: Final = ("added", "removed", "changed")
_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "notes": ("title", "body", "tags"),
    "events": ("title", "start", "end", "time_zone", "all_day", "location", "notes"),
    "reminders": ("text", "due", "time_zone", "status"),
    "outbox": ("to", "cc", "subject", "body", "status"),
    "files": ("path", "text"),
}
"""What of an item counts as its state (ids, timestamps and message ids do not)."""

Matcher = dict[str, Any]
"""Field -> text it must contain (case-insensitive); a list: all of them;
``{"any": [...]}``: one of them."""


@dataclass(frozen=True)
class SuiteTask:
    id: str
    category: str
    instruction: str
    tools: tuple[str, ...]
    setup: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)

    def answer_needs(self) -> list[Any]:
        """``expect.answer`` with ``{current_year}`` filled in."""
        year = str(datetime.now(UTC).year)
        return [
            need.replace("{current_year}", year) if isinstance(need, str) else need
            for need in self.expect.get("answer", [])
        ]


def load_tasks(path: Path = TASKS_FILE) -> list[SuiteTask]:
    """The suite, checked: unique ids, known apps and change kinds."""
    raw = yaml.safe_load(path.read_text())
    tasks: list[SuiteTask] = []
    for entry in raw:
        task = SuiteTask(
            id=entry["id"],
            category=entry["category"],
            instruction=entry["instruction"],
            tools=tuple(entry["tools"]),
            setup=entry.get("setup") or {},
            expect=entry.get("expect") or {},
        )
        for app, expected in task.expect.items():
            if app == "answer":
                continue
            if app not in APPS or not set(expected) <= set(CHANGE_KINDS):
                raise InvalidRequestError(f"task {task.id}: bad expectation {app}: {expected}")
        if not set(task.setup) <= set(SETUPS) or any(t.id == task.id for t in tasks):
            raise InvalidRequestError(f"task {task.id}: bad setup or duplicate id")
        tasks.append(task)
    return tasks


# --- state ---------------------------------------------------------------------------------


AppState = dict[str, dict[str, dict[str, Any]]]
"""App -> item id (a path for files) -> the item's state fields."""


def _state_of(app: str, item: dict[str, Any]) -> dict[str, Any]:
    return {name: item.get(name) for name in _FIELDS[app]}


async def snapshot(personal: Personal, files: FileSystem | None, user_id: int | None) -> AppState:
    """Everything of one user's apps that a task could change."""
    owner = Owner.for_user(user_id)
    state: AppState = {
        "notes": {
            n["id"]: _state_of("notes", n) for n in personal.notes.list_notes(owner, limit=1000)
        },
        # a reminder an event carries is part of the event, not one the user set
        "reminders": {
            r["id"]: _state_of("reminders", r)
            for r in personal.reminders.list_reminders(owner, limit=1000)
            if r["event_id"] is None
        },
        "events": {
            e["id"]: _state_of("events", e)
            for e in personal.calendar.list_events(owner, limit=1000)
        },
        "outbox": {
            m["id"]: _state_of("outbox", m) for m in personal.mail.list_messages(owner, limit=1000)
        },
        "files": {},
    }
    if files is not None:
        file_owner = FileOwner.for_user(user_id)
        for path in files.all_paths(file_owner):
            data = files.read(file_owner, path)
            text = data.decode("utf-8", "replace")
            state["files"][path] = {
                "path": path,
                "text": text,
                "digest": hashlib.sha256(data).hexdigest(),
            }
    return state


async def seed(
    task: SuiteTask,
    personal: Personal,
    files: FileSystem | None,
    user_id: int | None,
    knowledge: KnowledgeBase | None = None,
) -> None:
    """Put the task's ``setup`` into the user's apps (directly, not as the task's doing);
    its ``knowledge`` documents are indexed before this returns."""
    owner = Owner.for_user(user_id)
    for note in task.setup.get("notes", []):
        await personal.notes.create(owner, note["title"], note.get("body", ""), note.get("tags"))
    for event in task.setup.get("events", []):
        personal.calendar.create(
            owner,
            event["title"],
            event["start"],
            end=event.get("end"),
            time_zone=event.get("time_zone"),
            location=event.get("location"),
        )
    for reminder in task.setup.get("reminders", []):
        personal.reminders.create(
            owner, reminder["text"], due=reminder["due"], time_zone=reminder.get("time_zone")
        )
    if task.setup.get("files"):
        if files is None:
            raise InvalidRequestError(f"task {task.id} needs the file space")
        for path, text in task.setup["files"].items():
            await files.put_bytes(FileOwner.for_user(user_id), path, text.encode())
    if task.setup.get("knowledge"):
        if knowledge is None:
            raise InvalidRequestError(f"task {task.id} needs the knowledge base")
        documents = [
            await asyncio.to_thread(
                knowledge.files.add_bytes, user_id, name, text.encode(), "assistants"
            )
            for name, text in task.setup["knowledge"].items()
        ]
        await knowledge.create_store(
            user_id, name=KNOWLEDGE_STORE, file_ids=[d.id for d in documents]
        )
        await knowledge.worker.wait_idle()


# --- grading -------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value).lower()
    return str(value if value is not None else "").lower()


def _contains(haystack: str, need: Any) -> bool:
    if isinstance(need, dict):
        return any(_contains(haystack, option) for option in need.get("any", []))
    if isinstance(need, list):
        return all(_contains(haystack, part) for part in need)
    return str(need).lower() in haystack


def matches(item: dict[str, Any], matcher: Matcher) -> bool:
    return all(_contains(_text(item.get(name)), need) for name, need in matcher.items())


@dataclass
class Grade:
    passed: bool
    failures: list[str] = field(default_factory=list)
    """Why not, one line each: a missing expectation or a collateral change."""


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {
        "added": [after[k] for k in after if k not in before],
        "removed": [before[k] for k in before if k not in after],
        "changed": [after[k] for k in after if k in before and after[k] != before[k]],
    }


def _assign(items: list[dict[str, Any]], matchers: list[Matcher]) -> list[Matcher]:
    """The matchers no distinct item satisfies (a small bipartite matching by search)."""

    def solve(index: int, used: frozenset[int]) -> list[Matcher] | None:
        if index == len(matchers):
            return []
        for position, item in enumerate(items):
            if position not in used and matches(item, matchers[index]):
                rest = solve(index + 1, used | {position})
                if rest is not None:
                    return rest
        return None

    if solve(0, frozenset()) is not None:
        return []
    return [m for m in matchers if not any(matches(item, m) for item in items)] or matchers


def grade(
    task: SuiteTask,
    before: AppState,
    after: AppState,
    answer: str | None,
    *,
    delivered: int | None = None,
) -> Grade:
    """Whether ``after`` is exactly ``before`` with the task's expected changes, and the answer
    says what it must. ``delivered``: messages the SMTP server received during the task
    (each message added to the outbox must be ``sent`` and have arrived)."""
    failures: list[str] = []
    for app in APPS:
        expected = task.expect.get(app, {})
        diff = _diff(before.get(app, {}), after.get(app, {}))
        for kind in CHANGE_KINDS:
            wanted: list[Matcher] = expected.get(kind, [])
            found = diff[kind]
            for missing in _assign(found, wanted):
                failures.append(f"{app}: nothing {kind} matching {missing}")
            if len(found) > len(wanted):
                extra = len(found) - len(wanted)
                shown = [{k: v for k, v in item.items() if k != "digest"} for item in found]
                failures.append(f"{app}: {extra} {kind} beyond what was asked: {shown}"[:400])
    sent = [m for m in _diff(before["outbox"], after["outbox"])["added"]]
    unsent = [m for m in sent if m.get("status") != "sent"]
    if unsent:
        failures.append(f"outbox: {len(unsent)} message(s) not sent: {unsent}"[:400])
    if delivered is not None and delivered != len(sent):
        failures.append(f"mail: the SMTP server received {delivered}, the outbox added {len(sent)}")
    needs = task.answer_needs()
    if needs:
        text = (answer or "").lower()
        for need in needs:
            if not _contains(text, need):
                failures.append(f"answer: does not contain {need!r}")
    return Grade(passed=not failures, failures=failures)
