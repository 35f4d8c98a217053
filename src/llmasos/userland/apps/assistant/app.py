"""assistant: a chat assistant that remembers each conversation, and what you tell it.

POST /chat {"session": "...", "message": "..."} answers the message as plain text and keeps
the exchange under that session id, so a follow-up question has the earlier turns as
context. POST /reset {"session": "..."} forgets a conversation; GET /history?session=...
shows it. Conversations live in the app's process: at most ``MAX_SESSIONS`` of them (the
least recently used is dropped) and the last ``MAX_TURNS`` exchanges of each.

Long-term memory is the OS's (``/v1/memories``), so it outlives the app: POST /remember
{"text": "..."} stores a fact, ``"remember": true`` on /chat stores the message too, GET
/memories shows what is remembered and POST /forget {"id": "mem_…"} drops one. Every answer
gets the relevant memories in its prompt. The manifest declares ``chat`` and ``memory``.
"""

import threading
from collections import OrderedDict
from typing import Any

from llmasos import Application, Client, InvalidRequestError

client = Client()
app = Application(name="assistant")

SYSTEM = "You are a helpful assistant."
MAX_SESSIONS = 256
MAX_TURNS = 8
MAX_SESSION_ID = 128
SOURCE = {"app": "assistant"}

_sessions: OrderedDict[str, list[dict[str, str]]] = OrderedDict()
_lock = threading.Lock()


def _check_session(session: str) -> str:
    if not session or len(session) > MAX_SESSION_ID:
        raise InvalidRequestError(f"session must be 1-{MAX_SESSION_ID} characters", param="session")
    return session


@app.route("/chat", methods=("POST",))
def chat(session: str, message: str, max_tokens: int = 256, remember: bool = False) -> str:
    """Answer ``message`` in the conversation ``session`` (created on first use), with the
    user's relevant memories; ``remember`` also stores the message as a memory."""
    _check_session(session)
    if not message.strip():
        raise InvalidRequestError("message is empty", param="message")
    if remember:
        client.memories.add(message, metadata=SOURCE)
    with _lock:
        history = list(_sessions.get(session, []))
    messages = [{"role": "system", "content": SYSTEM}, *history]
    messages.append({"role": "user", "content": message})
    reply = client.chat(messages, max_tokens=max_tokens, metadata={"memory": "true"})
    answer = reply.text.strip()
    with _lock:
        turns = _sessions.pop(session, [])
        turns += [{"role": "user", "content": message}, {"role": "assistant", "content": answer}]
        _sessions[session] = turns[-2 * MAX_TURNS :]
        while len(_sessions) > MAX_SESSIONS:
            _sessions.popitem(last=False)
    return answer


@app.route("/history", methods=("GET",))
def history(session: str) -> list[dict[str, str]]:
    """The remembered messages of a conversation (empty if unknown)."""
    with _lock:
        return list(_sessions.get(_check_session(session), []))


@app.route("/reset", methods=("POST",))
def reset(session: str) -> dict[str, bool]:
    """Forget a conversation; ``forgotten`` says whether there was one."""
    with _lock:
        return {"forgotten": _sessions.pop(_check_session(session), None) is not None}


@app.route("/remember", methods=("POST",))
def remember(text: str, kind: str = "fact") -> dict[str, str]:
    """Remember a fact about the user; ``status`` says whether it was new."""
    item = client.memories.add(text, kind=kind, metadata=SOURCE)[0]
    return {"id": item.id, "status": item.status or "created"}


@app.route("/memories", methods=("GET",))
def memories(query: str = "", limit: int = 50) -> list[dict[str, Any]]:
    """What the assistant remembers about the user (the best matches of ``query`` if given)."""
    found = (
        client.memories.search(query, k=min(limit, 100))
        if query.strip()
        else client.memories.list(limit=limit)
    )
    return [{"id": m.id, "text": m.text, "kind": m.kind, "score": m.score} for m in found]


@app.route("/forget", methods=("POST",))
def forget(id: str) -> dict[str, bool]:
    """Forget one memory."""
    client.memories.delete(id)
    return {"forgotten": True}


if __name__ == "__main__":
    app.run()
