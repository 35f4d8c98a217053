"""Under ``serve --auth`` a conversation and a response belong to one user: another user's
ids are 404, the same as ids that do not exist."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
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


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, openai.OpenAI]]:
    home: Path = tmp_path_factory.mktemp("conversations-auth-home")
    with open_database(Settings(home=home)) as database:
        users, keys = UserManager(database), KeyManager(database)
        secrets = {}
        for name in ("alice", "bob"):
            users.create(name, role="user")
            secrets[name] = keys.create(name, "laptop").secret
    with llmasos_serve(home, "--auth") as url:
        made = {
            name: openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
            for name, secret in secrets.items()
        }
        yield made
        for client in made.values():
            client.close()


def test_another_users_conversations_and_responses_are_404(
    clients: dict[str, openai.OpenAI],
) -> None:
    alice, bob = clients["alice"], clients["bob"]
    conversation = alice.conversations.create(
        items=[{"type": "message", "role": "user", "content": "alice's secret"}]
    )
    reply = alice.responses.create(
        model="smollm2", input="Hi", conversation=conversation.id, max_output_tokens=4
    )
    item = next(iter(alice.conversations.items.list(conversation.id)))
    attempts = [
        lambda: bob.conversations.retrieve(conversation.id),
        lambda: bob.conversations.update(conversation.id, metadata={"x": "y"}),
        lambda: bob.conversations.items.list(conversation.id),
        lambda: bob.conversations.items.create(
            conversation.id, items=[{"type": "message", "role": "user", "content": "x"}]
        ),
        lambda: bob.conversations.items.retrieve(item.id, conversation_id=conversation.id),
        lambda: bob.conversations.delete(conversation.id),
        lambda: bob.responses.retrieve(reply.id),
        lambda: bob.responses.input_items.list(reply.id),
        lambda: bob.responses.delete(reply.id),
        lambda: bob.responses.create(
            model="smollm2", input="Hi", conversation=conversation.id, max_output_tokens=4
        ),
        lambda: bob.responses.create(
            model="smollm2", input="Hi", previous_response_id=reply.id, max_output_tokens=4
        ),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError) as caught:
            attempt()
        assert "alice" not in caught.value.response.text
    # Nothing of bob's reached alice's conversation, and alice still sees all of it.
    assert len(list(alice.conversations.items.list(conversation.id))) == 3
    assert alice.responses.retrieve(reply.id).id == reply.id
