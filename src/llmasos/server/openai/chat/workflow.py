"""A workflow where a model goes: ``model: "workflow:NAME"`` in ``/v1/chat/completions``.

The last user message is the run's input (the workflow's only required input, else its
first string input); the run's output is the assistant message (the output itself when it
is text, its one field when it has one, else its ``answer``/``text``/``output`` field, else
JSON). With ``stream: true`` the reply comes as OpenAI chunks once the run finishes. A run
that stops at a human node answers with ``finish_reason: "stop"`` and a message naming the
run to answer. The caller needs the ``workflows`` scope besides ``chat``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from fastapi.responses import JSONResponse, Response

from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.server.context import current_principal
from llmasos.server.openai.chat.protocol import ChatCompletionRequest
from llmasos.server.openai.files.serving import current_user
from llmasos.server.streaming import StreamingBody, chunk_event, sse_event
from llmasos.workflows.definition import Workflow
from llmasos.workflows.system import Workflows

PREFIX: Final = "workflow:"
ANSWER_FIELDS: Final = ("answer", "text", "output", "report", "result")


def is_workflow_model(model: str | None) -> bool:
    return model is not None and model.startswith(PREFIX)


def input_name(workflow: Workflow) -> str:
    required = [k for k, s in workflow.inputs.items() if s.get("required", "default" not in s)]
    if len(required) == 1:
        return required[0]
    for key, spec in workflow.inputs.items():
        if spec.get("type") == "string":
            return key
    raise InvalidRequestError(
        f"workflow {workflow.name} has no text input to take the user's message",
        param="model",
    )


def output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, dict):
        if len(output) == 1:
            return output_text(next(iter(output.values())))
        for key in ANSWER_FIELDS:
            if isinstance(output.get(key), str):
                return str(output[key])
    return json.dumps(output, ensure_ascii=False, default=str)


def _last_user(body: ChatCompletionRequest) -> str:
    for message in reversed(body.messages):
        if message.role == "user":
            if isinstance(message.content, str):
                return message.content
            if isinstance(message.content, list):
                return "\n".join(getattr(part, "text", "") for part in message.content)
    return ""


async def workflow_completion(workflows: Workflows, body: ChatCompletionRequest) -> Response:
    principal = current_principal()
    if principal is not None:
        principal.require(scope="workflows")
    name = (body.model or "")[len(PREFIX) :]
    user = current_user()
    workflow = workflows.workflow(user, name)
    text = _last_user(body)
    if not text.strip():
        raise InvalidRequestError(
            "messages: no user message to give the workflow", param="messages"
        )
    run = workflows.engine.start(user, workflow, {input_name(workflow): text}, "chat")
    await workflows.engine.wait(run.id)
    run = workflows.store.run(user, run.id)
    if run.status == "failed":
        raise LLMasOSError(f"workflow {name} failed (run {run.id}): {run.error}")
    if run.status == "waiting":
        content = f"Run {run.id} is waiting for a person to answer (llmasos workflow runs)."
    else:
        content = output_text(run.output)
    head = {
        "id": f"chatcmpl-{run.id}",
        "created": int(time.time()),
        "model": body.model,
        "system_fingerprint": run.id,
    }
    if body.stream:

        async def chunks() -> AsyncIterator[str]:
            chunk = {**head, "object": "chat.completion.chunk"}
            yield chunk_event(chunk, [{"index": 0, "delta": {"role": "assistant", "content": ""}}])
            yield chunk_event(chunk, [{"index": 0, "delta": {"content": content}}])
            yield chunk_event(chunk, [{"index": 0, "delta": {}, "finish_reason": "stop"}])
            yield sse_event("[DONE]")

        return StreamingBody(chunks(), media_type="text/event-stream")
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for step in workflows.store.steps(run.id).values():
        usage["prompt_tokens"] += step.prompt_tokens
        usage["completion_tokens"] += step.completion_tokens
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return JSONResponse(
        {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
            "workflow_run": run.id,
        }
    )
