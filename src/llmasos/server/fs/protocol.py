"""Request models of the file-space endpoints.

Responses are the ``to_dict`` forms of `llmasos.knowledge.fstypes` values: ``fs.version``
(a file's state after a version), ``fs.entry`` (a listing line), ``fs.match`` (a find
result), ``fs.diff``, ``fs.summary``, ``fs.share`` and ``fs.plan``; lists come as
``{"object": "list", "data": [...]}``. Paths are checked by the file system (400 naming the
problem), not here, so a bad path is never mistaken for a malformed body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class FindRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str
    k: int = Field(10, description="How many files (1-50).")
    type: str | None = Field(None, description="Only this type: txt, md, html, pdf, docx, binary.")
    min_size: int | None = Field(None, ge=0, description="Only files of at least this many bytes.")
    max_size: int | None = Field(None, ge=0, description="Only files of at most this many bytes.")
    modified_after: datetime | None = None
    modified_before: datetime | None = None
    mode: Literal["hybrid", "bm25", "vector"] = "hybrid"


class MoveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="from")
    to: str


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    to: int | None = Field(None, description="The version to restore; default the previous.")


class SummarizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(min_length=1, max_length=20)
    model: str | None = None
    refresh: bool = Field(False, description="Summarize again even if a summary is kept.")


class ShareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruction: str
    model: str | None = None
    confirm: bool = Field(False, description="Also run the move, delete and rollback steps.")


class PlanRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[dict[str, Any]]
    confirm: bool = False
