"""Users: first is admin, roles, disabling, passwords, hostile names, isolation."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from llmasos.access import AuditLog, Principal, UserManager
from llmasos.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from llmasos.storage import Database


@pytest.fixture
def users(database: Database) -> UserManager:
    return UserManager(database)


def test_first_user_is_admin_then_roles_as_asked(users: UserManager) -> None:
    assert users.create("owner", role="user").role == "admin"
    assert users.create("dev", role="developer").role == "developer"
    assert users.create("newbie", role="pending").role == "pending"
    assert [u.name for u in users.list()] == ["owner", "dev", "newbie"]


def test_duplicate_and_unknown(users: UserManager) -> None:
    users.create("alice")
    with pytest.raises(InvalidRequestError, match="already exists"):
        users.create("alice")
    with pytest.raises(NotFoundError):
        users.set_role("bob", "user")
    with pytest.raises(InvalidRequestError, match="unknown role"):
        users.create("carol", role="root")


@pytest.mark.parametrize(
    "name",
    ["x'; DROP TABLE users; --", "a b", "", "-leading", "a" * 65, "ü", "a\x00b", "a%", "a\nb"],
)
def test_hostile_names_are_refused_and_change_nothing(
    users: UserManager, database: Database, name: str
) -> None:
    users.create("owner")
    with pytest.raises(InvalidRequestError, match="invalid user name"):
        users.create(name)
    with pytest.raises(AuthenticationError):
        users.authenticate(name, "whatever-password")
    with database.session() as session:
        assert session.scalar(text("SELECT count(*) FROM users")) == 1


def test_passwords_are_hashed_and_checked(users: UserManager, database: Database) -> None:
    users.create("alice", password="correct horse battery")
    with database.session() as session:
        stored = session.scalar(text("SELECT password_hash FROM users"))
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    principal = users.authenticate("alice", "correct horse battery")
    assert principal.name == "alice" and principal.role == "admin"
    with pytest.raises(AuthenticationError, match="wrong user name or password"):
        users.authenticate("alice", "wrong password!")
    with pytest.raises(AuthenticationError, match="wrong user name or password"):
        users.authenticate("nobody", "correct horse battery")
    with pytest.raises(InvalidRequestError, match="8 to 1024"):
        users.create("bob", password="short")


def test_last_admin_is_kept_and_disabled_users_cannot_sign_in(users: UserManager) -> None:
    users.create("owner", password="owner-password")
    users.create("bob", password="bob-password")
    with pytest.raises(InvalidRequestError, match="last active admin"):
        users.set_role("owner", "user")
    with pytest.raises(InvalidRequestError, match="last active admin"):
        users.disable("owner")
    users.set_role("bob", "admin")
    assert users.disable("owner").active is False
    with pytest.raises(AuthenticationError, match="disabled"):
        users.authenticate("owner", "owner-password")
    assert users.enable("owner").active


def test_only_admins_manage_users(users: UserManager) -> None:
    users.create("owner")
    users.create("bob")
    bob = Principal(user_id=2, name="bob", role="user", scopes=frozenset({"chat"}))
    with pytest.raises(PermissionDeniedError):
        users.create("mallory", actor=bob)
    with pytest.raises(PermissionDeniedError):
        users.set_role("bob", "admin", actor=bob)
    with pytest.raises(PermissionDeniedError):
        users.disable("owner", actor=bob)
    with pytest.raises(PermissionDeniedError):
        users.set_password("owner", "new-password-1", actor=bob)
    users.set_password("bob", "bobs-own-password", actor=bob)


def test_changes_are_audited_and_the_log_is_append_only(
    users: UserManager, database: Database
) -> None:
    users.create("owner")
    users.create("bob")
    users.set_role("bob", "developer")
    records = AuditLog(database).list()
    assert [(r.action, r.target) for r in records] == [
        ("user.create", "owner"),
        ("user.create", "bob"),
        ("user.set_role", "bob"),
    ]
    assert records[2].detail == "user -> developer"
    for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), database.session(write=True) as s:
            s.execute(text(statement))
    assert len(AuditLog(database).list()) == 3
