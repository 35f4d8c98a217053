"""`keys rotate-master`: every registered column is re-encrypted; the old key stops working."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table, insert, select

import llmasos
from llmasos.config import Settings
from llmasos.errors import ConfigError
from llmasos.storage import ContentCipher, Database, load_master_key
from llmasos.storage.crypto import DecryptionError
from llmasos.storage.rotation import (
    check_master_key,
    register_encrypted_column,
    rotate_master_key,
    unregister_encrypted_column,
)

NOTES = Table(
    "test_notes",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("body", LargeBinary, nullable=True),
)


@pytest.fixture
def notes(database: Database) -> Iterator[Table]:
    NOTES.create(database.engine)
    entry = register_encrypted_column(NOTES, "body", context="note:{id}")
    try:
        yield NOTES
    finally:
        unregister_encrypted_column(entry.name)
        NOTES.drop(database.engine)


def test_rotation_reencrypts_and_retires_the_old_key(
    settings: Settings, database: Database, notes: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMASOS_SECRET_KEY", raising=False)
    old = ContentCipher(load_master_key(settings))
    texts = {1: "secret one", 2: "x'); DROP TABLE test_notes; --", 3: None}
    with database.session(write=True) as session:
        for row_id, text in texts.items():
            body = old.encrypt(text, context=f"note:{row_id}") if text else None
            session.execute(insert(notes).values(id=row_id, body=body))
    result = rotate_master_key(settings, database)
    # other registered columns (memories.text ...) are empty here
    assert {k: v for k, v in result.reencrypted.items() if v} == {"test_notes.body": 2}
    new = ContentCipher(load_master_key(settings))
    assert new.fingerprint.hex() == result.fingerprint != old.fingerprint.hex()
    assert (settings.home / "secret.key").stat().st_mode & 0o077 == 0
    with database.session() as session:
        rows = dict(session.execute(select(notes.c.id, notes.c.body)).all())
    assert rows[3] is None
    for row_id in (1, 2):
        assert new.decrypt_text(rows[row_id], context=f"note:{row_id}") == texts[row_id]
        with pytest.raises(DecryptionError):
            old.decrypt(rows[row_id], context=f"note:{row_id}")
    # A rerun (e.g. after an interrupted rotation) only re-encrypts what is still old.
    again = rotate_master_key(settings, database)
    assert {k: v for k, v in again.reencrypted.items() if v} == {"test_notes.body": 2}


def test_an_interrupted_rotation_is_finished_by_the_next(
    settings: Settings, database: Database, notes: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMASOS_SECRET_KEY", raising=False)
    old = ContentCipher(load_master_key(settings))
    with database.session(write=True) as session:
        session.execute(insert(notes).values(id=1, body=old.encrypt("a", context="note:1")))
    pending = settings.home / "secret.key.new"
    new_key = bytes(range(32))
    pending.write_bytes(new_key)
    pending.chmod(0o600)
    result = rotate_master_key(settings, database)
    assert result.new_key == new_key and not pending.exists()
    assert load_master_key(settings) == new_key


def test_a_server_with_another_master_key_is_refused(database: Database, notes: Table) -> None:
    mine, other = ContentCipher(bytes(32)), ContentCipher(bytes(range(32)))
    only = {"test_notes.body": register_encrypted_column(notes, "body", context="note:{id}")}
    check_master_key(database, other, columns=only)  # nothing sealed yet: any key will do
    with database.session(write=True) as session:
        session.execute(insert(notes).values(id=1, body=mine.encrypt("a", context="note:1")))
    check_master_key(database, mine, columns=only)
    with pytest.raises(ConfigError, match="sealed with another master key") as refused:
        check_master_key(database, other, columns=only)
    assert mine.fingerprint.hex() in refused.value.message


def _registered_after(code: str) -> set[str]:
    script = (
        f"{code}\nfrom llmasos.storage.rotation import ENCRYPTED_COLUMNS\nprint(*ENCRYPTED_COLUMNS)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    return set(done.stdout.split())


def test_the_rotate_master_command_registers_every_sealed_column() -> None:
    """The command imports each module that registers a sealed column (a fresh process, as
    the CLI is): a column it missed would stay under the retired key, unreadable."""
    root = Path(llmasos.__file__).parent
    modules = sorted(
        ".".join(("llmasos", *path.relative_to(root).with_suffix("").parts))
        for path in root.rglob("*.py")
        if "register_encrypted_column(" in path.read_text(encoding="utf-8")
        and path.name != "rotation.py"
    )
    assert "llmasos.workflows.store" in modules and "llmasos.agents.store" in modules
    everything = _registered_after("\n".join(f"import {name}" for name in modules))
    assert {"workflow_steps.sealed_output", "tasks.content"} <= everything
    command = _registered_after(
        "from llmasos.cli.usage import register_sealed_columns\nregister_sealed_columns()"
    )
    assert command == everything
