"""Request and response bodies of the admin API (``/admin/*``).

Bodies refuse unknown fields, so a typo is a 400 rather than a silently ignored setting.
Text fields are bounded here and checked again (names, labels, model patterns) by the
access layer; every value reaches SQL only as a bound parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserOut(BaseModel):
    name: str
    role: str
    disabled: bool
    has_password: bool
    created_at: datetime


class UserCreate(Strict):
    name: str = Field(max_length=64)
    role: str = Field(default="user", max_length=16)
    password: str | None = Field(default=None, max_length=1024)


class UserPatch(Strict):
    role: str | None = Field(default=None, max_length=16)
    disabled: bool | None = None


class KeyOut(BaseModel):
    key_id: str
    user: str
    name: str
    scopes: list[str]
    models: list[str]
    status: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreate(Strict):
    name: str = Field(max_length=128)
    user: str | None = Field(default=None, max_length=64, description="Default: yourself.")
    scopes: list[str] = Field(default_factory=lambda: ["*"], max_length=32)
    models: list[str] = Field(default_factory=list, max_length=256)
    expires_in: float | None = Field(default=None, gt=0, description="Lifetime in seconds.")


class KeyCreated(KeyOut):
    key: str = Field(description="The secret: shown once, never again.")


class QuotaBody(Strict):
    """The limits to set; a missing or null limit means no limit."""

    requests_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_day: int | None = Field(default=None, ge=0)
    tokens_per_month: int | None = Field(default=None, ge=0)
    concurrent_requests: int | None = Field(default=None, ge=0)


class QuotaOut(QuotaBody):
    model_config = ConfigDict(extra="ignore")
    user: str
    key_id: str | None
    updated_at: datetime


class PriceBody(Strict):
    prompt_per_1k: float = Field(ge=0)
    completion_per_1k: float = Field(ge=0)


class PriceOut(PriceBody):
    model_config = ConfigDict(extra="ignore")
    model: str
    updated_at: datetime


class UsageOut(BaseModel):
    group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    average_latency_ms: float
    cost: float
    priced: bool


class UsageReport(BaseModel):
    by: str
    since: datetime | None
    data: list[UsageOut]


class AuditOut(BaseModel):
    id: int
    created_at: datetime
    actor: str | None
    key_id: str | None
    action: str
    target: str | None
    outcome: str
    detail: str | None


T = TypeVar("T")


class ListOf(BaseModel, Generic[T]):
    object: str = "list"
    data: list[T]
