"""``llmasos conversations list|show|rm``: the stored conversations, from the database.

The commands act as the local owner (the conversations made with authentication off and
by ``llmasos run --conversation``), or with ``--user NAME`` as that user (an operator's
view of the database on this machine). Content is decrypted with the master key; ids are
printed whole, never cut, whatever the terminal's width.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.root import app, console, state

if TYPE_CHECKING:
    from llmasos.memory.conversations import ConversationStore

conversations_app = typer.Typer(
    help="List, show and delete stored conversations.", no_args_is_help=True
)
app.add_typer(conversations_app, name="conversations")

UserOption = Annotated[
    str | None,
    typer.Option("--user", help="Act on this user's conversations (default: the local owner)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)]


@contextmanager
def conversation_store(user: str | None) -> Iterator[tuple[ConversationStore, int | None]]:
    """The store over the settings' database, and the owner id ``--user`` names."""
    from llmasos.access.users import UserManager
    from llmasos.memory.conversations import ConversationStore
    from llmasos.storage import ContentCipher, open_database

    with open_database(state.settings) as database:
        owner = UserManager(database).get(user).id if user else None
        yield ConversationStore(database, ContentCipher.from_settings(state.settings)), owner


@conversations_app.command("list")
def list_conversations(
    user: UserOption = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List conversations, newest first.

    --json fields: id, object, created_at, metadata, items.
    """
    with conversation_store(user) as (store, owner):
        records = store.list_conversations(owner, limit=limit)
    if as_json:
        print_json([{**r.to_openai(), "items": r.items} for r in records])
        return
    rows = table(Column("id", key=True), "created", Column("items", justify="right"), "metadata")
    for record in records:
        rows.add_row(
            record.id,
            record.created_at.strftime("%Y-%m-%d %H:%M"),
            str(record.items),
            json.dumps(record.metadata, ensure_ascii=False) if record.metadata else "",
        )
    print_table(rows, highlight=False)


@conversations_app.command("show")
def show_conversation(
    conversation_id: Annotated[str, typer.Argument(help="The conversation's id (conv_...).")],
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a conversation's items in order, summaries included.

    --json fields: id, object, created_at, metadata, items.
    """
    with conversation_store(user) as (store, owner):
        record = store.get(owner, conversation_id)
        items = store.items(owner, conversation_id)
    if as_json:
        data: dict[str, Any] = {
            **record.to_openai(),
            "items": [item.to_openai() for item in items],
        }
        print_json(data)
        return
    from llmasos.memory.items import transcript_line

    console.print(f"{record.id}  ({len(items)} items)", highlight=False, markup=False)
    for item in items:
        label = "summary" if item.is_summary else item.type
        console.print(f"[dim]{item.id} {label}[/dim]", highlight=False, soft_wrap=True)
        console.print(transcript_line(item.body), markup=False, highlight=False, soft_wrap=True)


@conversations_app.command("rm")
def remove_conversations(
    conversation_ids: Annotated[list[str], typer.Argument(help="Conversation ids to delete.")],
    user: UserOption = None,
) -> None:
    """Delete conversations with every item in them."""
    with conversation_store(user) as (store, owner):
        for conversation_id in conversation_ids:
            store.delete(owner, conversation_id)
            console.print(f"deleted {conversation_id}", highlight=False)
