"""API keys: shown once, stored hashed, 401/403 rules, hostile labels, concurrency."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from llmasos.access import KEY_PREFIX, KeyManager, Principal, UserManager
from llmasos.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from llmasos.storage import Database
from llmasos.storage.schema import ApiKey


@pytest.fixture
def keys(database: Database) -> KeyManager:
    users = UserManager(database)
    users.create("owner")
    users.create("alice", role="user")
    users.create("bob", role="developer")
    return KeyManager(database)


def _dump(database: Database) -> str:
    """Every value in the keys and audit tables, as one string."""
    with database.session() as session:
        rows = session.execute(text("SELECT * FROM api_keys")).all()
        rows += session.execute(text("SELECT * FROM audit_events")).all()
    return repr(rows)


def test_key_is_shown_once_and_stored_hashed(keys: KeyManager, database: Database) -> None:
    created = keys.create("alice", "laptop")
    assert created.secret.startswith(KEY_PREFIX) and len(created.secret) >= len(KEY_PREFIX) + 43
    assert created.secret not in _dump(database)
    assert created.secret[len(KEY_PREFIX) :] not in _dump(database)
    listed = keys.list("alice")
    assert [k.key_id for k in listed] == [created.info.key_id]
    assert not any(created.secret in repr(k) for k in listed)
    principal = keys.verify(created.secret)
    assert (principal.name, principal.role, principal.key_id) == (
        "alice",
        "user",
        created.info.key_id,
    )
    assert principal.tenant == "alice"


@pytest.mark.parametrize(
    "presented",
    [None, "", "sk-123", KEY_PREFIX, KEY_PREFIX + "A" * 43, KEY_PREFIX + "' OR '1'='1" * 5],
)
def test_missing_or_wrong_key_is_401(keys: KeyManager, presented: str | None) -> None:
    keys.create("alice", "real")
    with pytest.raises(AuthenticationError) as caught:
        keys.verify(presented)
    assert caught.value.status_code == 401


def test_revoked_key_fails_on_the_next_request(keys: KeyManager) -> None:
    created = keys.create("alice", "soon revoked")
    keys.verify(created.secret)
    assert keys.revoke(created.info.key_id).status() == "revoked"
    with pytest.raises(AuthenticationError, match="revoked"):
        keys.verify(created.secret)


def test_expired_key_is_401(keys: KeyManager) -> None:
    created = keys.create("alice", "brief", expires_in=0.2)
    keys.verify(created.secret)
    time.sleep(0.3)
    assert keys.list("alice")[0].status() == "expired"
    with pytest.raises(AuthenticationError, match="expired"):
        keys.verify(created.secret)
    with pytest.raises(InvalidRequestError, match="positive"):
        keys.create("alice", "never", expires_in=0)


def test_scopes_and_models_give_403(keys: KeyManager) -> None:
    created = keys.create("bob", "narrow", scopes=["chat"], models=["smollm2", "org/*"])
    principal = keys.verify(created.secret, scope="chat", model="smollm2:135m")
    assert principal.scopes == {"chat"}
    keys.verify(created.secret, model="org/tiny:latest")
    for scope, model in [("embed", None), ("admin", None), (None, "llama3"), ("chat", "qwen")]:
        with pytest.raises(PermissionDeniedError) as caught:
            keys.verify(created.secret, scope=scope, model=model)
        assert caught.value.status_code == 403
    with pytest.raises(InvalidRequestError, match="unknown scope"):
        keys.create("bob", "typo", scopes=["chta"])


def test_role_caps_a_key_and_changes_apply_at_once(keys: KeyManager) -> None:
    users = UserManager(keys.database)
    created = keys.create("bob", "everything")  # scopes ["*"]
    assert keys.verify(created.secret, scope="models:write").role == "developer"
    with pytest.raises(PermissionDeniedError):
        keys.verify(created.secret, scope="admin")
    users.set_role("bob", "user")
    with pytest.raises(PermissionDeniedError, match="models:write"):
        keys.verify(created.secret, scope="models:write")
    users.set_role("bob", "pending")
    with pytest.raises(PermissionDeniedError, match="pending"):
        keys.verify(created.secret)
    users.set_role("bob", "developer")
    users.disable("bob")
    with pytest.raises(AuthenticationError, match="disabled"):
        keys.verify(created.secret)


@pytest.mark.parametrize(
    "label",
    ["'; DROP TABLE api_keys; --", "Robert'); DELETE FROM users;--", "%_\\", "😀 ok", "x" * 128],
)
def test_hostile_labels_are_stored_verbatim(keys: KeyManager, label: str) -> None:
    created = keys.create("alice", label, models=["a';--"])
    assert [(k.name, k.models) for k in keys.list("alice")] == [(label, ["a';--"])]
    assert keys.verify(created.secret).name == "alice"
    assert len(UserManager(keys.database).list()) == 3


@pytest.mark.parametrize("label", ["", "   ", "x" * 129, "a\x00b", "line\nbreak"])
def test_bad_labels_are_refused(keys: KeyManager, label: str) -> None:
    with pytest.raises(InvalidRequestError, match="key name"):
        keys.create("alice", label)
    with pytest.raises(InvalidRequestError):
        keys.create("alice", "ok", models=["x" * 201])
    assert keys.list() == []


def test_users_only_see_and_change_their_own_keys(keys: KeyManager) -> None:
    alice_key = keys.create("alice", "a")
    bob_key = keys.create("bob", "b")
    alice = keys.verify(alice_key.secret)
    assert [k.key_id for k in keys.list(actor=alice)] == [alice_key.info.key_id]
    with pytest.raises(NotFoundError):
        keys.list("bob", actor=alice)
    with pytest.raises(NotFoundError):
        keys.revoke(bob_key.info.key_id, actor=alice)
    with pytest.raises(PermissionDeniedError):
        keys.create("bob", "planted", actor=alice)
    keys.verify(bob_key.secret)
    admin = Principal.local_owner()
    assert len(keys.list(actor=admin)) == 2


def test_pending_users_get_no_keys(keys: KeyManager) -> None:
    UserManager(keys.database).create("waiting", role="pending")
    with pytest.raises(PermissionDeniedError, match="pending"):
        keys.create("waiting", "k")


def test_32_concurrent_writers_lose_no_row(keys: KeyManager, database: Database) -> None:
    def create(index: int) -> str:
        return keys.create("alice", f"thread {index}").info.key_id

    with ThreadPoolExecutor(max_workers=32) as pool:
        created = list(pool.map(create, range(96)))
    assert len(set(created)) == 96
    assert sorted(k.key_id for k in keys.list("alice")) == sorted(created)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 96
        audited = session.scalar(
            text("SELECT count(*) FROM audit_events WHERE action = 'key.create'")
        )
    assert audited == 96


def test_last_used_is_recorded_at_most_once_a_minute(keys: KeyManager) -> None:
    created = keys.create("alice", "used")
    assert keys.list("alice")[0].last_used_at is None
    keys.verify(created.secret)
    first = keys.list("alice")[0].last_used_at
    assert first is not None
    keys.verify(created.secret)
    assert keys.list("alice")[0].last_used_at == first
    assert timedelta(0) <= first - created.info.created_at < timedelta(minutes=1)
