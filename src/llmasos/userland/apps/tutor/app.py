"""tutor: asks questions on a topic and grades the answers.

POST /question {"topic": "..."} answers {"id", "topic", "question"}; POST /grade {"id": ...,
"answer": "..."} answers {"id", "topic", "question", "answer", "expected", "correct",
"feedback"}. Both are chat calls whose output is constrained by a JSON schema
(``response_format`` ``json_schema``), so they always parse: a question is written together
with its reference answer (kept back until grading), and the grader compares the student's
answer with that reference. An answer that equals the reference (ignoring case, spaces and
punctuation) is correct whatever the model says. Questions live in memory, at most
``MAX_QUESTIONS`` (the oldest is dropped). The manifest declares only ``chat``.
"""

import json
import re
import threading
import uuid
from collections import OrderedDict
from typing import Any

from llmasos import Application, BackendError, Client, InvalidRequestError, NotFoundError

client = Client()
app = Application(name="tutor")

MAX_QUESTIONS = 1024
SYSTEM = "You are a helpful assistant."
QUESTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 1, "maxLength": 300},
        "answer": {"type": "string", "minLength": 1, "maxLength": 150},
    },
    "required": ["question", "answer"],
    "additionalProperties": False,
}
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "correct": {"type": "boolean"},
        "feedback": {"type": "string", "maxLength": 300},
    },
    "required": ["correct", "feedback"],
    "additionalProperties": False,
}

_questions: OrderedDict[str, dict[str, str]] = OrderedDict()
_lock = threading.Lock()


def _structured(prompt: str, schema: dict[str, Any], temperature: float) -> dict[str, Any]:
    """One chat call constrained to ``schema``, parsed."""
    reply = client.chat(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        max_tokens=200,
        temperature=temperature,
        response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": schema}},
    )
    try:
        data = json.loads(reply.text)
    except ValueError:
        raise BackendError(f"the model's answer was cut short ({reply.finish_reason})") from None
    return dict(data)


def _normal(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).strip().lower()


@app.route("/question", methods=("POST",))
def question(topic: str) -> dict[str, str]:
    """Ask one short question about ``topic``; grade the answer with /grade and its id."""
    if not topic.strip():
        raise InvalidRequestError("topic is empty", param="topic")
    written = _structured(
        f"Write one short quiz question about {topic.strip()}, and its correct answer. "
        "Reply in JSON with 'question' and 'answer'.",
        QUESTION_SCHEMA,
        temperature=0.7,
    )
    entry = {"id": uuid.uuid4().hex[:12], "topic": topic.strip()}
    entry |= {"question": str(written["question"]).strip()}
    with _lock:
        _questions[entry["id"]] = {**entry, "expected": str(written["answer"]).strip()}
        while len(_questions) > MAX_QUESTIONS:
            _questions.popitem(last=False)
    return entry


@app.route("/grade", methods=("POST",))
def grade(id: str, answer: str) -> dict[str, Any]:
    """Grade ``answer`` to the question ``id``: ``correct`` and one sentence of feedback."""
    with _lock:
        asked = _questions.get(id)
    if asked is None:
        raise NotFoundError(f"no question with id {id!r}; ask one with /question", param="id")
    verdict = _structured(
        f"Question: {asked['question']}\nCorrect answer: {asked['expected']}\n"
        f"Student's answer: {answer}\nIs the student's answer correct? Reply in JSON with "
        "'correct' (true or false) and 'feedback' (one short sentence for the student).",
        VERDICT_SCHEMA,
        temperature=0.0,
    )
    exact = bool(_normal(answer)) and _normal(answer) == _normal(asked["expected"])
    correct = exact or bool(verdict["correct"])
    feedback = str(verdict["feedback"]).strip()
    return {**asked, "answer": answer, "correct": correct, "feedback": feedback}


if __name__ == "__main__":
    app.run()
