"""``llmasos notes|calendar|reminders|notifications|outbox``: the personal tools' state, yours
to see and change directly.

Each command talks to a running server when one answers (as the machine's owner, like the
other local commands), else opens the database in this process. Reminders added without a
server fire when it next starts (once, even if their time has passed by then). Tables keep
ids whole; ``--json`` prints what the API returns. ``rm`` asks first unless ``--yes``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.text import Text

from llmasos.cli.memory import api
from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.remote import in_process
from llmasos.cli.root import app, console, err_console, state
from llmasos.errors import InvalidRequestError

T = TypeVar("T")
JSON = Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)]
LIMIT = Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")]
YES = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
TZ_HELP = "IANA time zone the times are read and shown in (e.g. Europe/Paris; default UTC)."

notes_app = typer.Typer(help="Your notes.", no_args_is_help=True)
calendar_app = typer.Typer(
    help="Your calendar (iCalendar import and export).", no_args_is_help=True
)
reminders_app = typer.Typer(help="Reminders that notify you at their time.", no_args_is_help=True)
app.add_typer(notes_app, name="notes")
app.add_typer(calendar_app, name="calendar")
app.add_typer(reminders_app, name="reminders")


def local(work: Callable[[Any, Any], Awaitable[T] | T]) -> T:
    """Run ``work(personal, owner)`` on this machine's database (no server answered)."""
    import inspect

    from llmasos.tools.personal import open_personal
    from llmasos.tools.records import Owner

    async def go(database: Any, engine: Any) -> T:
        result = work(open_personal(state.settings, database, engine), Owner.for_user(None))
        return await result if inspect.isawaitable(result) else result

    return in_process(state.settings, state.store, go)


def confirm(what: str, yes: bool) -> None:
    if not yes and not typer.confirm(f"Delete {what}?", default=False):
        raise typer.Exit(1)


def cell(value: Any) -> Text:
    return Text("" if value is None else str(value))


# --- notes ---------------------------------------------------------------------------------

NOTE_FIELDS = "id, object, title, body, tags, created_at, updated_at (search: score)"


def print_notes(notes: list[dict[str, Any]], as_json: bool, *, scores: bool = False) -> None:
    if as_json:
        print_json(notes)
        return
    if not notes:
        err_console.print("no notes", highlight=False)
        return
    rows = table(Column("id", key=True), "title", "body", "tags")
    if scores:
        rows.add_column("score", no_wrap=True)
    for note in notes:
        cells = [note["id"], cell(note["title"]), cell(note["body"][:200]), ", ".join(note["tags"])]
        if scores:
            cells.append(f"{note.get('score') or 0:.3f}")
        rows.add_row(*cells)
    print_table(rows, highlight=False)


def delete_item(route: str, store: str, item_id: str, yes: bool) -> None:
    """Delete one of the user's items (asks first unless ``yes``): through the server at
    ``route/ID`` when one answers, else in this process from the ``store`` of that name."""
    confirm(item_id, yes)
    if api("DELETE", f"{route}/{item_id}") is None:
        local(lambda p, owner: getattr(p, store).delete(owner, item_id))
    console.print(f"deleted {item_id}", highlight=False)


@notes_app.command("add")
def notes_add(
    title: Annotated[str, typer.Argument(help="The note's title.")],
    body: Annotated[str, typer.Option("--body", "-b", help="The note's text.")] = "",
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeatable).")] = None,
    as_json: JSON = False,
) -> None:
    """Write a note.

    --json fields: id, object, title, body, tags, created_at, updated_at.
    """
    request = {"title": title, "body": body, "tags": tags or []}
    note = api("POST", "/v1/notes", json=request)
    if note is None:
        note = local(lambda p, owner: p.notes.create(owner, title, body, tags or []))
    if as_json:
        print_json(note)
    else:
        console.print(f"created {note['id']}", highlight=False)


@notes_app.command("ls")
def notes_ls(
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="At most this many.")
    ] = 100,
    as_json: JSON = False,
) -> None:
    """List your notes, newest first.

    --json fields: id, object, title, body, tags, created_at, updated_at.
    """
    answer = api("GET", "/v1/notes", params={"limit": limit})
    notes = (
        answer["data"]
        if answer is not None
        else local(lambda p, owner: p.notes.list_notes(owner, limit=limit))
    )
    print_notes(notes, as_json)


@notes_app.command("search")
def notes_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, max=50, help="How many results.")] = 10,
    as_json: JSON = False,
) -> None:
    """Search your notes by words and meaning, best first.

    --json fields: id, object, title, body, tags, created_at, updated_at, score.
    """
    answer = api("POST", "/v1/notes/search", json={"query": query, "k": k})
    notes = (
        answer["data"]
        if answer is not None
        else local(lambda p, owner: p.notes.search(owner, query, k=k))
    )
    print_notes(notes, as_json, scores=True)


@notes_app.command("show")
def notes_show(
    note_id: Annotated[str, typer.Argument(help="The note id (note_…).")], as_json: JSON = False
) -> None:
    """Print one note.

    --json fields: id, object, title, body, tags, created_at, updated_at.
    """
    note = api("GET", f"/v1/notes/{note_id}")
    if note is None:
        note = local(lambda p, owner: p.notes.get(owner, note_id))
    if as_json:
        print_json(note)
        return
    console.print(Text(note["title"], style="bold"))
    if note["tags"]:
        console.print(Text("tags: " + ", ".join(note["tags"])))
    if note["body"]:
        console.print(Text(note["body"]))


@notes_app.command("edit")
def notes_edit(
    note_id: Annotated[str, typer.Argument(help="The note id (note_…).")],
    title: Annotated[str | None, typer.Option("--title", help="The new title.")] = None,
    body: Annotated[str | None, typer.Option("--body", "-b", help="The new text.")] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", help="Replace the tags (repeatable).")
    ] = None,
) -> None:
    """Change a note's title, text or tags."""
    if title is None and body is None and tags is None:
        raise InvalidRequestError("nothing to change: give --title, --body or --tag")
    request = {"title": title, "body": body, "tags": tags}
    note = api("PATCH", f"/v1/notes/{note_id}", json=request)
    if note is None:
        note = local(
            lambda p, owner: p.notes.update(owner, note_id, title=title, body=body, tags=tags)
        )
    console.print(f"updated {note['id']}", highlight=False)


@notes_app.command("rm")
def notes_rm(
    note_id: Annotated[str, typer.Argument(help="The note id (note_…).")], yes: YES = False
) -> None:
    """Delete a note (asks first unless --yes)."""
    delete_item("/v1/notes", "notes", note_id, yes)


# --- calendar ------------------------------------------------------------------------------


def print_events(events: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(events)
        return
    if not events:
        err_console.print("no events", highlight=False)
        return
    rows = table(Column("id", key=True), Column("start", key=True), "end", "title", "location")
    for event in events:
        start = event["start"][:10] if event["all_day"] else event["start"]
        rows.add_row(
            event["id"], start, event["end"], cell(event["title"]), cell(event["location"])
        )
    print_table(rows, highlight=False)


@calendar_app.command("add")
def calendar_add(
    title: Annotated[str, typer.Argument(help="What the event is.")],
    start: Annotated[str, typer.Option("--start", help="ISO 8601, e.g. 2026-03-14T09:30.")],
    end: Annotated[str | None, typer.Option("--end", help="Default: an hour later.")] = None,
    time_zone: Annotated[str | None, typer.Option("--tz", help=TZ_HELP)] = None,
    location: Annotated[str | None, typer.Option("--location", help="Where.")] = None,
    notes: Annotated[str | None, typer.Option("--notes", help="Details.")] = None,
    all_day: Annotated[bool, typer.Option("--all-day", help="A whole-day event.")] = False,
    remind: Annotated[
        float | None, typer.Option("--remind", help="Remind me this many minutes before.")
    ] = None,
    as_json: JSON = False,
) -> None:
    """Add an event to your calendar.

    --json fields: id, object, uid, title, start, end, time_zone, all_day, location, notes,
    created_at, updated_at (reminder_id with --remind).
    """
    request = {"title": title, "start": start, "end": end, "time_zone": time_zone,
               "location": location, "notes": notes, "all_day": all_day,
               "remind_minutes_before": remind}  # fmt: skip
    event = api("POST", "/v1/calendar/events", json=request)
    if event is None:
        fields = {k: v for k, v in request.items() if k not in ("title", "start")}
        event = local(lambda p, owner: p.calendar.create(owner, title, start, **fields))
    if as_json:
        print_json(event)
    else:
        console.print(f"created {event['id']} at {event['start']}", highlight=False)


@calendar_app.command("ls")
def calendar_ls(
    start: Annotated[str | None, typer.Option("--from", help="Events ending after this.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Events starting before this.")] = None,
    time_zone: Annotated[str | None, typer.Option("--tz", help=TZ_HELP)] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="At most this many.")
    ] = 100,
    as_json: JSON = False,
) -> None:
    """List your events by start time.

    --json fields: id, object, uid, title, start, end, time_zone, all_day, location, notes,
    created_at, updated_at.
    """
    params = {"start": start, "end": end, "time_zone": time_zone, "limit": limit}
    answer = api("GET", "/v1/calendar/events", params={k: v for k, v in params.items() if v})
    events = (
        answer["data"]
        if answer is not None
        else local(
            lambda p, owner: p.calendar.list_events(
                owner, start=start, end=end, time_zone=time_zone, limit=limit
            )
        )
    )
    print_events(events, as_json)


@calendar_app.command("rm")
def calendar_rm(
    event_id: Annotated[str, typer.Argument(help="The event id (evt_…).")], yes: YES = False
) -> None:
    """Delete an event and its reminder (asks first unless --yes)."""
    delete_item("/v1/calendar/events", "calendar", event_id, yes)


@calendar_app.command("import")
def calendar_import(
    path: Annotated[Path, typer.Argument(help="An iCalendar (.ics) file.")],
    as_json: JSON = False,
) -> None:
    """Add the events of an .ics file (events already imported are updated, not doubled).

    --json fields: object, created, updated, ids.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidRequestError(f"cannot read {path}: {error.strerror}") from None
    result = api("POST", "/v1/calendar/import", files={"file": (path.name, data)})
    if result is None:
        result = local(lambda p, owner: p.calendar.import_ics(owner, data))
    if as_json:
        print_json(result)
    else:
        console.print(
            f"imported {result['created']} new and {result['updated']} updated event(s)",
            highlight=False,
        )


@calendar_app.command("export")
def calendar_export(
    path: Annotated[
        Path | None, typer.Argument(help="Write here (default: print to stdout).")
    ] = None,
) -> None:
    """Write your whole calendar as iCalendar (.ics)."""
    from llmasos.cli.remote import server_url

    url = server_url(state.settings)
    if url is not None:
        import httpx

        response = httpx.get(f"{url}/v1/calendar/export.ics", timeout=60)
        if response.status_code >= 400:
            raise InvalidRequestError(f"the server refused the export: {response.text[:200]}")
        data = response.content
    else:
        data = local(lambda p, owner: p.calendar.export_ics(owner))
    if path is None:
        typer.echo(data.decode("utf-8"), nl=False)
    else:
        path.write_bytes(data)
        err_console.print(f"wrote {path}", highlight=False)


# --- reminders and notifications -----------------------------------------------------------


@reminders_app.command("add")
def reminders_add(
    text: Annotated[str, typer.Argument(help="What to be reminded of.")],
    at: Annotated[str | None, typer.Option("--at", help="When: ISO 8601, in --tz.")] = None,
    after: Annotated[
        str | None, typer.Option("--in", help="After this long: 90s, 10m, 2h, 1d.")
    ] = None,
    time_zone: Annotated[str | None, typer.Option("--tz", help=TZ_HELP)] = None,
    as_json: JSON = False,
) -> None:
    """Set a reminder; it lands in `llmasos notifications` (and your webhook) at its time.

    --json fields: id, object, text, due, due_at, time_zone, status, event_id, created_at,
    fired_at.
    """
    from llmasos.config import parse_duration

    if (at is None) == (after is None):
        raise InvalidRequestError("give the time with --at TIME or --in DURATION")
    seconds = None if after is None else parse_duration(after)
    request = {"text": text, "due": at, "in_seconds": seconds, "time_zone": time_zone}
    reminder = api("POST", "/v1/reminders", json=request)
    if reminder is None:
        reminder = local(
            lambda p, owner: p.reminders.create(
                owner, text, due=at, in_seconds=seconds, time_zone=time_zone
            )
        )
        err_console.print("(no server is running: it fires once one is)", highlight=False)
    if as_json:
        print_json(reminder)
    else:
        console.print(f"reminder {reminder['id']} at {reminder['due']}", highlight=False)


@reminders_app.command("ls")
def reminders_ls(
    status: Annotated[str | None, typer.Option("--status", help="pending or fired.")] = None,
    as_json: JSON = False,
) -> None:
    """List your reminders, soonest first.

    --json fields: id, object, text, due, due_at, time_zone, status, event_id, created_at,
    fired_at.
    """
    answer = api("GET", "/v1/reminders", params={"status": status} if status else {})
    found = (
        answer["data"]
        if answer is not None
        else local(lambda p, owner: p.reminders.list_reminders(owner, status=status))
    )
    if as_json:
        print_json(found)
        return
    if not found:
        err_console.print("no reminders", highlight=False)
        return
    rows = table(
        Column("id", key=True), Column("due", key=True), Column("status", key=True), "text"
    )
    for reminder in found:
        rows.add_row(reminder["id"], reminder["due"], reminder["status"], cell(reminder["text"]))
    print_table(rows, highlight=False)


@reminders_app.command("rm")
def reminders_rm(
    reminder_id: Annotated[str, typer.Argument(help="The reminder id (rem_…).")], yes: YES = False
) -> None:
    """Cancel a reminder (asks first unless --yes)."""
    delete_item("/v1/reminders", "reminders", reminder_id, yes)


@app.command("notifications")
def notifications(
    unread: Annotated[bool, typer.Option("--unread", help="Only those not read yet.")] = False,
    mark_read: Annotated[
        bool, typer.Option("--mark-read", help="Mark every notification read after listing.")
    ] = False,
    limit: LIMIT = 50,
    as_json: JSON = False,
) -> None:
    """Your notification inbox (reminders that fired), newest first.

    --json fields: id, object, kind, title, body, source_ref, created_at, read, read_at,
    webhook.
    """
    params: dict[str, Any] = {"limit": limit, "unread": unread}
    answer = api("GET", "/v1/notifications", params=params)
    found = (
        answer["data"]
        if answer is not None
        else local(
            lambda p, owner: p.notifications.list_notifications(owner, unread=unread, limit=limit)
        )
    )
    if mark_read and found:
        ids = [n["id"] for n in found]
        if api("POST", "/v1/notifications/read", json={"ids": ids}) is None:
            local(lambda p, owner: p.notifications.mark_read(owner, ids))
    if as_json:
        print_json(found)
        return
    if not found:
        err_console.print("no notifications", highlight=False)
        return
    from datetime import UTC, datetime

    rows = table(Column("id", key=True), Column("when", key=True), "", "title", "detail")
    for item in found:
        when = datetime.fromtimestamp(item["created_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        rows.add_row(item["id"], when, "" if item["read"] else "new", cell(item["title"]),
                     cell(item["body"]))  # fmt: skip
    print_table(rows, highlight=False)


@app.command("outbox")
def outbox(
    status: Annotated[str | None, typer.Option("--status", help="queued, sent or failed.")] = None,
    limit: LIMIT = 50,
    as_json: JSON = False,
) -> None:
    """Mail sent as you (by you or your tasks), newest first, with failures' reasons.

    --json fields: id, object, to, cc, subject, body, status, error, message_id, created_at,
    sent_at.
    """
    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
    answer = api("GET", "/v1/outbox", params=params)
    found = (
        answer["data"]
        if answer is not None
        else local(lambda p, owner: p.mail.list_messages(owner, status=status, limit=limit))
    )
    if as_json:
        print_json(found)
        return
    if not found:
        err_console.print("the outbox is empty", highlight=False)
        return
    rows = table(Column("id", key=True), Column("status", key=True), "to", "subject", "error")
    for message in found:
        rows.add_row(message["id"], message["status"], cell(", ".join(message["to"])),
                     cell(message["subject"]), cell(message["error"]))  # fmt: skip
    print_table(rows, highlight=False)
