"""``llmasos db``, ``llmasos users`` and ``llmasos keys``: the database and identities.

Every command opens the database the settings name (migrating it to the newest schema
first, so a fresh install needs no separate step) and acts as the local owner. A new API
key is printed alone on stdout, once; everything else about it goes to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.root import app, console, err_console, state
from llmasos.config import parse_duration
from llmasos.errors import InvalidRequestError

if TYPE_CHECKING:
    from llmasos.storage.database import Database

db_app = typer.Typer(help="Migrate, back up and restore the database.", no_args_is_help=True)
users_app = typer.Typer(help="Manage users and their roles.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")


@contextmanager
def _database(*, upgrade: bool = True) -> Iterator[Database]:
    from llmasos.storage import open_database

    with open_database(state.settings, upgrade=upgrade) as database:
        yield database


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema (safe to repeat)."""
    from llmasos.storage import upgrade_database

    with _database(upgrade=False) as database:
        revision = upgrade_database(database)
        console.print(f"{database.display_url} is at schema revision {revision}", highlight=False)


@db_app.command("backup")
def db_backup(
    path: Annotated[Path, typer.Argument(help="File to write the backup to.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite PATH if it exists.")] = False,
) -> None:
    """Write a consistent online backup of the database to PATH."""
    from llmasos.storage import backup_database

    with _database() as database:
        written = backup_database(database, path, overwrite=force)
    console.print(f"backed up to {written}", highlight=False)


@db_app.command("restore")
def db_restore(
    path: Annotated[Path, typer.Argument(help="A backup made by `llmasos db backup`.")],
) -> None:
    """Replace the database's content with the backup at PATH."""
    from llmasos.storage import restore_database

    with _database(upgrade=False) as database:
        revision = restore_database(database, path)
    console.print(f"restored {path} (schema revision {revision})", highlight=False)


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="User name: letters, digits, ._@-")],
    role: Annotated[str, typer.Option(help="admin, developer, user or pending.")] = "user",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a user (the first user is always admin)."""
    from llmasos.access import UserManager

    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidRequestError("--password-stdin: no password on stdin")
    with _database() as database:
        user = UserManager(database).create(name, role=role, password=password)
    console.print(f"created user {user.name} with role {user.role}", highlight=False)


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Set a user's console password (asked twice on a terminal); ends their sessions."""
    from sqlalchemy import select

    from llmasos.access import UserManager
    from llmasos.access.sessions import SessionManager
    from llmasos.storage.schema import User

    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidRequestError("--password-stdin: no password on stdin")
    else:
        import getpass

        password = getpass.getpass(f"new password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise InvalidRequestError("the two passwords differ; nothing changed")
    with _database() as database:
        UserManager(database).set_password(name, password)
        with database.session() as session:
            user_id = session.scalar(select(User.id).where(User.name == name))
        ended = SessionManager(database).sign_out_everywhere(int(user_id)) if user_id else 0
    console.print(
        f"set the password of {name}" + (f"; ended {ended} console session(s)" if ended else ""),
        highlight=False,
    )


@users_app.command("list")
def users_list(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List users.

    --json fields: name, role, disabled, has_password, created_at.
    """
    from llmasos.access import UserManager

    with _database() as database:
        users = UserManager(database).list()
    if as_json:
        print_json([user.public() for user in users])
        return
    rows = table(Column("name", key=True), "role", "status", "password", "created")
    for user in users:
        status = "active" if user.active else "disabled"
        rows.add_row(
            user.name,
            user.role,
            status,
            "yes" if user.has_password else "no",
            _when(user.created_at),
        )
    print_table(rows)


@users_app.command("set-role")
def users_set_role(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Argument(help="admin, developer, user or pending.")],
) -> None:
    """Change a user's role; their keys follow on the next request."""
    from llmasos.access import UserManager

    with _database() as database:
        user = UserManager(database).set_role(name, role)
    console.print(f"{user.name} is now {user.role}", highlight=False)


@users_app.command("disable")
def users_disable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Disable a user: their keys stop working on the next request."""
    from llmasos.access import UserManager

    with _database() as database:
        UserManager(database).disable(name)
    console.print(f"disabled {name}", highlight=False)


@users_app.command("enable")
def users_enable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Enable a disabled user again."""
    from llmasos.access import UserManager

    with _database() as database:
        UserManager(database).enable(name)
    console.print(f"enabled {name}", highlight=False)


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option("--user", help="Owner of the key.")],
    name: Annotated[str, typer.Option("--name", help="A label to recognise the key by.")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 30d or 12h; default never.")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="Allowed scope (repeatable); default all the role has."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Allowed model or glob (repeatable); default all."),
    ] = None,
) -> None:
    """Create an API key and print it once (stdout); it cannot be shown again."""
    from llmasos.access import KeyManager

    lifetime = parse_duration(expires) if expires is not None else None
    if expires is not None and not lifetime:
        raise InvalidRequestError(f"--expires {expires!r}: give a positive lifetime like 30d")
    with _database() as database:
        created = KeyManager(database).create(
            user, name, expires_in=lifetime, scopes=scope or ["*"], models=model or []
        )
    err_console.print(
        f"created key {created.info.key_id} for {user}; store it now, it is shown only once:",
        highlight=False,
    )
    print(created.secret)


@keys_app.command("list")
def keys_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """List API keys (never their secrets).

    --json fields: key_id, user, name, scopes, models, status, created_at, expires_at, revoked_at,
    last_used_at.
    """
    from llmasos.access import KeyManager

    with _database() as database:
        keys = KeyManager(database).list(user)
    if as_json:
        print_json([key.public() for key in keys])
        return
    rows = table(
        Column("key id", key=True),
        Column("user", key=True),
        "name",
        "scopes",
        "models",
        "status",
        "created",
        "expires",
    )
    for key in keys:
        rows.add_row(
            key.key_id,
            key.user,
            key.name,
            ",".join(key.scopes),
            ",".join(key.models) or "*",
            key.status(),
            _when(key.created_at),
            _when(key.expires_at),
        )
    print_table(rows, highlight=False)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id from `keys list`.")],
) -> None:
    """Revoke an API key; it is refused from the next request on."""
    from llmasos.access import KeyManager

    with _database() as database:
        key = KeyManager(database).revoke(key_id)
    console.print(f"revoked {key.key_id} ({key.user}: {key.name})", highlight=False)
