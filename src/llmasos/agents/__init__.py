"""Agents: natural-language tasks that act through tools, run as processes of the OS.

`interface` says what a task is (its ordered status, budget, steps, events), `store` keeps
tasks and steps in the database sealed by the content cipher, `prompt` builds what the model
reads (tool results labelled as untrusted data), and `runtime` runs each task's loop of
model turns and tool calls in the server process as its owner's kernel tenant, with
approvals for side effects and resumption after a restart.

May import: tools and everything below them (services, memory, knowledge, retrieval,
access, storage, the kernel's interface, client and structured output, shared modules) —
never sdk, server, cli or webui.
"""

from llmasos.agents.interface import (
    Budget,
    StepRecord,
    StepStatus,
    TaskRecord,
    TaskSpec,
    TaskStatus,
)
from llmasos.agents.runtime import AgentRuntime
from llmasos.agents.store import TaskStore

__all__ = [
    "AgentRuntime",
    "Budget",
    "StepRecord",
    "StepStatus",
    "TaskRecord",
    "TaskSpec",
    "TaskStatus",
    "TaskStore",
]
