"""tutor: asks questions on a topic at the user's level and grades the answers.

POST /question {"topic"} -> {"id", "topic", "question", "level", "level_reason"}; POST /grade
{"id", "answer"} -> the question with "answer", "expected", "correct" and "feedback". Both
are chat calls constrained by a JSON schema; an answer equal to the kept-back reference
(ignoring case and punctuation) is correct whatever the model says. Each graded answer is
recorded in the user's OS memory (an ``event``), so the level (1 very easy … 5 very hard)
follows the user's results across restarts. Manifest: ``chat``, ``memory``.
"""

import contextlib
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from llmasos import Application, BackendError, Client, InvalidRequestError, NotFoundError

client = Client()
app = Application(name="tutor")

MAX_QUESTIONS, RECENT = 1024, 6  # questions kept; recorded results that set the level
LEVELS = ("very easy, for a beginner", "easy", "medium", "hard", "very hard, for an expert")
START = 2
SYSTEM = "You are a helpful assistant."
QUESTION: list[tuple[str, int]] = [("question", 200), ("answer", 100)]
VERDICT: list[tuple[str, int]] = [("correct", 0), ("feedback", 200)]

_questions: OrderedDict[str, dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


def _structured(prompt: str, fields: list[tuple[str, int]], temperature: float) -> dict[str, Any]:
    """One chat call constrained to a JSON object of ``fields`` (strings or booleans)."""
    string = {"type": "string", "minLength": 1}  # lengths that keep the JSON in max_tokens
    properties = {n: string | {"maxLength": m} if m else {"type": "boolean"} for n, m in fields}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema |= {"required": [n for n, _ in fields], "additionalProperties": False}
    for attempt in range(2):  # a small model's answer can run out of tokens: ask once more
        reply = client.chat(
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
            max_tokens=200,
            temperature=temperature + 0.3 * attempt,
            response_format={"type": "json_schema", "json_schema": {"name": "o", "schema": schema}},
        )
        with contextlib.suppress(ValueError):
            return dict(json.loads(reply.text))
    raise BackendError(f"the model's answer was cut short ({reply.finish_reason})")


def _normal(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).strip().lower()


def level_for(topic: str) -> tuple[int, str]:
    """The next level on ``topic`` from the user's recorded results, and why."""
    filters = {"app": "tutor", "topic": _normal(topic)}
    results = client.memories.list(kind="event", metadata=filters, limit=RECENT)
    if not results:
        return START, "no recorded answers on this topic yet"
    last = int(results[0].metadata.get("level", START))
    right = sum(1 for item in results if item.metadata.get("correct") is True)
    share = right / len(results)
    level = min(5, last + 1) if share >= 0.75 else max(1, last - 1) if share < 0.5 else last
    return level, f"{right} of your last {len(results)} answers on this topic were right"


@app.route("/question", methods=("POST",))
def question(topic: str) -> dict[str, Any]:
    """Ask one short question about ``topic`` at the user's level; grade it with /grade."""
    if not topic.strip():
        raise InvalidRequestError("topic is empty", param="topic")
    level, reason = level_for(topic)
    written = _structured(
        f"Write one {LEVELS[level - 1]} quiz question about {topic.strip()}, and its correct "
        "answer. Reply in JSON with 'question' and 'answer'.",
        QUESTION,
        temperature=0.7,
    )
    entry: dict[str, Any] = {"id": uuid.uuid4().hex[:12], "topic": topic.strip()}
    entry |= {"question": str(written["question"]).strip(), "level": level}
    with _lock:
        _questions[entry["id"]] = {**entry, "expected": str(written["answer"]).strip()}
        while len(_questions) > MAX_QUESTIONS:
            _questions.popitem(last=False)
    return {**entry, "level_reason": reason}


@app.route("/grade", methods=("POST",))
def grade(id: str, answer: str) -> dict[str, Any]:
    """Grade ``answer`` to the question ``id``, and record the result in the user's memory."""
    with _lock:
        asked = _questions.get(id)
    if asked is None:
        raise NotFoundError(f"no question with id {id!r}; ask one with /question", param="id")
    verdict = _structured(
        f"Question: {asked['question']}\nCorrect answer: {asked['expected']}\n"
        f"Student's answer: {answer}\nIs the student's answer correct? Reply in JSON with "
        "'correct' (true or false) and 'feedback' (one short sentence for the student).",
        VERDICT,
        temperature=0.0,
    )
    exact = bool(_normal(answer)) and _normal(answer) == _normal(asked["expected"])
    correct = exact or bool(verdict["correct"])
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    client.memories.add(
        f"{when} UTC: tutor question on {asked['topic']} (level {asked['level']}): "
        f"{asked['question']} Answered {'right' if correct else 'wrong'}.",
        kind="event",
        metadata={"app": "tutor", "topic": _normal(asked["topic"]), "level": asked["level"]}
        | {"correct": correct},
    )
    return {**asked, "answer": answer, "correct": correct, "feedback": verdict["feedback"].strip()}


if __name__ == "__main__":
    app.run()
