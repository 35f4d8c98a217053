"""What a tool is, what it runs with, and what it returns.

A `Tool` has a `ToolSpec` (name, description, JSON schema of its arguments, the scope a
principal must hold to use it, whether it has side effects) and an async `run`. The registry
validates arguments against the schema before `run` sees them, so `run` may trust their
shape. A tool reports a failure the caller (a model, usually) should read and recover from by
raising `ToolError`; any other exception is a bug and is reported as one.

Side effects (mail sent, an event created, a note deleted) stop for the user's approval unless
granted in advance; `describe` says in plain words exactly what a call will do, for the
approval prompt. A task resumed after a restart may call a step's tool again: a tool with side
effects keys what it does by `ToolContext.idempotency_key` (the task and step) and, seeing the
key again, returns the first call's result instead of acting twice.

`ToolProvider` supplies tools that depend on who asks (a user's registered MCP servers), where
a `Tool` is the same for everyone. Both are registered through ``llmasos.plugins``.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from llmasos.errors import InvalidRequestError, LLMasOSError

if TYPE_CHECKING:
    from llmasos.access.principal import Principal
    from llmasos.config import Settings
    from llmasos.kernel.interface import EngineClientInterface
    from llmasos.knowledge.filesystem import FileSystem
    from llmasos.knowledge.stores import KnowledgeBase
    from llmasos.memory.memories import MemoryStore
    from llmasos.storage.database import Database

TOOL_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""Tool names: what OpenAI's function names allow, lower case, so ``notes_create``."""
DEFAULT_TIMEOUT_S: Final = 30.0


class ToolError(LLMasOSError):
    """A tool call failed in a way its caller should read: bad reference, refused, unreachable.

    The message goes back to the model as the call's result, so it should say what to do
    instead (``"no note with id 12; notes_search finds notes by text"``)."""

    status_code = 400
    error_type = "invalid_request_error"
    default_code = "tool_error"


@dataclass(frozen=True)
class ToolSpec:
    """Everything about a tool but its code."""

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON schema of the arguments: an object schema."""
    permission: str
    """The scope a principal must hold to use the tool (``notes``, ``mail``, ``admin`` ...)."""
    side_effect: bool = False
    """Changes the world outside the task: asks for approval unless granted in advance."""
    group: str = ""
    """The tool set it belongs to (``notes``, ``calendar``, ``os``, ``mcp:SERVER``);
    a task may allow a whole group by its name. Empty: the tool's own name."""
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if not TOOL_NAME.fullmatch(self.name):
            raise InvalidRequestError(
                f"tool name {self.name[:80]!r} must match {TOOL_NAME.pattern}", param="name"
            )
        if self.parameters.get("type") != "object":
            raise InvalidRequestError(
                f"tool {self.name}: parameters must be an object schema", param="parameters"
            )
        if self.timeout_s <= 0:
            raise InvalidRequestError(f"tool {self.name}: timeout_s must be positive")

    @property
    def set_name(self) -> str:
        return self.group or self.name

    def function(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry a chat completion takes."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class OperatingSystemInterface(Protocol):
    """What the ``os`` tools reach above their own layer — installed apps, the process
    manager, the task table — supplied by the process that runs the OS (the server), so the
    tools need not import the layers above them."""

    async def apps(self) -> list[dict[str, Any]]:
        """Installed apps: name, version, description, permissions, running, url."""
        ...

    async def tasks(self, principal: Principal, limit: int) -> list[dict[str, Any]]:
        """The principal's tasks, newest first."""
        ...

    async def launch_app(self, name: str) -> dict[str, Any]:
        """Start an installed app through the process manager; its run state."""
        ...

    async def describe_app(self, name: str) -> dict[str, Any]:
        """An installed app (an unknown name is a `NotFoundError`)."""
        ...

    async def review_app(self, name: str) -> dict[str, Any]:
        """What installing the built-in app ``name`` would install: name, version,
        description, permissions (an unknown name is a `NotFoundError`)."""
        ...

    async def install_app(self, name: str) -> dict[str, Any]:
        """Install the built-in app ``name``; the installed app as `describe_app` gives it."""
        ...


@dataclass(frozen=True)
class ToolSystem:
    """The OS's parts a tool may use; None where this process does not run one."""

    settings: Settings
    database: Database
    engine: EngineClientInterface
    memory: MemoryStore | None = None
    knowledge: KnowledgeBase | None = None
    files: FileSystem | None = None
    os: OperatingSystemInterface | None = None


@dataclass(frozen=True)
class ToolContext:
    """Who calls, with what, and on which task's behalf."""

    principal: Principal
    system: ToolSystem
    task_id: str | None = None
    step: int | None = None

    @property
    def idempotency_key(self) -> str | None:
        """``task:step`` when the call is a task's step: the key a side effect is stored
        under, so the same step run again after a restart finds it done."""
        if self.task_id is None or self.step is None:
            return None
        return f"{self.task_id}:{self.step}"


@dataclass(frozen=True)
class ToolResult:
    """A call's outcome: JSON-able ``output`` for the model and the caller."""

    output: Any
    is_error: bool = False
    effects: tuple[str, ...] = field(default_factory=tuple)
    """What the call changed, in plain words (``"created note 12 'Budget'"``): the task's
    record shows them and the suite's graders compare them with the stores."""

    def text(self) -> str:
        """The result as the text of a ``tool`` message."""
        if isinstance(self.output, str):
            return self.output
        return json.dumps(self.output, ensure_ascii=False, default=str)


class Tool(ABC):
    """One tool. Subclasses set `spec` and implement `run`."""

    spec: ToolSpec

    @abstractmethod
    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        """Do it. ``arguments`` already passed the schema."""

    async def describe(self, arguments: dict[str, Any], context: ToolContext) -> str:
        """Exactly what `run` would do, in plain words, for an approval prompt."""
        shown = json.dumps(arguments, ensure_ascii=False, sort_keys=True)
        return f"{self.spec.name} {shown}"


class ToolProvider(Protocol):
    """Tools that depend on the caller (a user's MCP servers, the apps they installed)."""

    async def tools(self, context: ToolContext) -> Sequence[Tool]: ...
