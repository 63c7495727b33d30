"""Downtime history for maintenance: search, page, export, and code stops with a reason.

Coding goes through the historian (spool first, then the store), and every edit leaves
an audit entry: who, when, the event before and after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse

from api.auth import Operator, Principal, Viewer
from api.export import EXPORT_MEDIA, export_rows
from api.history_access import caller_errors, check_cursor, line_filter, linemon_of
from api.limits import TimeWindow
from api.openapi import AccessRoute
from api.problems import responses
from api.schemas import AuditOut, Downtime, DowntimePage, DowntimePatch, Reason, ReasonIn
from api.schemas.common import Id
from collector.historian import DowntimeNotFound, HistoryQuery, Page
from linemon.model import DowntimeCategory, DowntimeEvent
from linemon.roles import Runtime

router = APIRouter(prefix="/api/v1", tags=["downtime"], route_class=AccessRoute)
HISTORY = responses(422, 503)
DowntimeId = Annotated[str, Path(max_length=200, examples=["press-1:2026-03-02T06:10:00+00:00"])]
MAX_PAGE = 1000


class Filters:
    """The downtime search, shared by the list and the export."""

    def __init__(
        self,
        window: TimeWindow,
        line: Annotated[Id | None, Query()] = None,
        machine: Annotated[Id | None, Query()] = None,
        reason: Annotated[str | None, Query(max_length=32, description="a reason code")] = None,
        category: DowntimeCategory | None = None,
        min_duration_s: Annotated[float | None, Query(ge=0, le=1e9)] = None,
        uncoded_only: Annotated[bool, Query(description="only stops without a reason")] = False,
        order: Literal["start_desc", "start_asc", "duration_desc"] = "start_desc",
    ) -> None:
        self.line, self.machine, self.reason, self.category = line, machine, reason, category
        self.min_duration_s, self.uncoded_only, self.order = min_duration_s, uncoded_only, order
        self.window = window

    async def page(self, lm: Runtime, who: Principal, limit: int, cursor: str | None
                   ) -> Page[DowntimeEvent]:
        line, machine = line_filter(lm, who, self.line, self.machine)
        check_cursor(cursor, self.order)
        with caller_errors():
            return await lm.historian.query.downtime_events(
                start=self.window.start, end=self.window.end, line=line, machine=machine,
                reason_code=self.reason, category=self.category,
                min_duration_s=self.min_duration_s, uncoded_only=self.uncoded_only,
                limit=limit, cursor=cursor, order=self.order)


@router.get("/downtime", response_model=DowntimePage, responses=HISTORY,
            summary="Stops that started in [start, end), filtered, sorted and paged")
async def list_downtime(
    request: Request, filters: Annotated[Filters, Depends()],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000, description="from next_cursor")] = None,
    who: Principal = Viewer,
) -> DowntimePage:
    lm = linemon_of(request)
    page = await filters.page(lm, who, limit, cursor)
    now = lm.clock()
    return DowntimePage(items=[Downtime.of(ev, now) for ev in page.items],
                        next_cursor=page.next_cursor)


@router.get("/downtime/export", responses={
    200: {"description": "every matching stop, streamed",
          "content": {m: {"schema": {"type": "string"}} for m in EXPORT_MEDIA.values()}},
    **HISTORY}, summary="The same search as a CSV or NDJSON download, streamed")
async def export_downtime(
    request: Request, filters: Annotated[Filters, Depends()],
    format: Literal["csv", "ndjson"] = "csv", who: Principal = Viewer,
) -> StreamingResponse:
    lm = linemon_of(request)
    first = await filters.page(lm, who, MAX_PAGE, None)  # errors surface before streaming

    async def pages() -> AsyncIterator[list[DowntimeEvent]]:
        page = first
        while True:
            yield page.items
            if page.next_cursor is None:
                return
            page = await filters.page(lm, who, MAX_PAGE, page.next_cursor)

    name = f"downtime-{filters.window.start:%Y%m%dT%H%M}-{filters.window.end:%Y%m%dT%H%M}"
    return StreamingResponse(
        export_rows(pages(), format, lm.clock), media_type=EXPORT_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}.{format}"'})


@router.get("/reasons", response_model=list[Reason],
            summary="The plant's reason codes, for coding stops")
async def list_reasons(request: Request, _: Principal = Viewer) -> list[Reason]:
    codes = linemon_of(request).config.reason_codes
    return [Reason(code=c, text=t) for c, t in codes.items()]


@router.get("/downtime/{downtime_id}", response_model=Downtime,
            responses=responses(404, 422, 503), summary="One stop")
async def get_downtime(downtime_id: DowntimeId, request: Request,
                       who: Principal = Viewer) -> Downtime:
    lm = linemon_of(request)
    event = await _visible(lm.historian.query, downtime_id, who)
    return Downtime.of(event, lm.clock())


@router.put("/downtime/{downtime_id}/reason", response_model=Downtime,
            responses=responses(404, 422, 503),
            summary="Set a stop's reason (a note left out stays); every edit is audited")
async def set_reason(downtime_id: DowntimeId, body: ReasonIn, request: Request,
                     who: Principal = Operator) -> Downtime:
    return await _code(request, who, downtime_id, body.reason_code, body.note)


@router.patch("/downtime/{downtime_id}", response_model=Downtime,
              responses=responses(404, 422, 503),
              summary="Change a stop's reason and/or note; what is left out stays")
async def patch_downtime(downtime_id: DowntimeId, body: DowntimePatch, request: Request,
                         who: Principal = Operator) -> Downtime:
    return await _code(request, who, downtime_id, body.reason_code, body.note)


@router.get("/downtime/{downtime_id}/audit", response_model=list[AuditOut],
            responses=responses(404, 422, 503),
            summary="Every coding of a stop: who, when, before and after")
async def downtime_audit(downtime_id: DowntimeId, request: Request,
                         who: Principal = Viewer) -> list[AuditOut]:
    lm = linemon_of(request)
    q = lm.historian.query
    await _visible(q, downtime_id, who)
    now = lm.clock()
    return [AuditOut.of(entry, now) for entry in await q.downtime_audit(downtime_id)]


async def _visible(q: HistoryQuery, downtime_id: str, who: Principal) -> DowntimeEvent:
    event = await q.get_downtime(downtime_id)
    if event is None:
        raise DowntimeNotFound(f"no downtime event {downtime_id!r}")
    if not who.may_see(event.line):
        raise HTTPException(403, f"key {who.name!r} is not allowed on line {event.line!r}")
    return event


async def _code(request: Request, who: Principal, downtime_id: str, code: str | None,
                note: str | None) -> Downtime:
    lm = linemon_of(request)
    q = lm.historian.query
    before = await _visible(q, downtime_id, who)
    code = code if code is not None else before.reason_code
    if code is None:
        raise HTTPException(422, "body.reason_code: this stop has no reason yet; give one")
    known = lm.config.reason_codes
    if known and code not in known:
        raise HTTPException(422, f"body.reason_code: unknown code {code!r}; see GET "
                            "/api/v1/reasons")
    text = known.get(code, f"code {code}")  # the engine's wording for a code it does not know
    after = await lm.code_downtime(downtime_id, code, text, note, by=who.name)
    return Downtime.of(after, lm.clock())
