"""Shared fixtures: a throwaway PostgreSQL server, and databases on SQLite and PostgreSQL.

`postgres_server` starts one PostgreSQL server per test session on 127.0.0.1 (a free port,
its own data directory, trust authentication on loopback only) with ``initdb`` and
``pg_ctl``, found on PATH, in /usr/local/bin or in /usr/lib/postgresql/*/bin; it is stopped
when the session ends. As root the server runs as the ``postgres`` OS user (initdb refuses
root). Without the binaries the PostgreSQL cases are skipped and the reason says so.
`pgvector_server` starts a second one the same way from the binaries of the ``pgserver`` wheel
(PostgreSQL 16 with the pgvector extension), for the tests of the pgvector path only.
`database_url` is parametrised over ``sqlite`` and ``postgresql``: each test gets a fresh
database (a new file, or a new PostgreSQL database dropped afterwards).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmasos.net import free_port

# A server a test starts must not begin tuning its default model when it has been idle for a
# while (`llmasos.toolchain.autotune`): that job would take the cores from the tests. The
# auto-tune tests turn it on in their own settings.
os.environ.setdefault("LLMASOS_AUTO_TUNE", "false")

_PG_TOOLS = ("initdb", "pg_ctl")


def _find_postgres_bin() -> Path | None:
    candidates = [os.path.dirname(shutil.which("initdb") or "") or None, "/usr/local/bin"]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for directory in candidates:
        if directory and all(os.access(Path(directory, t), os.X_OK) for t in _PG_TOOLS):
            return Path(directory)
    return None


@dataclass
class PostgresServer:
    port: int
    user: str = "postgres"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def execute(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(statement)  # type: ignore[arg-type]


@contextmanager
def _running_postgres(bin_dir: Path) -> Iterator[PostgresServer]:
    """A fresh server from ``bin_dir``'s initdb and pg_ctl, stopped and removed afterwards."""
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed")
    root = Path(tempfile.mkdtemp(prefix="llmasos-pg-"))
    data, log = root / "data", root / "server.log"
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without `runuser`: cannot start PostgreSQL unprivileged")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a `postgres` OS user to run PostgreSQL as")
        as_user = [runuser, "-u", "postgres", "--"]
        shutil.chown(root, "postgres")

    def run(*command: str, retry_bind: bool = False) -> bool:
        result = subprocess.run([*as_user, *command], capture_output=True, text=True)
        if result.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            if retry_bind and "could not bind" in tail:
                return False  # another process took the free port first: pick another
            pytest.fail(f"{command[0]} failed: {result.stderr}{result.stdout}\n{tail}")
        return True

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
        "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
    for attempt in range(3):
        port = free_port()
        options = f"-h 127.0.0.1 -p {port} -k '' -c fsync=off -c max_connections=200"
        start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
        if run(*start, "-w", "start", retry_bind=attempt < 2):
            break
    try:
        yield PostgresServer(port=port)
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = _find_postgres_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, in /usr/local/bin "
            "or /usr/lib/postgresql/*/bin; install Debian's `postgresql` package to run these"
        )
    with _running_postgres(bin_dir) as server:
        yield server


def _find_pgserver_bin() -> Path | None:
    """The PostgreSQL binaries bundled by the ``pgserver`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(next(iter(spec.submodule_search_locations)), "pginstall", "bin")
    return bin_dir if all(os.access(bin_dir / t, os.X_OK) for t in _PG_TOOLS) else None


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PostgresServer]:
    """A second server, with the pgvector extension: the PostgreSQL 16 of the `pgserver`
    wheel (the dev extra), which bundles pgvector; Debian's PostgreSQL does not package it."""
    bin_dir = _find_pgserver_bin()
    if bin_dir is None:
        pytest.skip(
            "the pgserver package (dev extra: PostgreSQL 16 with pgvector) is not installed: "
            "the pgvector path of the retrieval index is not tested"
        )
    pytest.importorskip("pgvector", reason="the pgvector package is not installed")
    with _running_postgres(bin_dir) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'llmasos.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"test_{uuid.uuid4().hex[:12]}"
    server.execute(f"CREATE DATABASE {name}")
    try:
        yield server.url(name)
    finally:
        server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
