"""Encryption at rest of user content with AES-256-GCM.

The master key is 32 random bytes, taken from ``LLMASOS_SECRET_KEY`` (base64) when set, else
from ``$LLMASOS_HOME/secret.key`` (raw bytes, mode 0600), which is created atomically on
first use. A token is ``version (1 byte) | key fingerprint (4) | nonce (12) | ciphertext+tag``;
the fingerprint tells which master key sealed it (for a later ``keys rotate-master``), and an
optional ``context`` string (e.g. ``"conversation:42"``) is bound as associated data, so a
ciphertext copied to another row does not decrypt. Losing the master key loses the content.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from llmasos.config import Settings
from llmasos.errors import ConfigError, StorageError

KEY_BYTES = 32
NONCE_BYTES = 12
SECRET_KEY_ENV = "LLMASOS_SECRET_KEY"
SECRET_KEY_FILENAME = "secret.key"
_VERSION = b"\x01"
_HEADER = len(_VERSION) + 4 + NONCE_BYTES


class DecryptionError(StorageError):
    """A ciphertext did not open: another master key, another context, or tampering."""

    default_code = "decryption_failed"


def load_master_key(settings: Settings, *, create: bool = True) -> bytes:
    """The master key from the environment or ``secret.key``; create the file if missing."""
    encoded = os.environ.get(SECRET_KEY_ENV)
    if encoded:
        return _decode_env_key(encoded.strip())
    path = settings.home / SECRET_KEY_FILENAME
    if not path.exists():
        if not create:
            raise ConfigError(f"no master key: {path} does not exist and {SECRET_KEY_ENV} is unset")
        _create_key_file(path)
    return _read_key_file(path)


def _decode_env_key(encoded: str) -> bytes:
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"{SECRET_KEY_ENV} must be {KEY_BYTES} random bytes in base64 "
            "(e.g. the output of `openssl rand -base64 32`)"
        )
    return key


def _create_key_file(path: Path) -> None:
    """Write a new key to a private temp file and link it into place (first writer wins)."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(descriptor, secrets.token_bytes(KEY_BYTES))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        with contextlib.suppress(FileExistsError):  # another process won the race: use theirs
            os.link(temp, path)
    except OSError as error:
        reason = (
            "the disk is full" if error.errno == errno.ENOSPC else (error.strerror or str(error))
        )
        raise StorageError(f"cannot create the master key {path}: {reason}") from None
    finally:
        temp.unlink(missing_ok=True)


def _read_key_file(path: Path) -> bytes:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{path} is readable by other users (mode {mode:04o}); run: chmod 600 {path}"
            )
        key = path.read_bytes()
    except OSError as error:
        raise StorageError(f"cannot read the master key {path}: {error.strerror}") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{path} is not a master key ({len(key)} bytes, expected {KEY_BYTES})")
    return key


class ContentCipher:
    """Seal and open user content with one master key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigError(f"a master key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.fingerprint = hashlib.sha256(key).digest()[:4]

    @classmethod
    def from_settings(cls, settings: Settings) -> ContentCipher:
        return cls(load_master_key(settings))

    def encrypt(self, plaintext: str | bytes, *, context: str = "") -> bytes:
        """Seal ``plaintext`` (text is UTF-8 encoded); a fresh random nonce every call."""
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, data, context.encode())
        return _VERSION + self.fingerprint + nonce + sealed

    def decrypt(self, token: bytes, *, context: str = "") -> bytes:
        """Open a token made by `encrypt` with the same key and context."""
        if len(token) < _HEADER + 16 or token[:1] != _VERSION:
            raise DecryptionError("not an LLMasOS ciphertext (unknown format)")
        if token[1:5] != self.fingerprint:
            raise DecryptionError(
                "this content was encrypted with another master key "
                f"(fingerprint {token[1:5].hex()}, current {self.fingerprint.hex()})"
            )
        nonce = token[5:_HEADER]
        try:
            return self._aead.decrypt(nonce, token[_HEADER:], context.encode())
        except InvalidTag:
            raise DecryptionError("ciphertext failed authentication (tampered or moved)") from None

    def decrypt_text(self, token: bytes, *, context: str = "") -> str:
        return self.decrypt(token, context=context).decode()
