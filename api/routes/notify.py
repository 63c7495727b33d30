"""Notifications: the delivery log, and the acknowledge links sent to phones and mailboxes.

    GET  /api/v1/notifications/deliveries     viewer: what was sent to whom, and how it went
    POST /api/v1/alerts/ack-link/{token}      no key: the signed, single-use token is the key
    GET  /api/v1/alerts/ack-link/{token}      a page with one button that POSTs (for e-mail)

An ack link needs no API key: the phone's ntfy app POSTs it from the notification
without any. The token is an HMAC over a nonce and an expiry; it works once and names
the message it was sent in, so it acknowledges exactly that message's alerts, as the
person it was sent to. Forged tokens count as failed keys (the same 429 throttle). A GET
never acknowledges: mail scanners follow links.

These routes exist when notifications are configured (`linemon.notifier`).
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse

from api.auth import AuthThrottle, Principal, Viewer
from api.history_access import linemon_of
from api.openapi import AccessRoute
from api.problems import responses
from api.schemas import AlertOut, Problem
from api.schemas.common import Id
from api.schemas.notify import AckLinkOut, DeliveryOut, DeliveryPage, Status
from linemon.app import Linemon
from linemon.model import Alert, AlertChanged, AlertState
from rules.notify.notifier import Notifier, Redemption
from rules.notify.tokens import TokenError

router = APIRouter(prefix="/api/v1", tags=["notifications"], route_class=AccessRoute)
Token = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}$",
                            examples=["AAECAwQFBgcICQoLDA0ODwAAAAA.qqq-hmac-bbb"])]
Fingerprint = Annotated[str, Query(pattern=r"^[0-9a-f]{16}$", examples=["5c1e0d7a9b2f4e61"])]
GONE = {410: {"model": Problem, "description": "the link has expired"}}
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; form-action 'self'",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _notifier(lm: Linemon) -> Notifier:
    if lm.notifier is None:
        raise HTTPException(404, "notifications are not configured on this plant")
    return lm.notifier


@router.get("/notifications/deliveries", response_model=DeliveryPage, responses=responses(422),
            summary="The delivery log: every message, its recipient and how it went")
async def deliveries(
    request: Request,
    alert: Fingerprint | None = None,
    status: Status | None = None,
    line: Annotated[Id | None, Query()] = None,
    channel: Annotated[Id | None, Query()] = None,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    who: Principal = Viewer,
) -> DeliveryPage:
    """Newest first. Addresses (ntfy topics, e-mail addresses) are never shown: a topic is
    as good as a password. A key limited to some lines sees only those lines' messages."""
    lines = sorted(who.lines) if who.lines is not None else None
    rows = await _notifier(linemon_of(request)).outbox.deliveries(
        alert=alert, status=status, line=line, lines=lines, channel=channel, before=before,
        limit=limit)
    items = [DeliveryOut.of(r) for r in rows]
    return DeliveryPage(items=items, next_before=items[-1].id if len(items) == limit else None)


@router.post("/alerts/ack-link/{token}", response_model=AckLinkOut,
             responses={**responses(403, 404, 409, 429), **GONE},
             summary="Acknowledge the alerts of one notification (its signed link)")
async def follow_ack_link(token: Token, request: Request) -> Any:
    lm = linemon_of(request)
    redemption = await _redeem(request, lm, token)
    if not redemption.first_use:
        used = f" at {redemption.used_at:%H:%M:%S} UTC" if redemption.used_at else ""
        raise HTTPException(409, f"this link was used before{used}; each link works once")
    by = f"{redemption.recipient} via {redemption.channel}"
    alerts = await _acknowledge(lm, redemption, by)
    if not alerts:
        raise HTTPException(404, "the alert this link was sent for is no longer active")
    body = AckLinkOut(acknowledged_by=by, alerts=[AlertOut.of(a) for a in alerts])
    if _wants_html(request):  # the e-mail page's form: answer in words, not JSON
        names = ", ".join(html.escape(a.message or a.rule_id) for a in alerts)
        return _page("Acknowledged", f"<p>Acknowledged: {names}.</p>")
    return body


@router.get("/alerts/ack-link/{token}", response_class=HTMLResponse,
            responses={**responses(403, 429), **GONE},
            summary="A page with the button that acknowledges (GET changes nothing)")
async def ack_link_page(token: Token, request: Request) -> HTMLResponse:
    notifier = _notifier(linemon_of(request))
    _throttled(request)
    if notifier.signer is None:
        raise HTTPException(403, "acknowledge links are not configured on this plant")
    try:
        notifier.signer.verify(token, notifier.clock())
    except TokenError as err:
        raise _token_problem(request, err) from None
    action = html.escape(str(request.url.path))
    return _page("Acknowledge alert", f'<form method="post" action="{action}">'
                 '<button type="submit">Acknowledge</button></form>')


async def _redeem(request: Request, lm: Linemon, token: str) -> Redemption:
    notifier = _notifier(lm)
    _throttled(request)
    client = request.client.host if request.client else "unknown"
    try:
        return await notifier.redeem(token, client)
    except TokenError as err:
        raise _token_problem(request, err) from None


async def _acknowledge(lm: Linemon, redemption: Redemption, by: str) -> list[Alert]:
    book, now = lm.engine.alerts, lm.clock()
    active = {a.fingerprint: a for a in book.active()}
    covered = _notifier(lm).dispatcher.covering(redemption.incident)
    changes: list[AlertChanged] = []
    found: list[Alert] = []
    for sent in redemption.alerts:
        alert = active.get(sent.fingerprint)
        if alert is None:
            continue
        # The same fingerprint firing again later is another stop, not this one, unless it
        # continues the message's incident (a stop that outlived a linemon restart).
        same = alert.first_seen == datetime.fromisoformat(sent.first_seen)
        if not same and alert.fingerprint not in covered:
            continue
        if alert.state is AlertState.FIRING:
            change = book.acknowledge(alert.fingerprint, by, now)
            if change is not None:
                changes.append(change)
                alert = change.alert
        found.append(alert)
    if changes:
        await lm.publish(changes)
    return found


def _throttled(request: Request) -> None:
    throttle: AuthThrottle = request.app.state.auth_throttle
    client = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(client)
    if wait is not None:
        raise HTTPException(429, f"too many bad links or keys from {client}; try again in "
                            f"{wait:.0f} s", headers={"Retry-After": str(int(wait + 0.999))})


def _token_problem(request: Request, err: TokenError) -> HTTPException:
    if err.reason == "expired":
        return HTTPException(410, str(err))
    throttle: AuthThrottle = request.app.state.auth_throttle
    throttle.failed(request.client.host if request.client else "unknown")
    return HTTPException(403, str(err))


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept


def _page(title: str, content: str) -> HTMLResponse:
    body = (f"<!doctype html><html><head><meta charset=utf-8><meta name=viewport "
            f'content="width=device-width"><title>{title}</title></head><body>'
            f"<h1>{title}</h1>{content}</body></html>")
    return HTMLResponse(body, headers=PAGE_HEADERS)

