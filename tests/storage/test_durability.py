"""Committed rows survive a ``kill -9`` of the writing process, on both databases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from llmasos.access import KeyManager, UserManager
from llmasos.config import Settings
from llmasos.storage import open_database

WRITER = """
import sys
from llmasos.access import KeyManager
from llmasos.config import load_settings
from llmasos.storage import open_database

keys = KeyManager(open_database(load_settings()))
while True:
    created = keys.create("writer", "row")
    print(created.info.key_id, flush=True)  # printed only after the commit returned
"""


def test_kill_9_loses_no_committed_row(settings: Settings) -> None:
    with open_database(settings) as database:
        UserManager(database).create("writer")
    env = {
        **os.environ,
        "LLMASOS_HOME": str(settings.home),
        "LLMASOS_DATABASE_URL": str(settings.database_url),
    }
    with subprocess.Popen(
        [sys.executable, "-c", WRITER], stdout=subprocess.PIPE, text=True, env=env
    ) as child:
        assert child.stdout is not None
        printed: list[str] = []
        deadline = time.monotonic() + 60
        while len(printed) < 40 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            printed.append(line.strip())
        child.send_signal(signal.SIGKILL)
        printed += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(printed) >= 40, "the writer did not get going"
    with open_database(settings) as database:
        stored = {key.key_id for key in KeyManager(database).list("writer")}
    assert set(printed) <= stored
    assert len(stored) - len(printed) <= 1  # at most the one in flight when killed
