"""``llmasos db|users|keys`` through the real CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmasos.access import KeyManager
from llmasos.cli.main import app
from llmasos.cli.root import state
from llmasos.config import Settings
from llmasos.errors import NotFoundError
from llmasos.storage import open_database

runner = CliRunner()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMASOS_HOME", str(home))
    monkeypatch.setenv("LLMASOS_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "200")
    state.reset()
    yield home
    state.reset()


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_users_and_keys_life_cycle(home: Path) -> None:
    code, out, _ = run("users", "create", "owner", "--password-stdin", stdin="a long password\n")
    assert code == 0 and "role admin" in out
    assert run("users", "create", "alice", "--role", "developer")[0] == 0
    code, out, _ = run("users", "list")
    assert "owner" in out and "alice" in out and "developer" in out

    code, secret, err = run(
        "keys", "create", "--user", "alice", "--name", "ci", "--expires", "30d",
        "--scope", "chat", "--model", "smollm2",
    )  # fmt: skip
    assert code == 0 and secret.startswith("llmos-") and "shown only once" in err
    secret = secret.strip()
    code, out, _ = run("keys", "list", "--user", "alice")
    key_id = out.splitlines()[3].split()[1]  # first column of the first row
    assert secret not in out and "active" in out and "chat" in out

    with open_database(Settings()) as database:
        assert KeyManager(database).verify(secret, scope="chat").key_id == key_id

    assert run("keys", "revoke", key_id)[0] == 0
    assert "revoked" in run("keys", "list")[1]
    assert run("users", "set-role", "alice", "user")[0] == 0
    assert run("users", "disable", "alice")[0] == 0
    assert "disabled" in run("users", "list")[1]


def test_errors_are_one_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run("users", "create", "owner")
    capsys.readouterr()
    for args in [
        ("users", "create", "x'; DROP TABLE users;--"),
        ("users", "set-role", "owner", "root"),
        ("users", "disable", "nobody"),
        ("keys", "create", "--user", "owner", "--name", "k", "--expires", "-1"),
        ("keys", "revoke", "nothing"),
    ]:
        from llmasos.cli.main import main

        with pytest.raises(SystemExit) as caught:
            main(list(args))
        assert caught.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("Error:") and err.count("\n") == 1, err


def test_db_upgrade_backup_restore(home: Path, tmp_path: Path) -> None:
    code, out, _ = run("db", "upgrade")
    assert code == 0 and "schema revision" in out
    run("users", "create", "owner")
    backup = tmp_path / "backup.db"
    assert run("db", "backup", str(backup))[0] == 0
    run("users", "create", "later")
    code, out, _ = run("db", "restore", str(backup))
    assert code == 0 and "restored" in out
    users = run("users", "list")[1]
    assert "owner" in users and "later" not in users


def test_passwd_sets_the_password_and_ends_console_sessions(home: Path) -> None:
    from llmasos.access.sessions import SessionManager
    from llmasos.config import load_settings
    from llmasos.storage import open_database

    assert run("users", "create", "owner", "--password-stdin", stdin="first password\n")[0] == 0
    with open_database(load_settings(home=home)) as database:
        SessionManager(database).sign_in("owner", "first password")
    code, out, _ = run("users", "passwd", "owner", "--password-stdin", stdin="second password\n")
    assert code == 0 and "ended 1 console session" in out
    with open_database(load_settings(home=home)) as database:
        SessionManager(database).sign_in("owner", "second password")
    with pytest.raises(NotFoundError, match="no user named 'nobody'"):
        run("users", "passwd", "nobody", "--password-stdin", stdin="x password\n")
