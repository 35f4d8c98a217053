"""The request body of ``POST /v1/responses`` (OpenAI's Responses API).

Responses themselves are plain dicts in OpenAI's shape (built in `serving`), stored as
they were returned; two fields are LLMasOS additions: ``compaction`` (null, or what was
summarized to make this turn fit) and ``recalled_items`` (ids of compacted turns brought
back into the prompt for this input).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from llmasos.server.openai.common import OpenAIModel


class ConversationRef(OpenAIModel):
    id: str


class FunctionTool(OpenAIModel):
    """A function tool, or the built-in ``file_search`` tool over vector stores."""

    type: str = "function"
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    vector_store_ids: list[str] | None = Field(None, description="file_search: the stores.")
    max_num_results: int | None = Field(None, description="file_search: hits to read (1-50).")
    filters: dict[str, Any] | None = Field(None, description="file_search: attribute filter.")
    ranking_options: dict[str, Any] | None = Field(None, description="Accepted and ignored.")


class TextFormat(OpenAIModel):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(OpenAIModel):
    format: TextFormat | None = None


class ResponseCreateRequest(OpenAIModel):
    model: str | None = Field(None, description="Store name; omitted means the default model.")
    input: str | list[dict[str, Any]] | None = Field(
        None, description="A string (one user message) or a list of items."
    )
    instructions: str | None = Field(None, description="A system message for this turn only.")
    conversation: str | ConversationRef | None = Field(
        None, description="A conversation to read from and append this turn to."
    )
    previous_response_id: str | None = Field(
        None, description="A stored response to continue from (instead of a conversation)."
    )
    store: bool = Field(True, description="Keep the response for retrieval and chaining.")
    stream: bool = False
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    text: TextConfig | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    priority: int = Field(0, description="Lower runs earlier under the priority policy.")
    keep_alive: float | str | None = None

    @property
    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, ConversationRef):
            return self.conversation.id
        return self.conversation
