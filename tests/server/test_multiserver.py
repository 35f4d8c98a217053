"""Two ``llmasos serve`` processes on one PostgreSQL database share users, keys, quotas and
usage: a quota set through one server holds exactly across both, whichever server each
request reaches, and the usage either server reports counts exactly the admitted requests.

The servers share a home (one per core on one host; on several hosts only the master key
must be shared, which `tests/storage/test_rotation.py` covers): a fresh home costs each
server the hashing of the built-in models. Each request is a one-token completion.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import Settings
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.storage import open_database
from tests.serving import llmasos_serve

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]

MODEL = "smollm2:135m"
LIMIT = 5
REQUESTS = 16  # 8 at each server, all at once


def wait_for_room_in_this_minute(seconds: float = 5) -> None:
    """The limit is per UTC minute: start early enough that every request lands in one."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.1)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_quota_is_exact_across_two_servers(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with open_database(Settings(home=home, database_url=database_url)) as database:
        users, keys = UserManager(database), KeyManager(database)
        users.create("root")  # the first user is the admin
        users.create("bob", role="user")
        admin_key = keys.create("root", "ops").secret
        bob_key = keys.create("bob", "laptop").secret

    args = ("--auth", "--database-url", database_url, "--default-model", MODEL)
    with ExitStack() as stack:
        urls = [stack.enter_context(llmasos_serve(home, *args)) for _ in range(2)]
        admin = {"Authorization": f"Bearer {admin_key}"}
        bob = {"Authorization": f"Bearer {bob_key}"}
        # the quota is set through the first server ...
        put = httpx.put(
            f"{urls[0]}/admin/quotas/bob", json={"requests_per_minute": LIMIT}, headers=admin
        )
        assert put.status_code == 200, put.text

        start = threading.Barrier(REQUESTS)

        def complete(number: int) -> httpx.Response:
            url = urls[number % 2]
            start.wait(timeout=30)
            return httpx.post(
                f"{url}/v1/completions",
                json={"model": MODEL, "prompt": f"Request {number}:", "max_tokens": 1},
                headers=bob,
                timeout=60,
            )

        wait_for_room_in_this_minute()
        with ThreadPoolExecutor(REQUESTS) as pool:
            responses = list(pool.map(complete, range(REQUESTS)))

        admitted = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code != 200]
        assert len(admitted) == LIMIT, [r.status_code for r in responses]
        for response in refused:
            assert response.status_code == 429, response.text
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
            assert f"limit of {LIMIT} requests per minute" in error["message"]
            assert 1 <= int(response.headers["Retry-After"]) <= 60
        prompt_tokens = sum(r.json()["usage"]["prompt_tokens"] for r in admitted)
        completion_tokens = sum(r.json()["usage"]["completion_tokens"] for r in admitted)

        # ... and the second server reports exactly the admitted requests
        report = httpx.get(f"{urls[1]}/admin/usage", params={"user": "bob"}, headers=admin)
        assert report.status_code == 200, report.text
        (row,) = report.json()["data"]
        assert (row["group"], row["requests"]) == ("bob", LIMIT)
        assert row["prompt_tokens"] == prompt_tokens > 0
        assert row["completion_tokens"] == completion_tokens <= LIMIT
