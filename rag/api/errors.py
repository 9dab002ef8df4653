"""Errors as OpenAI's clients expect them: ``{"error": {"message", "type", "code"}}`` with the matching status.

A request the server cannot take (bad JSON, a field out of range) is a 400 ``invalid_request_error``, as OpenAI
answers it, not FastAPI's 422; the ``openai`` client turns each status into its own exception class
(``BadRequestError``, ``AuthenticationError``, ``NotFoundError``, ``RateLimitError``, ...).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from rag.errors import RagError, StoreError

log = logging.getLogger("rag.api")

# The type OpenAI gives each status (its clients show it; programs branch on the status and the code).
TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
         429: "rate_limit_error", 500: "server_error", 503: "service_unavailable"}


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorBody(BaseModel):
    """What every failed request returns."""

    error: ErrorDetail


class APIError(RagError):
    """A request that fails with ``status`` and a message for the person who sent it."""

    def __init__(self, status: int, message: str, code: str | None = None, *, param: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}
        self.extra = extra or {}


def error_body(status: int, message: str, code: str | None = None, param: str | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": TYPES.get(status, "server_error" if status >= 500
                                                             else "invalid_request_error"),
                      "code": code, "param": param, **(extra or {})}}


def error_response(status: int, message: str, code: str | None = None, *, param: str | None = None,
                   headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, param, extra), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    param = ".".join(where) or None
    message = str(first.get("msg", "invalid request"))
    return (f"{param}: {message}" if param else message), param


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can raise, in OpenAI's shape."""

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, param=exc.param, headers=exc.headers,
                              extra=exc.extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(400, message, "invalid_value", param=param)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {404: "no such endpoint", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, message, codes.get(exc.status_code),
                              headers=dict(exc.headers or {}))

    @app.exception_handler(StoreError)
    async def index_unavailable(_: Request, exc: StoreError) -> JSONResponse:
        """The index cannot be read (a Milvus server down: the message names it); the next request tries again."""
        return error_response(503, f"the index is unavailable: {exc}", "index_unavailable")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal server error; the server's log has the details", "internal_error")
