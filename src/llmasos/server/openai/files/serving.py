"""Reading a multipart upload as it streams in, and whose files a request touches.

`read_upload` feeds the request body to python-multipart's streaming parser: the ``file``
part goes straight into the `FileStore`'s temp file (so memory stays flat and a body past
the limit is refused with 413 the moment it passes it — a declared ``Content-Length`` past
the limit before a byte is read), the other fields (``purpose``) are kept up to 1 KiB each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from llmasos.errors import InvalidRequestError
from llmasos.knowledge.files import FileInfo, FileStore, Upload
from llmasos.server.context import principal_var

MAX_FIELD_BYTES = 1024
MULTIPART_OVERHEAD = 64 * 1024
"""What a body may hold besides the file (boundaries, headers, the purpose field)."""


def current_user() -> int | None:
    """The caller's user id (None: the machine's owner, authentication off)."""
    principal = principal_var.get()
    return principal.user_id if principal is not None else None


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    value: bytearray = field(default_factory=bytearray)


async def read_upload(request: Request, files: FileStore) -> FileInfo:
    """Store the ``file`` part of a multipart body and return the new file."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequestError(
            "send the file as multipart/form-data with fields file and purpose", param="file"
        )
    length = request.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    upload: Upload | None = None
    filename: str | None = None
    fields: dict[str, str] = {}
    part = _Part()
    header_field = bytearray()
    header_value = bytearray()
    errors: list[Exception] = []

    def on_part_begin() -> None:
        nonlocal part
        part = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        part.headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal upload, filename
        _, disposition = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = disposition.get(b"name", b"").decode("utf-8", "replace")
        raw = disposition.get(b"filename")
        part.filename = None if raw is None else raw.decode("utf-8", "replace")
        if part.name == "file":
            if upload is not None:
                raise InvalidRequestError("file: send one file per upload", param="file")
            filename = part.filename or ""
            upload = files.begin_upload()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.name == "file":
            assert upload is not None
            upload.write(data[start:end])
        else:
            part.value.extend(data[start:end])
            if len(part.value) > MAX_FIELD_BYTES:
                raise InvalidRequestError(
                    f"{part.name[:40]}: at most {MAX_FIELD_BYTES} bytes", param=part.name[:40]
                )

    def on_part_end() -> None:
        if part.name and part.name != "file":
            fields[part.name] = part.value.decode("utf-8", "replace")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        if declared is not None and declared > files.max_upload_bytes + MULTIPART_OVERHEAD:
            files.check_size(declared - MULTIPART_OVERHEAD)  # 413 before a byte is read
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except InvalidRequestError:
                raise
            except Exception as error:  # the parser's own errors: a malformed body
                errors.append(error)
                break
        if errors:
            raise InvalidRequestError(f"the multipart body is malformed: {errors[0]}", param="file")
        parser.finalize()
        if upload is None:
            raise InvalidRequestError("file: the body has no file part", param="file")
        purpose = fields.get("purpose")
        if purpose is None:
            raise InvalidRequestError("purpose: required (e.g. assistants)", param="purpose")
        info = upload.finish(current_user(), filename or "", purpose)
        upload = None
        return info
    finally:
        if upload is not None:
            upload.discard()
