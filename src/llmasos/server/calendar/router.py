"""``/v1/calendar/events`` (list, create, get, delete; ``export.ics``; ``import`` of an
``.ics`` sent as the body or as the multipart field ``file``) and ``/v1/reminders``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from llmasos.errors import InvalidRequestError
from llmasos.server.calendar.protocol import EventCreateRequest, ReminderCreateRequest
from llmasos.server.context import owner_of_request
from llmasos.server.notes.router import check_limit
from llmasos.server.ops import is_multipart
from llmasos.tools.calendar import CalendarStore
from llmasos.tools.reminders import ReminderStore


async def uploaded_calendar(request: Request) -> bytes:
    """The ``.ics`` of an import: the multipart field ``file``, else the raw body."""
    if not is_multipart(request.scope):
        return await request.body()
    async with request.form() as form:  # closes the spooled upload
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequestError(
                "send the calendar as the multipart field 'file'", param="file"
            )
        return await upload.read()


def calendar_router(calendar: CalendarStore, reminders: ReminderStore) -> APIRouter:
    router = APIRouter(tags=["calendar"])

    @router.post("/v1/calendar/events", summary="Create an event")
    async def create_event(body: EventCreateRequest) -> dict[str, Any]:
        return await asyncio.to_thread(
            calendar.create,
            owner_of_request(),
            body.title,
            body.start,
            end=body.end,
            time_zone=body.time_zone,
            location=body.location,
            notes=body.notes,
            all_day=body.all_day,
            remind_minutes_before=body.remind_minutes_before,
        )

    @router.get("/v1/calendar/events", summary="Events between two times, by start")
    async def list_events(
        start: str | None = None,
        end: str | None = None,
        time_zone: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        found = await asyncio.to_thread(
            calendar.list_events,
            owner_of_request(),
            start=start,
            end=end,
            time_zone=time_zone,
            limit=check_limit(limit),
        )
        return {"object": "list", "data": found}

    @router.get("/v1/calendar/export.ics", summary="Every event as iCalendar")
    async def export_calendar() -> Response:
        data = await asyncio.to_thread(calendar.export_ics, owner_of_request())
        return Response(
            data,
            media_type="text/calendar; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="calendar.ics"'},
        )

    @router.post("/v1/calendar/import", summary="Add (or update by UID) the events of an .ics")
    async def import_calendar(request: Request) -> dict[str, Any]:
        data = await uploaded_calendar(request)
        if not data.strip():
            raise InvalidRequestError("the calendar file is empty", param="file")
        return await asyncio.to_thread(calendar.import_ics, owner_of_request(), data)

    @router.get("/v1/calendar/events/{event_id}", summary="One event")
    async def get_event(event_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(calendar.get, owner_of_request(), event_id)

    @router.delete("/v1/calendar/events/{event_id}", summary="Delete an event (and its alarm)")
    async def delete_event(event_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(calendar.delete, owner_of_request(), event_id)

    @router.post("/v1/reminders", summary="Set a reminder")
    async def create_reminder(body: ReminderCreateRequest) -> dict[str, Any]:
        return await asyncio.to_thread(
            reminders.create,
            owner_of_request(),
            body.text,
            due=body.due,
            in_seconds=body.in_seconds,
            time_zone=body.time_zone,
        )

    @router.get("/v1/reminders", summary="Reminders, soonest first")
    async def list_reminders(status: str | None = None, limit: int = 100) -> dict[str, Any]:
        found = await asyncio.to_thread(
            reminders.list_reminders, owner_of_request(), status=status, limit=check_limit(limit)
        )
        return {"object": "list", "data": found}

    @router.get("/v1/reminders/{reminder_id}", summary="One reminder")
    async def get_reminder(reminder_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(reminders.get, owner_of_request(), reminder_id)

    @router.delete("/v1/reminders/{reminder_id}", summary="Cancel a reminder")
    async def delete_reminder(reminder_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(reminders.delete, owner_of_request(), reminder_id)

    return router
