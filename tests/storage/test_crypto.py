"""AES-GCM sealing of user content and the master key's life cycle."""

from __future__ import annotations

import base64
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from llmasos.config import Settings
from llmasos.errors import ConfigError, StorageError
from llmasos.storage import ContentCipher, load_master_key
from llmasos.storage.crypto import DecryptionError


@pytest.fixture
def home_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("LLMASOS_SECRET_KEY", raising=False)
    return Settings(home=tmp_path / "home")


def test_master_key_file_is_created_private_and_reused(home_settings: Settings) -> None:
    key = load_master_key(home_settings)
    path = home_settings.home / "secret.key"
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert load_master_key(home_settings) == key


def test_master_key_from_environment(
    home_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = os.urandom(32)
    monkeypatch.setenv("LLMASOS_SECRET_KEY", base64.b64encode(key).decode())
    assert load_master_key(home_settings) == key
    assert not (home_settings.home / "secret.key").exists()
    monkeypatch.setenv("LLMASOS_SECRET_KEY", "too-short")
    with pytest.raises(ConfigError, match="32 random bytes"):
        load_master_key(home_settings)


def test_readable_key_file_is_refused(home_settings: Settings) -> None:
    load_master_key(home_settings)
    (home_settings.home / "secret.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_master_key(home_settings)


def test_full_disk_creating_the_key_is_a_storage_error(
    home_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageError, match="disk is full"):
        load_master_key(home_settings)
    assert list(home_settings.home.iterdir()) == []


def test_round_trip_and_fresh_nonces(home_settings: Settings) -> None:
    cipher = ContentCipher.from_settings(home_settings)
    text = "Bonjour, le monde. 日本語 \x00 ok"
    first = cipher.encrypt(text, context="conversation:1")
    assert first != cipher.encrypt(text, context="conversation:1")
    assert text.encode() not in first
    assert cipher.decrypt_text(first, context="conversation:1") == text


def test_tampering_moving_and_wrong_key_are_detected(home_settings: Settings) -> None:
    cipher = ContentCipher.from_settings(home_settings)
    token = cipher.encrypt(b"secret memory", context="memory:7")
    with pytest.raises(DecryptionError, match="tampered or moved"):
        cipher.decrypt(token, context="memory:8")
    flipped = token[:-1] + bytes([token[-1] ^ 1])
    with pytest.raises(DecryptionError, match="tampered"):
        cipher.decrypt(flipped, context="memory:7")
    with pytest.raises(DecryptionError, match="another master key"):
        ContentCipher(os.urandom(32)).decrypt(token, context="memory:7")
    with pytest.raises(DecryptionError, match="unknown format"):
        cipher.decrypt(b"plain text", context="memory:7")
