"""Claims on background work: one holder at a time, freed by `release` or by the holder's
end (on PostgreSQL, across processes: two `Database` handles stand for two servers)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from llmasos.storage import Database
from llmasos.storage.claims import claim_key


def test_a_claim_is_held_once_until_released(database: Database) -> None:
    claims = database.claims
    assert claims.claim("agent_task", "task_1")
    assert not claims.claim("agent_task", "task_1")  # not re-entrant
    assert claims.claim("agent_task", "task_2") and claims.claim("graph_build", "task_1")
    claims.release("agent_task", "task_1")
    claims.release("agent_task", "task_1")  # a claim not held is ignored
    assert claims.claim("agent_task", "task_1")
    assert claim_key("agent_task", "task_1") != claim_key("graph_build", "task_1")


@pytest.fixture
def two_servers(database: Database) -> tuple[Database, Database]:
    return database, Database(database.url)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_another_server_cannot_take_a_held_claim(two_servers: tuple[Database, Database]) -> None:
    first, second = two_servers
    try:
        assert first.claims.claim("agent_task", "task_1")
        assert not second.claims.claim("agent_task", "task_1")
        assert second.claims.claim("agent_task", "task_2")
        first.claims.release("agent_task", "task_1")
        assert second.claims.claim("agent_task", "task_1")
        assert not first.claims.claim("agent_task", "task_2")
    finally:
        second.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_killed_servers_claims_are_free(database: Database) -> None:
    url = database.url.render_as_string(hide_password=False)
    with subprocess.Popen(
        [sys.executable, "-c",
         "import sys, sqlalchemy\n"
         "from llmasos.storage import Database\n"
         "db = Database(sqlalchemy.make_url(sys.argv[1]))\n"
         "assert db.claims.claim('agent_task', 'task_1')\n"
         "print('held', flush=True)\n"
         "sys.stdin.read()\n", url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as holder:  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            assert not database.claims.claim("agent_task", "task_1")
        finally:
            holder.kill()
    # PostgreSQL notices the dead connection and frees its advisory locks
    for _ in range(50):
        if database.claims.claim("agent_task", "task_1"):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the killed process's claim was never freed")
