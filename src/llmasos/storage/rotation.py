"""Master-key rotation: re-encrypt every registered encrypted column with a new key.

The schema's own encrypted columns (conversation items, stored responses) are registered
here; another table that stores `ContentCipher` tokens registers each such column with
`register_encrypted_column` (the table, the column, its primary-key column, and the
``context`` template bound into each token, e.g. ``"conversation:{id}"``). `rotate_master_key`
then works in an order that never loses content:

1. the new key is written to ``secret.key.new`` (0600, fsynced), unless a rotation that was
   interrupted left one there, which is reused;
2. in one database transaction every registered value sealed with the old key is opened and
   sealed again with the new one (values already under the new key are left alone, so a
   rerun after a crash simply finishes);
3. ``secret.key.new`` replaces ``secret.key``.

When the master key comes from ``LLMASOS_SECRET_KEY`` the new key is given by the caller,
and the operator puts it in the environment afterwards. `check_master_key` refuses, at a
server's start, a key that sealed none of the database's content (servers sharing one
database must share the key).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, Table, select, update

from llmasos.config import Settings
from llmasos.errors import ConfigError, StorageError
from llmasos.storage.crypto import (
    KEY_BYTES,
    SECRET_KEY_ENV,
    SECRET_KEY_FILENAME,
    ContentCipher,
    DecryptionError,
    load_master_key,
)
from llmasos.storage.database import Database
from llmasos.storage.schema import (
    ITEM_CONTENT_CONTEXT,
    RESPONSE_BODY_CONTEXT,
    ConversationItem,
    StoredResponse,
)

PENDING_SUFFIX = ".new"


@dataclass(frozen=True)
class EncryptedColumn:
    table: Table
    column: str
    key_column: str = "id"
    context: str = ""
    """A ``str.format`` template over the row's key column, e.g. ``"memory:{id}"``."""

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.column}"


ENCRYPTED_COLUMNS: dict[str, EncryptedColumn] = {}


def register_encrypted_column(
    table: Table, column: str, *, key_column: str = "id", context: str = ""
) -> EncryptedColumn:
    """Declare that ``table.column`` holds `ContentCipher` tokens (idempotent)."""
    entry = EncryptedColumn(table, column, key_column, context)
    ENCRYPTED_COLUMNS[entry.name] = entry
    return entry


def unregister_encrypted_column(name: str) -> None:
    ENCRYPTED_COLUMNS.pop(name, None)


# The encrypted columns of the schema itself.
register_encrypted_column(ConversationItem.__table__, "content", context=ITEM_CONTENT_CONTEXT)  # type: ignore[arg-type]
register_encrypted_column(StoredResponse.__table__, "body", context=RESPONSE_BODY_CONTEXT)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RotationResult:
    fingerprint: str
    """The new key's fingerprint (hex), as stored in every new token."""
    reencrypted: dict[str, int]
    """Values re-encrypted per column (``table.column``)."""
    new_key: bytes


def rotate_master_key(
    settings: Settings,
    database: Database,
    *,
    new_key: bytes | None = None,
    columns: dict[str, EncryptedColumn] | None = None,
) -> RotationResult:
    """Re-encrypt every registered column under a new master key and install the key."""
    from_env = bool(os.environ.get(SECRET_KEY_ENV))
    if from_env and new_key is None:
        raise ConfigError(
            f"the master key comes from {SECRET_KEY_ENV}: give the new key (32 random bytes, "
            "base64) and set it in the environment after the rotation"
        )
    key_path = settings.home / SECRET_KEY_FILENAME
    pending = key_path.with_name(key_path.name + PENDING_SUFFIX)
    old = ContentCipher(load_master_key(settings))
    if new_key is None:
        new_key = pending.read_bytes() if pending.exists() else secrets.token_bytes(KEY_BYTES)
    if len(new_key) != KEY_BYTES:
        raise ConfigError(f"a master key is {KEY_BYTES} bytes, not {len(new_key)}")
    new = ContentCipher(new_key)
    if new.fingerprint == old.fingerprint:
        raise ConfigError("the new master key is the same as the current one")
    if not from_env:
        _write_private(pending, new_key)
    counts = _reencrypt(database, old, new, columns if columns is not None else ENCRYPTED_COLUMNS)
    if not from_env:
        try:
            os.replace(pending, key_path)
        except OSError as error:
            raise StorageError(
                f"content is re-encrypted but {pending} could not replace {key_path}: "
                f"{error.strerror}; run the rotation again to finish"
            ) from None
    return RotationResult(new.fingerprint.hex(), counts, new_key)


def check_master_key(
    database: Database,
    cipher: ContentCipher,
    *,
    columns: dict[str, EncryptedColumn] | None = None,
) -> None:
    """Refuse (`ConfigError`) a master key that sealed none of the database's content.

    Servers that share a database (several hosts on one PostgreSQL) must share the master
    key too; a server that made its own would write content the others cannot read. This
    reads one sealed value of each registered column: content under any other key only is a
    mismatch. An empty database passes.
    """
    found: set[bytes] = set()
    with database.session() as session:
        for entry in (columns if columns is not None else ENCRYPTED_COLUMNS).values():
            value_col: Column[object] = entry.table.c[entry.column]
            token = session.scalar(select(value_col).where(value_col.is_not(None)).limit(1))
            if token is None:
                continue
            fingerprint = bytes(token)[1:5]  # type: ignore[call-overload]
            if fingerprint == cipher.fingerprint:
                return
            found.add(fingerprint)
    if found:
        theirs = ", ".join(sorted(f.hex() for f in found))
        raise ConfigError(
            f"the database's content is sealed with another master key (fingerprint "
            f"{theirs}) than this server's ({cipher.fingerprint.hex()}): every server on one "
            f"database needs the same key: copy {SECRET_KEY_FILENAME} from the first server's "
            f"home or set {SECRET_KEY_ENV} on all of them (after an interrupted `llmasos keys "
            "rotate-master`, run it again to finish)"
        )


def _reencrypt(
    database: Database,
    old: ContentCipher,
    new: ContentCipher,
    columns: dict[str, EncryptedColumn],
) -> dict[str, int]:
    counts: dict[str, int] = {}
    with database.session(write=True) as session:
        for name, entry in sorted(columns.items()):
            key_col: Column[object] = entry.table.c[entry.key_column]
            value_col: Column[object] = entry.table.c[entry.column]
            counts[name] = 0
            rows = session.execute(select(key_col, value_col).where(value_col.is_not(None)))
            for key, token in rows.all():
                data = bytes(token)  # type: ignore[call-overload]
                if data[1:5] == new.fingerprint:
                    continue  # done by an interrupted earlier run
                context = entry.context.format(**{entry.key_column: key})
                try:
                    plaintext = old.decrypt(data, context=context)
                except DecryptionError as error:
                    raise StorageError(
                        f"{name} row {key}: {error.message}; nothing was re-encrypted"
                    ) from None
                session.execute(
                    update(entry.table)
                    .where(key_col == key)
                    .values({entry.column: new.encrypt(plaintext, context=context)})
                )
                counts[name] += 1
    return counts


def _write_private(path: Path, data: bytes) -> None:
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        try:
            os.write(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise StorageError(f"cannot write the new master key {path}: {error.strerror}") from None
