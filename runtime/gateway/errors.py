"""The gateway's one error path: every :class:`~runtime.errors.APIError` (and FastAPI's
own validation error) becomes OpenAI's error body with its status, on every route.

Headers: ``WWW-Authenticate: Bearer`` on 401, ``Retry-After`` on 429 and 503. Refusals
are counted (``runtime_gateway_auth_failures_total``, ``..._rate_limited_total``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from runtime.errors import (
    APIError,
    AuthenticationError,
    InvalidInputError,
    PermissionDeniedError,
    RateLimitError,
)


def response(err: APIError) -> JSONResponse:
    """The error's body and headers (its message is redacted already)."""
    headers: dict[str, str] = {}
    if isinstance(err, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    retry_after = err.retry_after or (1 if err.status == 503 else None)
    if retry_after is not None and err.status in (429, 503):
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(err.to_body(), status_code=err.status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the error handlers on ``app``."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        _count(request, exc)
        return response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return response(InvalidInputError(f"{where}: {first['msg']}"))


def _count(request: Request, exc: APIError) -> None:
    gateway: Any = getattr(request.app.state, "gateway", None)
    if gateway is None:
        return
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        gateway.metrics.auth_failed(exc.status)
    elif isinstance(exc, RateLimitError):
        tenant = str(getattr(request.state, "tenant", "-"))
        gateway.metrics.limited(tenant, getattr(exc, "limit", "requests") or "requests")
