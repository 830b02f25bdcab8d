"""The API's two middlewares: every error becomes `{"error": ...}` with its status, and every
call that is not a read needs the admin token."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from slotcore.contract import DASHBOARD_REGISTER

from ..errors import ApiError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        if request.method != "GET":
            log.warning("%s %s from %s refused: %s", request.method, request.path,
                        request.remote, e)
        return _error(e.status, str(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _error(e.status, e.reason if e.status != 405 else
                      f"method {request.method} not allowed on {request.path}")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal error (see the dashboard log)")


def auth_middleware(token: str | None) -> Any:
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            given = request.headers.get("Authorization", "").encode()
            # compare_digest: the time taken must not reveal how much of the token matched.
            if expected is None or not hmac.compare_digest(given, expected):
                why = ("no admin token is configured on the dashboard" if expected is None
                       else "missing or wrong admin token (Authorization: Bearer <token>)")
                return _error(401, why)
            # Heartbeats come every HEARTBEAT_INTERVAL from every proxy: not worth a log line.
            if request.path != DASHBOARD_REGISTER:
                log.info("%s %s from %s", request.method, request.path, request.remote)
        return await handler(request)

    return check
