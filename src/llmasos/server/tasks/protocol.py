"""Request bodies of ``/v1/tasks``; responses are the runtime's own ``to_dict`` shapes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from llmasos.agents.interface import Budget, TaskSpec


class BudgetParam(BaseModel):
    """Any field left out takes the default (10 steps, 50,000 tokens, 600 s)."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = None

    def budget(self) -> Budget:
        given = {k: v for k, v in self.model_dump().items() if v is not None}
        return Budget(**given)


class TaskCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruction: str = Field(description="What to do, in plain words.")
    model: str | None = Field(None, description="The model that plans; default: the server's.")
    tools: list[str] | None = Field(
        None, description="Tool or group names the task may use; default: every tool allowed."
    )
    granted: list[str] = Field(
        default_factory=list,
        description="Side-effecting tools (or groups) approved in advance.",
    )
    budget: BudgetParam = Field(default_factory=BudgetParam)
    tool_choice: str = Field(
        "auto", description='"auto", or "required": the first step must call a tool.'
    )

    def spec(self, default_model: str) -> TaskSpec:
        return TaskSpec(
            instruction=self.instruction,
            model=self.model or default_model,
            tools=tuple(self.tools) if self.tools is not None else None,
            granted=tuple(self.granted),
            budget=self.budget.budget(),
            tool_choice=self.tool_choice,
        )
