"""Usage rows carry the real model's token counts (embedded SmolLM2 behind the real app)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import select

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import load_settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.models.store import ModelStore
from llmasos.server.app import create_app
from llmasos.storage import open_database
from llmasos.storage.schema import UsageRecord
from tests.server.conftest import ServerThread

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]


def test_a_real_generation_is_metered_with_its_token_counts(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, auth=True, threads=2, context_length=1024)
    database = open_database(settings)
    UserManager(database).create("alice")
    keys = KeyManager(database)
    created = keys.create("alice", "laptop")
    store = ModelStore.open(settings)
    engine = InProcessEngineClient(settings, store)
    try:
        with ServerThread(create_app(settings, engine, store, keys=keys)) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=created.secret, max_retries=0)
            reply = client.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": "Say hi"}], max_tokens=4
            )
            service = httpx.post(
                f"{url}/v1/services/sentiment",
                json={"text": "I love this!"},
                headers={"Authorization": f"Bearer {created.secret}"},
                timeout=120,
            )
        assert reply.usage is not None
        assert service.status_code == 200, service.text
        with database.session() as session:
            rows = session.scalars(select(UsageRecord).order_by(UsageRecord.id)).all()
        assert len(rows) == 2
        served = rows[1]
        assert served.endpoint == "/v1/services/sentiment"
        assert served.prompt_tokens == service.json()["usage"]["prompt_tokens"] > 0
        assert served.completion_tokens == service.json()["usage"]["completion_tokens"] > 0
        row = rows[0]
        assert (row.user_name, row.key_id, row.status) == ("alice", created.info.key_id, 200)
        assert row.prompt_tokens == reply.usage.prompt_tokens > 0
        assert row.completion_tokens == reply.usage.completion_tokens > 0
        assert row.model.startswith("smollm2") and row.endpoint == "/v1/chat/completions"
        assert row.latency_ms > 0
    finally:
        asyncio.run(engine.close())
        database.close()


def test_a_client_that_hangs_up_mid_stream_gives_its_concurrency_slot_back(
    tmp_path: Path,
) -> None:
    from llmasos.access.quotas import QuotaManager

    settings = load_settings(home=tmp_path, auth=True, threads=2, context_length=1024)
    database = open_database(settings)
    UserManager(database).create("alice")
    QuotaManager(database).set("alice", limits={"concurrent_requests": 1})
    created = KeyManager(database).create("alice", "laptop")
    store = ModelStore.open(settings)
    engine = InProcessEngineClient(settings, store)
    headers = {"Authorization": f"Bearer {created.secret}"}
    body = {
        "model": "smollm2",
        "stream": True,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
    }
    try:
        with ServerThread(create_app(settings, engine, store, keys=KeyManager(database))) as url:
            chat = f"{url}/v1/chat/completions"
            with httpx.stream("POST", chat, json=body, headers=headers, timeout=60) as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                assert next(line for line in lines if line.startswith("data:"))
                busy = httpx.post(chat, json={**body, "stream": False}, headers=headers)
                assert busy.status_code == 429 and "Retry-After" in busy.headers
            # The stream was closed early: the slot must come back without a restart.
            short = {**body, "stream": False, "max_tokens": 4}
            for _ in range(50):
                reply = httpx.post(chat, json=short, headers=headers, timeout=60)
                if reply.status_code == 200:
                    break
                time.sleep(0.1)
            assert reply.status_code == 200, reply.text
    finally:
        asyncio.run(engine.close())
        database.close()
