"""Online backups taken while writers run restore to a consistent database."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError
from llmasos.storage import Database, backup_database, head_revision, restore_database

BATCH = 5


def _write_batches(database: Database, stop: threading.Event, written: list[int]) -> None:
    batch = 0
    while not stop.is_set():
        batch += 1
        with database.session(write=True) as session:
            for _ in range(BATCH):
                session.execute(
                    text(
                        "INSERT INTO audit_events (created_at, action, outcome, target) "
                        "VALUES (CURRENT_TIMESTAMP, 'batch', 'ok', :batch)"
                    ),
                    {"batch": str(batch)},
                )
        written.append(batch)


def _batch_sizes(database: Database) -> dict[str, int]:
    with database.session() as session:
        rows = session.execute(
            text("SELECT target, count(*) FROM audit_events GROUP BY target")
        ).all()
    return {str(target): int(count) for target, count in rows}


def test_backup_while_writing_then_restore_is_consistent(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    stop, written = threading.Event(), []
    writer = threading.Thread(target=_write_batches, args=(database, stop, written))
    writer.start()
    try:
        while len(written) < 10:
            stop.wait(0.01)
        committed_before = len(written)
        backup = backup_database(database, tmp_path / "backup.db")
        while len(written) < committed_before + 10:
            stop.wait(0.01)
    finally:
        stop.set()
        writer.join()
    assert len(_batch_sizes(database)) == len(written)

    assert restore_database(database, backup) == head_revision()
    sizes = _batch_sizes(database)
    assert set(sizes.values()) == {BATCH}, "a transaction was cut in half"
    assert committed_before <= len(sizes) < len(written)
    assert sorted(map(int, sizes)) == list(range(1, len(sizes) + 1))


def test_backup_refuses_to_overwrite(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "exists.db"
    path.write_text("precious")
    with pytest.raises(InvalidRequestError, match="already exists"):
        backup_database(database, path)
    assert path.read_text() == "precious"
    backup_database(database, path, overwrite=True)
    assert path.read_text(errors="replace") != "precious"


def test_restore_refuses_foreign_files(database: Database, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 10)
    with pytest.raises(InvalidRequestError, match=r"not an? "):
        restore_database(database, junk)
    with pytest.raises(InvalidRequestError, match="not a file"):
        restore_database(database, tmp_path / "missing.db")
