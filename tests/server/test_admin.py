"""The admin API, quotas and metering behind the real app with authentication on.

The fake engine stands in for the model (these tests are about access, not text); each test
gets a fresh database on SQLite and on PostgreSQL through the root `database_url` fixture.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from llmasos.access.audit import AuditLog
from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import Settings
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.storage import open_database
from llmasos.storage.database import Database
from llmasos.storage.schema import QuotaCounter
from tests.server.conftest import ServerThread
from tests.server.fake_engine import FakeEngineClient

EVIL = "x'); DROP TABLE users; --"


@dataclass
class Site:
    url: str
    database: Database
    keys: dict[str, str]
    key_ids: dict[str, str]

    def get(self, who: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=bearer(self.keys[who]), **kwargs)  # type: ignore[arg-type]

    def call(self, who: str, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", headers=bearer(self.keys[who]), **kwargs)  # type: ignore[arg-type]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[Site]:
    settings = Settings(home=tmp_path / "home", database_url=database_url, auth=True)
    database = open_database(settings)
    users = UserManager(database)
    keys = KeyManager(database)
    secrets, ids = {}, {}
    for name, role in [("root", "admin"), ("alice", "user"), ("bob", "user"), ("dev", "developer")]:
        users.create(name, role=role)
        created = keys.create(name, "main")
        secrets[name], ids[name] = created.secret, created.info.key_id
    store = ModelStore.open(settings)
    app = create_app(settings, FakeEngineClient(), store, keys=keys)
    try:
        with ServerThread(app) as url:
            yield Site(url, database, secrets, ids)
    finally:
        database.close()


def test_user_a_cannot_touch_user_b_keys(site: Site) -> None:
    mine = site.get("alice", "/admin/keys").json()["data"]
    assert {k["user"] for k in mine} == {"alice"}
    assert site.get("alice", "/admin/keys", params={"user": "bob"}).status_code == 404
    revoked = site.call("alice", "DELETE", f"/admin/keys/{site.key_ids['bob']}")
    assert revoked.status_code == 404 and revoked.json()["error"]["type"] == "not_found_error"
    made = site.call("alice", "POST", "/admin/keys", json={"name": "x", "user": "bob"})
    assert made.status_code == 403
    assert site.get("bob", "/v1/models").status_code == 200  # bob's key still works
    everyone = site.get("root", "/admin/keys").json()["data"]
    assert {k["user"] for k in everyone} == {"root", "alice", "bob", "dev"}


def test_own_keys_lifecycle_and_no_escalation(site: Site) -> None:
    made = site.call("alice", "POST", "/admin/keys", json={"name": "laptop", "scopes": ["chat"]})
    assert made.status_code == 201
    body = made.json()
    assert body["key"].startswith("llmos-") and body["user"] == "alice"
    # A chat-only key cannot mint a key with more scopes, nor reach the key API's listing.
    wider = httpx.post(
        f"{site.url}/admin/keys", headers=bearer(body["key"]), json={"name": "w", "scopes": ["*"]}
    )
    assert wider.status_code == 403
    gone = site.call("alice", "DELETE", f"/admin/keys/{body['key_id']}")
    assert gone.status_code == 200 and gone.json()["status"] == "revoked"
    assert httpx.get(f"{site.url}/v1/models", headers=bearer(body["key"])).status_code == 401


@pytest.mark.parametrize("who", ["alice", "dev"])
def test_non_admins_get_403_on_admin_endpoints(site: Site, who: str) -> None:
    calls = [
        ("GET", "/admin/users", None),
        ("POST", "/admin/users", {"name": "eve"}),
        ("PATCH", "/admin/users/bob", {"disabled": True}),
        ("GET", "/admin/usage", None),
        ("GET", "/admin/audit", None),
        ("GET", "/admin/quotas/bob", None),
        ("PUT", "/admin/quotas/bob", {"requests_per_minute": 1}),
        ("PUT", "/admin/prices/smollm2", {"prompt_per_1k": 1, "completion_per_1k": 1}),
    ]
    for method, path, body in calls:
        response = site.call(who, method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["type"] == "permission_error"
    assert UserManager(site.database).get("bob").active


def test_admin_manages_users_quotas_and_sees_audit(site: Site) -> None:
    created = site.call("root", "POST", "/admin/users", json={"name": "carol", "role": "user"})
    assert created.status_code == 201 and created.json()["role"] == "user"
    bad = site.call("root", "POST", "/admin/users", json={"name": EVIL})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "name"
    patched = site.call("root", "PATCH", "/admin/users/carol", json={"role": "developer"})
    assert patched.json()["role"] == "developer"
    disabled = site.call("root", "PATCH", "/admin/users/bob", json={"disabled": True})
    assert disabled.json()["disabled"] is True
    assert site.get("bob", "/v1/models").status_code == 401
    quota = site.call("root", "PUT", "/admin/quotas/alice", json={"tokens_per_day": 10})
    assert quota.status_code == 200 and quota.json()["tokens_per_day"] == 10
    missing = site.call("root", "PUT", f"/admin/quotas/alice/keys/{EVIL}", json={})
    assert missing.status_code == 404
    events = site.get("root", "/admin/audit", params={"actor": "root"}).json()["data"]
    actions = {e["action"] for e in events}
    assert {"user.create", "user.set_role", "user.disable", "quota.set"} <= actions
    names = [u["name"] for u in site.get("root", "/admin/users").json()["data"]]
    assert names == ["root", "alice", "bob", "dev", "carol"]


def test_requests_past_the_rate_limit_get_429_exactly(site: Site) -> None:
    site.call("root", "PUT", "/admin/quotas/alice", json={"requests_per_minute": 5})

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=site.url, timeout=60) as client:
            body = {
                "model": "smollm2",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 1,
            }
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/chat/completions", json=body, headers=bearer(site.keys["alice"])
                    )
                    for _ in range(12)
                )
            )

    if time.time() % 60 > 40:  # start the burst early in a UTC minute, the limit's window
        time.sleep(60 - time.time() % 60)
    minute = int(time.time() // 60)
    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    if statuses.count(429) < 7:  # a minute boundary fell inside the burst: one more window
        pytest.skip("the burst straddled a minute boundary")
    assert statuses == [200] * 5 + [429] * 7
    refused = next(r for r in responses if r.status_code == 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["error"]["type"] == "rate_limit_error"
    ollama = site.call("alice", "POST", "/api/generate", json={"model": "smollm2", "prompt": "x"})
    if ollama.status_code == 200 and int(time.time() // 60) != minute:
        pytest.skip("the window closed before the Ollama request")  # the limit is per UTC minute
    assert ollama.status_code == 429 and "error" in ollama.json()
    assert site.get("bob", "/v1/models").status_code == 200  # others are not limited


def test_usage_is_metered_per_request(site: Site) -> None:
    chat = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}
    reply = site.call("alice", "POST", "/v1/chat/completions", json=chat).json()
    streamed = site.call("bob", "POST", "/api/chat", json={**chat, "stream": True})
    assert streamed.status_code == 200
    site.call("bob", "POST", "/v1/embeddings", json={"model": "all-minilm", "input": ["a", "b"]})
    by_user = {
        row["group"]: row
        for row in site.get("root", "/admin/usage", params={"by": "user"}).json()["data"]
    }
    assert by_user["alice"]["prompt_tokens"] == reply["usage"]["prompt_tokens"]
    assert by_user["alice"]["completion_tokens"] == reply["usage"]["completion_tokens"]
    assert by_user["bob"]["requests"] == 2 and by_user["bob"]["prompt_tokens"] > 0
    assert site.get("alice", "/admin/usage").status_code == 403


def test_model_changes_are_audited_with_the_principal(site: Site) -> None:
    response = site.call("dev", "DELETE", "/api/delete", json={"model": "no-such:model"})
    assert response.status_code == 404
    events = [e for e in AuditLog(site.database).list() if e.action == "model.delete"]
    assert events and events[-1].actor == "dev" and events[-1].outcome == "error"
    assert events[-1].target == "no-such:model"


def test_concurrent_slots_are_given_back_when_responses_finish(site: Site) -> None:
    site.call("root", "PUT", "/admin/quotas/alice", json={"concurrent_requests": 1})
    chat = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}
    for stream in (True, False, True):
        response = site.call(
            "alice", "POST", "/v1/chat/completions", json={**chat, "stream": stream}
        )
        assert response.status_code == 200
    with site.database.session() as session:
        held = session.scalar(select(QuotaCounter.count).where(QuotaCounter.period == "concurrent"))
    assert held == 0
