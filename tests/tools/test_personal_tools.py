"""The personal tools through the real plugin registry and `ToolSet`: registered with
their permissions, schema-checked, acting for the calling user, refusing bad times with a
readable error, and keyed by task step so a resumed task does nothing twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from llmasos.access.principal import ROLE_SCOPES, Principal
from llmasos.access.users import UserManager
from llmasos.config import Settings
from llmasos.plugins import PluginRegistry, register_builtins
from llmasos.storage import Database
from llmasos.tools import ToolContext, ToolSystem
from llmasos.tools.personal import Personal, personal_of
from llmasos.tools.records import Owner
from llmasos.tools.registry import ToolSet
from tests.memory.conftest import WordEngine
from tests.tools.conftest import SmtpSink

PERSONAL = {
    "notes_create", "notes_search", "notes_update", "notes_delete",
    "calendar_create_event", "calendar_list_events", "calendar_delete_event",
    "reminder_create", "reminder_list", "reminder_delete", "mail_send", "mail_inbox",
}  # fmt: skip


def registry() -> PluginRegistry:
    found = PluginRegistry()
    register_builtins(found)
    return found


def context(settings: Settings, database: Database, *, scopes: Any = None, step: int = 1,
            user: str = "alice") -> ToolContext:  # fmt: skip
    users = UserManager(database)
    if "admin" not in [u.name for u in users.list()]:
        users.create("admin")  # the first user is the admin
    found = [u for u in users.list() if u.name == user]
    user_id = found[0].id if found else users.create(user).id
    principal = Principal(
        user_id=user_id, name="alice", role="user", scopes=scopes or ROLE_SCOPES["user"]
    )
    system = ToolSystem(settings=settings, database=database, engine=WordEngine())
    return ToolContext(principal, system, task_id="task_1", step=step)


def load(ctx: ToolContext, allowed: Any = None) -> ToolSet:
    return asyncio.run(ToolSet.load(ctx, allowed=allowed, registry=registry()))


def bundle(ctx: ToolContext) -> Personal:
    return personal_of(ctx.system.settings, ctx.system.database, ctx.system.engine)


def test_registered_with_permissions_and_groups(settings: Settings, database: Database) -> None:
    tools = load(context(settings, database))
    assert set(tools.names()) >= PERSONAL
    side_effects = {t.spec.name for t in tools.tools() if t.spec.side_effect}
    expected = {"notes_update", "notes_delete", "mail_send", "calendar_create_event",
                "calendar_delete_event", "reminder_create", "reminder_delete"}  # fmt: skip
    assert side_effects >= expected
    assert "notes_search" not in side_effects
    only_notes = load(context(settings, database, scopes=frozenset({"notes"})))
    assert {n for n in only_notes.names() if n in PERSONAL} == {
        "notes_create", "notes_search", "notes_update", "notes_delete"
    }  # fmt: skip
    assert set(load(context(settings, database), allowed=["calendar"]).names()) == {
        "calendar_create_event", "calendar_list_events", "calendar_delete_event",
        "reminder_create", "reminder_list", "reminder_delete",
    }  # fmt: skip


def test_a_resumed_step_does_not_act_twice(settings: Settings, database: Database) -> None:
    ctx = context(settings, database, step=4)
    tools = load(ctx)
    first = asyncio.run(tools.call("notes_create", '{"title": "Pack bags"}', ctx))
    again = asyncio.run(tools.call("notes_create", '{"title": "Pack bags"}', ctx))
    assert not first.is_error and again.output == first.output
    assert first.effects and first.effects[0].startswith("created note note_")
    owner = Owner.for_user(ctx.principal.user_id)
    assert len(bundle(ctx).notes.list_notes(owner)) == 1
    found = asyncio.run(tools.call("notes_search", {"query": "bags"}, ctx))
    assert found.output["results"][0]["title"] == "Pack bags"
    note_id = first.output["id"]
    describe = asyncio.run(tools.get("notes_delete").describe({"id": note_id}, ctx))
    assert describe == f"delete the note {note_id} 'Pack bags'"
    other_user = context(settings, database, step=9, user="bob")
    missing = asyncio.run(tools.call("notes_delete", {"id": note_id}, other_user))
    assert missing.is_error and missing.output["code"] == "note_not_found"


def test_bad_times_come_back_as_readable_errors(settings: Settings, database: Database) -> None:
    ctx = context(settings, database)
    tools = load(ctx)
    past = asyncio.run(tools.call("reminder_create", {"text": "x", "due": "2001-01-01T10:00"}, ctx))
    assert past.is_error and past.output["code"] == "time_in_past"
    assert "in the past" in past.output["error"]
    zone = asyncio.run(tools.call("calendar_create_event", {
        "title": "x", "start": "2031-01-01T10:00", "time_zone": "Moon/Base"}, ctx))  # fmt: skip
    assert zone.is_error and zone.output["code"] == "invalid_time_zone"
    extra = asyncio.run(tools.call("reminder_create", {"text": "x", "when": "soon"}, ctx))
    assert extra.is_error and extra.output["code"] == "invalid_arguments"
    made = asyncio.run(tools.call("reminder_create", {"text": "call", "in_seconds": 600}, ctx))
    listed = asyncio.run(tools.call("reminder_list", {}, ctx))
    assert [r["id"] for r in listed.output["reminders"]] == [made.output["id"]]


def test_mail_send_shows_exactly_what_it_sends(
    tmp_path: Path, database: Database, smtp_sink: SmtpSink
) -> None:
    settings = Settings(home=tmp_path / "mail-home", smtp_host=smtp_sink.host,
                        smtp_port=smtp_sink.port, smtp_security="none",
                        mail_from="os@example.org")  # fmt: skip
    ctx = context(settings, database, step=2)
    tools = load(ctx)
    arguments = {"to": ["bob@example.com"], "subject": "Report", "body": "Line 1\nLine 2"}
    shown = asyncio.run(tools.get("mail_send").describe(arguments, ctx))
    assert shown == "send an email to bob@example.com\nsubject: Report\nbody:\nLine 1\nLine 2"
    first = asyncio.run(tools.call("mail_send", arguments, ctx))
    again = asyncio.run(tools.call("mail_send", arguments, ctx))
    assert first.output["status"] == "sent" and again.output == first.output
    assert len(smtp_sink.received) == 1
    inbox = asyncio.run(tools.call("mail_inbox", {}, ctx))
    assert inbox.is_error and "admin" in inbox.output["error"]
