"""``/v1/fs/...``: files (PUT, GET, DELETE), stat, list, move, find, history, diff,
rollback, summarize, shares, ask and plan, and the key-less ``GET /v1/fs/shared/{token}``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from starlette.convertors import Convertor, register_url_convertor

from llmasos.knowledge.fstypes import VersionInfo
from llmasos.server.fs.protocol import (
    AskRequest,
    FindRequest,
    MoveRequest,
    PlanRunRequest,
    RollbackRequest,
    ShareRequest,
    SummarizeRequest,
)
from llmasos.server.fs.serving import FsService, parse_version

VERSION_HELP = "A version number (default: the current one)."


class AnyPathConvertor(Convertor[str]):
    """Like Starlette's ``path`` but matching every character, newlines included, so a path
    with a control character reaches the route and gets a 400 that names it (not a 404)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", AnyPathConvertor())


def content_response(info: VersionInfo, blob: Any) -> FileResponse:
    return FileResponse(
        blob,
        media_type=info.media_type,
        headers={
            "X-LLMasOS-Path": info.path.encode("utf-8").decode("latin-1"),
            "X-LLMasOS-Version": str(info.version),
            "ETag": f'"{info.digest}"',
        },
    )


def fs_router(service: FsService) -> APIRouter:
    router = APIRouter(tags=["files"])

    @router.put("/v1/fs/files/{path:anypath}", status_code=201, summary="Write a file")
    async def put_file(path: str, request: Request) -> dict[str, Any]:
        return await service.put(path, request.stream())

    @router.get("/v1/fs/files/{path:anypath}", summary="Read a file", response_class=FileResponse)
    async def get_file(
        path: str, version: Annotated[str | None, Query(description=VERSION_HELP)] = None
    ) -> FileResponse:
        info, blob = await service.open_content(path, parse_version(version))
        return content_response(info, blob)

    @router.delete("/v1/fs/files/{path:anypath}", summary="Delete a file")
    async def delete_file(path: str) -> dict[str, Any]:
        return await service.delete(path)

    @router.get("/v1/fs/stat/{path:anypath}", summary="A file's state")
    async def stat(
        path: str, version: Annotated[str | None, Query(description=VERSION_HELP)] = None
    ) -> dict[str, Any]:
        return await service.stat(path, parse_version(version))

    @router.get("/v1/fs/list", summary="List a directory")
    async def list_dir(path: str = "/") -> dict[str, Any]:
        return await service.list_dir(path)

    @router.post("/v1/fs/move", summary="Move a file")
    async def move(body: MoveRequest) -> dict[str, Any]:
        return await service.move(body)

    @router.post("/v1/fs/find", summary="Find files by meaning, words and metadata")
    async def find(body: FindRequest) -> dict[str, Any]:
        return await service.find(body)

    @router.get("/v1/fs/history/{path:anypath}", summary="A file's versions")
    async def history(path: str) -> dict[str, Any]:
        return await service.history(path)

    @router.get("/v1/fs/diff/{path:anypath}", summary="Compare two versions")
    async def diff(
        path: str,
        first: Annotated[str, Query(alias="from")],
        second: Annotated[str, Query(alias="to")],
    ) -> dict[str, Any]:
        a = parse_version(first, "from")
        b = parse_version(second, "to")
        assert a is not None and b is not None
        return await service.diff(path, a, b)

    @router.post("/v1/fs/rollback", summary="Restore an earlier version")
    async def rollback(body: RollbackRequest) -> dict[str, Any]:
        return await service.rollback(body)

    @router.post("/v1/fs/summarize", summary="Summarize files")
    async def summarize(body: SummarizeRequest) -> dict[str, Any]:
        return await service.summarize(body)

    @router.post("/v1/fs/shares", status_code=201, summary="Share a file (read-only link)")
    async def share(body: ShareRequest) -> dict[str, Any]:
        return await service.share(body.path)

    @router.get("/v1/fs/shares", summary="Your shares")
    async def shares() -> dict[str, Any]:
        return await service.shares()

    @router.delete("/v1/fs/shares/{share_id}", summary="Revoke a share")
    async def unshare(share_id: str) -> dict[str, Any]:
        await service.unshare(share_id)
        return {"id": share_id, "object": "fs.share.deleted", "deleted": True}

    @router.get("/v1/fs/shared/{token}", summary="Read a shared file (no key needed)")
    async def shared(token: str) -> FileResponse:
        info, blob = await service.open_shared(token)
        return content_response(info, blob)

    @router.get("/v1/fs/usage", summary="Files and quota")
    async def usage() -> dict[str, Any]:
        return await service.usage()

    @router.post("/v1/fs/ask", summary="Turn an instruction into file operations")
    async def ask(body: AskRequest) -> dict[str, Any]:
        return await service.ask(body)

    @router.post("/v1/fs/plan", summary="Check and run a plan's steps")
    async def run_plan(body: PlanRunRequest) -> dict[str, Any]:
        return await service.run_plan(body)

    return router
