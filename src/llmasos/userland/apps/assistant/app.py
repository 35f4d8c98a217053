"""assistant: a chat assistant that remembers each conversation.

POST /chat {"session": "...", "message": "..."} answers the message as plain text and keeps
the exchange under that session id, so a follow-up question has the earlier turns as
context. POST /reset {"session": "..."} forgets a conversation; GET /history?session=...
shows it. Conversations live in memory only (lost when the app stops): at most
``MAX_SESSIONS`` of them (the least recently used is dropped) and the last ``MAX_TURNS``
exchanges of each, so memory and prompt length stay bounded. The manifest declares only
``chat``.
"""

import threading
from collections import OrderedDict

from llmasos import Application, Client, InvalidRequestError

client = Client()
app = Application(name="assistant")

SYSTEM = "You are a helpful assistant."
MAX_SESSIONS = 256
MAX_TURNS = 8
MAX_SESSION_ID = 128

_sessions: OrderedDict[str, list[dict[str, str]]] = OrderedDict()
_lock = threading.Lock()


def _check_session(session: str) -> str:
    if not session or len(session) > MAX_SESSION_ID:
        raise InvalidRequestError(f"session must be 1-{MAX_SESSION_ID} characters", param="session")
    return session


@app.route("/chat", methods=("POST",))
def chat(session: str, message: str, max_tokens: int = 256) -> str:
    """Answer ``message`` in the conversation ``session`` (created on first use)."""
    _check_session(session)
    if not message.strip():
        raise InvalidRequestError("message is empty", param="message")
    with _lock:
        history = list(_sessions.get(session, []))
    messages = [{"role": "system", "content": SYSTEM}, *history]
    messages.append({"role": "user", "content": message})
    answer = client.chat(messages, max_tokens=max_tokens).text.strip()
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


if __name__ == "__main__":
    app.run()
