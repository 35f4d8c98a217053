"""Authentication on the real server and kernel: keys, scopes, models, tenants, audit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from llmasos.access.audit import AuditLog
from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import load_settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.storage import open_database
from tests.server.conftest import ServerThread

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]


@dataclass
class AuthServer:
    url: str
    keys: KeyManager
    admin_key: str
    user_key: str


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    home: Path = tmp_path_factory.mktemp("auth-home")
    settings = load_settings(home=home, auth=True, threads=2, context_length=1024)
    database = open_database(settings)
    users = UserManager(database)
    users.create("root", role="admin")
    users.create("alice", role="user")
    keys = KeyManager(database)
    admin_key = keys.create("root", "ops").secret
    user_key = keys.create("alice", "laptop").secret
    store = ModelStore.open(settings)
    engine = InProcessEngineClient(settings, store)
    app = create_app(settings, engine, store, keys=keys)
    with ServerThread(app) as url:
        yield AuthServer(url, keys, admin_key, user_key)
    database.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_health_is_open_and_everything_else_needs_a_key(auth_server: AuthServer) -> None:
    url = auth_server.url
    assert httpx.get(f"{url}/health").status_code in (200, 503)
    response = httpx.get(f"{url}/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    response = httpx.get(f"{url}/api/tags", headers=bearer("llmos-not-a-real-key"))
    assert response.status_code == 401 and "error" in response.json()
    assert httpx.get(f"{url}/v1/models", headers=bearer(auth_server.user_key)).status_code == 200


def test_the_key_is_the_tenant(auth_server: AuthServer) -> None:
    client = openai.OpenAI(base_url=f"{auth_server.url}/v1", api_key=auth_server.user_key)
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say hi"}],
        max_tokens=4,
        user="someone-else",  # cannot pick another tenant when authenticated
    )
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    metrics = httpx.get(f"{auth_server.url}/metrics", headers=bearer(auth_server.admin_key))
    assert metrics.status_code == 200
    assert 'tenant="alice"' in metrics.text and 'tenant="someone-else"' not in metrics.text
    forbidden = httpx.get(f"{auth_server.url}/metrics", headers=bearer(auth_server.user_key))
    assert forbidden.status_code == 403


def test_scopes_and_model_allow_list_give_403(auth_server: AuthServer) -> None:
    url = auth_server.url
    chat_only = auth_server.keys.create("alice", "chat-only", scopes=["chat"]).secret
    response = httpx.post(
        f"{url}/v1/embeddings",
        json={"model": "all-minilm", "input": "x"},
        headers=bearer(chat_only),
    )
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    embed_only = auth_server.keys.create("alice", "embed", models=["all-minilm"]).secret
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=embed_only)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    vectors = client.embeddings.create(model="all-minilm", input=["hello"])
    assert len(vectors.data[0].embedding) == 384


def test_revoked_and_expired_keys_stop_working_at_once(auth_server: AuthServer) -> None:
    url = auth_server.url
    created = auth_server.keys.create("alice", "temp")
    assert httpx.get(f"{url}/v1/models", headers=bearer(created.secret)).status_code == 200
    auth_server.keys.revoke(created.info.key_id)
    response = httpx.get(f"{url}/v1/models", headers=bearer(created.secret))
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]
    short = auth_server.keys.create("alice", "short", expires_in=0.5).secret
    time.sleep(1.0)
    assert httpx.get(f"{url}/v1/models", headers=bearer(short)).status_code == 401


def test_denied_requests_are_audited(auth_server: AuthServer) -> None:
    httpx.get(f"{auth_server.url}/v1/models", headers=bearer("llmos-nope"))
    events = AuditLog(auth_server.keys.database).list()
    assert any(e.action == "request.denied" and e.outcome == "denied" for e in events)
