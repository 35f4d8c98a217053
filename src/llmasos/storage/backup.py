"""Consistent online backups and restores of the database.

SQLite: SQLite's online backup API copies a snapshot in one step while writers go on (WAL);
the copy is written to a temporary file and renamed into place, so a half-written backup
never exists. Restore validates the file (integrity check, LLMasOS schema) and copies it
into the live database through the same API, then migrates it to the newest revision.
PostgreSQL: ``pg_dump --format=custom`` (a snapshot) and ``pg_restore --clean`` in one
transaction; if those tools are not installed the error says so. Both refuse a backup made
from the other kind of database.
"""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, StorageError
from llmasos.storage.database import BUSY_TIMEOUT_MS, Database
from llmasos.storage.migrate import open_database, upgrade_database

_SQLITE_MAGIC = b"SQLite format 3\x00"
_PG_DUMP_MAGIC = b"PGDMP"


def backup_database(target: Database | Settings, path: Path, *, overwrite: bool = False) -> Path:
    """Write a consistent copy of the live database to ``path``; return the path."""
    if isinstance(target, Settings):
        with open_database(target) as database:
            return backup_database(database, path, overwrite=overwrite)
    path = Path(path).expanduser().resolve()
    if path.exists() and not overwrite:
        raise InvalidRequestError(f"{path} already exists; choose a new file or overwrite it")
    if not path.parent.is_dir():
        raise InvalidRequestError(f"the directory {path.parent} does not exist")
    temp = path.with_name(f".{path.name}.partial")
    try:
        if target.is_sqlite:
            _sqlite_backup(Path(target.url.database or ""), temp)
        else:
            _pg_dump(target, temp)
        _fsync_file(temp)
        os.replace(temp, path)
    except OSError as error:
        raise StorageError(f"cannot write the backup {path}: {error.strerror}") from None
    finally:
        temp.unlink(missing_ok=True)
    return path


def restore_database(target: Database | Settings, path: Path) -> str:
    """Replace the live database's content with a backup; return the schema revision."""
    if isinstance(target, Settings):
        with open_database(target, upgrade=False) as database:
            return restore_database(database, path)
    path = Path(path).expanduser()
    try:
        magic = path.read_bytes()[:16] if path.is_file() else b""
    except OSError as error:
        raise StorageError(f"cannot read the backup {path}: {error.strerror}") from None
    if not magic:
        raise InvalidRequestError(f"{path} is not a file")
    target.close()  # no pooled connection may hold the old schema during the restore
    if target.is_sqlite:
        if not magic.startswith(_SQLITE_MAGIC):
            raise InvalidRequestError(f"{path} is not an SQLite backup of an LLMasOS database")
        _sqlite_restore(path, Path(target.url.database or ""))
    else:
        if not magic.startswith(_PG_DUMP_MAGIC):
            raise InvalidRequestError(f"{path} is not a pg_dump archive of an LLMasOS database")
        _pg_restore(target, path)
    target.close()
    return upgrade_database(target)


def _sqlite_connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    uri = f"file:{path}?mode=ro" if read_only else f"file:{path}"
    connection = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


def _sqlite_backup(source_path: Path, destination: Path) -> None:
    destination.unlink(missing_ok=True)
    source = _sqlite_connect(source_path)
    target = sqlite3.connect(destination)
    try:
        source.backup(target)  # pages=-1: one step, one consistent snapshot
        target.execute("PRAGMA journal_mode = DELETE")  # a self-contained single file
        target.commit()
    except sqlite3.Error as error:
        raise StorageError(f"backup of {source_path} failed: {error}") from None
    finally:
        target.close()
        source.close()


def _sqlite_restore(backup: Path, live: Path) -> None:
    try:
        source = _sqlite_connect(backup, read_only=True)
    except sqlite3.Error as error:
        raise InvalidRequestError(f"cannot open the backup {backup}: {error}") from None
    try:
        try:
            check = source.execute("PRAGMA integrity_check").fetchone()
            has_version = source.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()
        except sqlite3.DatabaseError as error:
            raise InvalidRequestError(f"{backup} is damaged: {error}") from None
        if not check or check[0] != "ok":
            raise InvalidRequestError(f"{backup} fails SQLite's integrity check: {check}")
        if not has_version:
            raise InvalidRequestError(f"{backup} is not an LLMasOS database (no schema version)")
        destination = _sqlite_connect(live)
        try:
            source.backup(destination)
        except sqlite3.Error as error:
            raise StorageError(f"restoring {backup} into {live} failed: {error}") from None
        finally:
            destination.close()
    finally:
        source.close()


def _postgres_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if candidates:
        return candidates[-1]
    raise StorageError(
        f"{name} is not installed; install PostgreSQL's client tools "
        "(Debian: apt-get install postgresql-client) to back up or restore PostgreSQL"
    )


def _libpq_arguments(database: Database) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and an environment that carries it."""
    url = database.url.set(drivername="postgresql")
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return url.set(password=None).render_as_string(hide_password=False), env


def _run_tool(command: list[str], env: dict[str, str], what: str) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    except OSError as error:
        raise StorageError(f"{what} failed: {error.strerror}") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise StorageError(
            f"{what} failed: {lines[-1] if lines else 'exit ' + str(result.returncode)}"
        )
    return result.stdout


def _pg_dump(database: Database, destination: Path) -> None:
    uri, env = _libpq_arguments(database)
    command = [_postgres_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges"]
    _run_tool([*command, f"--file={destination}", f"--dbname={uri}"], env, "pg_dump")


def _pg_restore(database: Database, backup: Path) -> None:
    uri, env = _libpq_arguments(database)
    tool = _postgres_tool("pg_restore")
    listing = _run_tool([tool, "--list", str(backup)], env, f"reading {backup}")
    if "alembic_version" not in listing:
        raise InvalidRequestError(f"{backup} is not a backup of an LLMasOS database")
    options = ["--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction"]
    _run_tool(
        [tool, *options, "--exit-on-error", f"--dbname={uri}", str(backup)], env, "pg_restore"
    )


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
