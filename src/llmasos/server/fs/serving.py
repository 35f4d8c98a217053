"""The file space over HTTP: whose files a request touches, and which of them it may reach.

The owner is the authenticated principal's user (with authentication off, the machine's
owner). A key with the ``files`` scope reaches its user's whole file space; an app's key
holds ``files:/DIR`` scopes instead (its manifest's ``files`` permission) and reaches only
those directories: any other path is 403, and listings and find results leave them out.
Uploads stream to a temp file next to the blobs, bounded by the server's body limit;
``summarize`` runs the ``summarize`` service through the kernel; share tokens are the
capability, so ``GET /v1/fs/shared/{token}`` needs no key.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from llmasos.errors import InvalidRequestError, PermissionDeniedError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.knowledge import fsplan
from llmasos.knowledge.filesystem import FileSystem, Summarizer
from llmasos.knowledge.fspaths import check_path, is_under
from llmasos.knowledge.fstypes import FileOwner, FindFilters, VersionInfo
from llmasos.server.context import principal_var, report_usage, tenant_for
from llmasos.server.fs.protocol import (
    AskRequest,
    FindRequest,
    MoveRequest,
    PlanRunRequest,
    RollbackRequest,
    SummarizeRequest,
)
from llmasos.services.runner import ServiceRunner

FILES_SCOPE = "files"
PATH_SCOPE_PREFIX = "files:"


def current_owner() -> FileOwner:
    principal = principal_var.get()
    return FileOwner.for_user(principal.user_id if principal is not None else None)


def reachable_roots() -> list[str] | None:
    """The directories the caller may reach; None means the whole file space."""
    principal = principal_var.get()
    if principal is None or FILES_SCOPE in principal.scopes:
        return None
    return [
        s[len(PATH_SCOPE_PREFIX) :] for s in principal.scopes if s.startswith(PATH_SCOPE_PREFIX)
    ]


def reach(path: str, param: str = "path", *, directory: bool = False) -> str:
    """The normal form of ``path``, if the caller may reach it (else 403)."""
    normal = check_path(path, param, directory=directory)
    roots = reachable_roots()
    if roots is not None and not any(is_under(normal, root) for root in roots):
        raise PermissionDeniedError(
            f"{param}: this key reaches only {', '.join(roots) or 'no files'}",
            code="path_not_allowed",
        )
    return normal


def visible(path: str) -> bool:
    roots = reachable_roots()
    return roots is None or any(is_under(path, root) or is_under(root, path) for root in roots)


def listing(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": data}


class FsService:
    def __init__(
        self,
        fs: FileSystem,
        engine: EngineClientInterface,
        runner: ServiceRunner,
        upload_dir: Path,
    ) -> None:
        self.fs = fs
        self.engine = engine
        self.runner = runner
        self.upload_dir = upload_dir

    def summarizer(self, model: str | None) -> Summarizer:
        async def summarize(text: str) -> tuple[str, str]:
            result = await self.runner.call(
                "summarize", {"text": text}, model=model, tenant=tenant_for(None)
            )
            report_usage(result.model, result.usage.prompt_tokens, result.usage.completion_tokens)
            return str(result.output), result.model

        return summarize

    async def put(self, path: str, body: AsyncIterator[bytes]) -> dict[str, Any]:
        path = reach(path)
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.upload_dir, prefix="upload-") as directory:
            temp = Path(directory) / "body"
            with temp.open("wb") as handle:
                async for chunk in body:
                    handle.write(chunk)
            info = await self.fs.put(current_owner(), path, temp)
        return info.to_dict()

    async def open_content(self, path: str, version: int | None) -> tuple[VersionInfo, Path]:
        return await asyncio.to_thread(self.fs.open_content, current_owner(), reach(path), version)

    async def stat(self, path: str, version: int | None) -> dict[str, Any]:
        info = await asyncio.to_thread(self.fs.stat, current_owner(), reach(path), version)
        return info.to_dict()

    async def delete(self, path: str) -> dict[str, Any]:
        return (await self.fs.delete(current_owner(), reach(path))).to_dict()

    async def list_dir(self, path: str) -> dict[str, Any]:
        directory = check_path(path, directory=True)
        roots = reachable_roots()
        if roots is not None and not any(is_under(root, directory) for root in roots):
            reach(directory, directory=True)  # not above a reachable directory: inside one?
        entries = await asyncio.to_thread(self.fs.list_dir, current_owner(), directory)
        return listing([e.to_dict() for e in entries if visible(e.path)])

    async def move(self, body: MoveRequest) -> dict[str, Any]:
        reach(body.to, "to", directory=True)
        info = await self.fs.move(current_owner(), reach(body.source, "from"), body.to)
        reach(info.path, "to")  # a move into a directory keeps the name: still reachable
        return info.to_dict()

    async def find(self, body: FindRequest) -> dict[str, Any]:
        filters = FindFilters(
            type=body.type,
            min_size=body.min_size,
            max_size=body.max_size,
            modified_after=body.modified_after,
            modified_before=body.modified_before,
        )
        hits = await self.fs.find(
            current_owner(), body.query, k=body.k, filters=filters, mode=body.mode
        )
        return listing([h.to_dict() for h in hits if visible(h.path)])

    async def history(self, path: str) -> dict[str, Any]:
        versions = await asyncio.to_thread(self.fs.history, current_owner(), reach(path))
        return listing([v.to_dict() for v in versions])

    async def diff(self, path: str, first: int, second: int) -> dict[str, Any]:
        return await asyncio.to_thread(self.fs.diff, current_owner(), reach(path), first, second)

    async def rollback(self, body: RollbackRequest) -> dict[str, Any]:
        info = await self.fs.rollback(current_owner(), reach(body.path), body.to)
        return info.to_dict()

    async def summarize(self, body: SummarizeRequest) -> dict[str, Any]:
        paths = [reach(p, "paths") for p in body.paths]
        results = await self.fs.summarize(
            current_owner(), paths, self.summarizer(body.model), refresh=body.refresh
        )
        return listing([r.to_dict() for r in results])

    async def share(self, path: str) -> dict[str, Any]:
        share = await asyncio.to_thread(self.fs.share, current_owner(), reach(path))
        data = share.to_dict()
        data["url"] = f"/v1/fs/shared/{share.token}"
        return data

    async def shares(self) -> dict[str, Any]:
        shares = await asyncio.to_thread(self.fs.shares, current_owner())
        return listing([s.to_dict() for s in shares if visible(s.path)])

    async def unshare(self, share_id: str) -> None:
        await asyncio.to_thread(self.fs.unshare, current_owner(), share_id)

    async def open_shared(self, token: str) -> tuple[VersionInfo, Path]:
        return await asyncio.to_thread(self.fs.open_shared, token)

    async def usage(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.fs.usage, current_owner())

    def _whole_space(self) -> None:
        if reachable_roots() is not None:
            raise PermissionDeniedError(
                "fs ask needs the files scope over the whole file space, not a directory",
                code="path_not_allowed",
            )

    async def ask(self, body: AskRequest) -> dict[str, Any]:
        self._whole_space()
        plan = await fsplan.propose(
            self.engine,
            self.fs,
            current_owner(),
            body.instruction,
            model=body.model,
            tenant=tenant_for(None),
        )
        report_usage(plan.model, plan.prompt_tokens, plan.completion_tokens)
        plan.steps = await fsplan.run(
            self.fs, current_owner(), plan.steps, self.summarizer(body.model), confirm=body.confirm
        )
        return plan.to_dict()

    async def run_plan(self, body: PlanRunRequest) -> dict[str, Any]:
        self._whole_space()
        steps = fsplan.parse_steps(body.steps)
        done = await fsplan.run(
            self.fs, current_owner(), steps, self.summarizer(None), confirm=body.confirm
        )
        return fsplan.Plan(steps=done).to_dict()


def parse_version(value: str | None, param: str = "version") -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or int(value) < 1:
        raise InvalidRequestError(f"{param}: must be a version number from 1", param=param)
    return int(value)
