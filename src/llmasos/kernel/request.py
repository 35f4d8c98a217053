"""A request inside the kernel: its tokens, its status, and how its text is streamed out.

`RequestStatus` is ordered (WAITING < RUNNING < PREEMPTED < FINISHED_*) so ``is_finished`` is
one comparison, and `FINISH_REASONS` maps a finished status to OpenAI's ``finish_reason``.
`Request` is owned by one engine loop; only that loop mutates it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llmasos.kernel.interface import TokenInfo
from llmasos.types import SamplingParams


class RequestStatus(enum.IntEnum):
    WAITING = enum.auto()
    RUNNING = enum.auto()
    PREEMPTED = enum.auto()
    # everything after this is finished
    FINISHED_STOPPED = enum.auto()
    FINISHED_LENGTH = enum.auto()
    FINISHED_ABORTED = enum.auto()
    FINISHED_ERROR = enum.auto()
    FINISHED_TIMEOUT = enum.auto()
    FINISHED_REPETITION = enum.auto()
    """Stopped by the repetition guard (`llmasos.kernel.repetition`)."""

    @property
    def is_finished(self) -> bool:
        return self > RequestStatus.PREEMPTED


FINISH_REASONS: dict[RequestStatus, str] = {
    RequestStatus.FINISHED_STOPPED: "stop",
    RequestStatus.FINISHED_LENGTH: "length",
    RequestStatus.FINISHED_ABORTED: "abort",
    RequestStatus.FINISHED_ERROR: "error",
    RequestStatus.FINISHED_TIMEOUT: "abort",
    RequestStatus.FINISHED_REPETITION: "length",
}

STOPPED_BY: dict[RequestStatus, str] = {
    RequestStatus.FINISHED_REPETITION: "repetition_guard",
}
"""What cut a request short when ``finish_reason`` alone does not say it (``length`` is
also the repetition guard's reason: the reply was cut, so clients that check for ``length``
treat it as truncated)."""


@dataclass
class Request:
    """The kernel's view of one generation."""

    request_id: str
    seq_id: int
    """The integer the backend knows this sequence by."""
    prompt_tokens: list[int]
    sampling: SamplingParams
    max_tokens: int
    """Output tokens allowed (already capped by the context window)."""
    tenant: str = "anonymous"
    priority: int = 0
    arrival_time: float = field(default_factory=time.monotonic)
    deadline: float | None = None
    status: RequestStatus = RequestStatus.WAITING
    output_tokens: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    """Tokens of ``all_tokens`` already in the backend's KV state."""
    num_cached_tokens: int = 0
    """Prompt tokens found in the prefix cache at admission."""
    num_preemptions: int = 0
    scheduled_time: float | None = None
    first_token_time: float | None = None
    last_token_time: float | None = None
    emit: Callable[[RequestDelta], object] | None = None
    """Where the engine sends this request's deltas (thread-safe)."""
    media: object | None = None
    """A vision-language backend's pixel inputs for the images in the prompt
    (`BackendInterface.encode_images`); None for a text prompt."""

    @property
    def all_tokens(self) -> list[int]:
        return self.prompt_tokens + self.output_tokens

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_tokens) + len(self.output_tokens)

    @property
    def num_pending_tokens(self) -> int:
        """Tokens still to feed before the next sample."""
        return self.num_tokens - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished

    @property
    def finish_reason(self) -> str | None:
        return FINISH_REASONS.get(self.status)


@dataclass
class RequestDelta:
    """What the engine loop reports about a request after a step (internal to the kernel)."""

    text: str = ""
    tokens: list[TokenInfo] = field(default_factory=list)
    finished: bool = False
    finish_reason: str | None = None
    stopped_by: str | None = None
    error: Exception | None = None
    num_prompt_tokens: int = 0
    num_output_tokens: int = 0
    num_cached_tokens: int = 0
    queue_seconds: float = 0.0
    prompt_seconds: float = 0.0
    generation_seconds: float = 0.0
