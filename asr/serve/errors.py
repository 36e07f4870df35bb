"""Errors as OpenAI's API returns them: `{"error": {"message", "type", "param", "code"}}` with the HTTP status,
for every failure (a user's mistake, a route or method that does not exist, a bug), so that OpenAI clients raise
their usual exceptions with the server's message."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

log = logging.getLogger(__name__)

# OpenAI's error types (the `type` field): what a client can do about it.
INVALID_REQUEST = "invalid_request_error"  # 400, 404, 405, 413: the request must change
AUTHENTICATION = "authentication_error"  # 401: a key is missing or wrong
SERVER_ERROR = "server_error"  # 500: a bug; the log has the traceback


class ApiError(Exception):
    """A request the server refuses: its HTTP status, a message naming the field and the fix, its type."""

    def __init__(
        self, status: int, message: str, type: str = INVALID_REQUEST, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code


def error_body(message: str, type: str = INVALID_REQUEST, param: str | None = None, code: str | None = None) -> dict:
    """The JSON body of an error response."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(error: ApiError) -> JSONResponse:
    """An ApiError as its JSON response (401 with the WWW-Authenticate header HTTP asks for)."""
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    body = error_body(error.message, error.type, error.param, error.code)
    return JSONResponse(body, status_code=error.status, headers=headers)


def install(app: FastAPI) -> None:
    """Every error of `app` as a JSON error body: ApiError, Starlette's own (404, 405), a form FastAPI could not
    validate (400), and any other exception (500, logged with its traceback); a client that left mid-upload is
    logged only."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        if error.status_code == 404:
            message = f"{request.method} {request.url.path}: no such endpoint (GET /openapi.json lists them)"
        elif error.status_code == 405:
            message = f"{request.method} {request.url.path}: method not allowed (GET /openapi.json lists the methods)"
        kind = AUTHENTICATION if error.status_code == 401 else INVALID_REQUEST
        return error_response(ApiError(error.status_code, message, kind))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(ApiError(400, f"{where}: {first.get('msg', 'invalid request')}", param=where or None))

    @app.exception_handler(ClientDisconnect)
    async def _left(request: Request, error: ClientDisconnect) -> Response:
        log.info("%s %s: the client left before its upload ended", request.method, request.url.path)
        return Response(status_code=400)  # sent to nobody

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(
            ApiError(500, f"internal error ({type(error).__name__}); the server's log has the details", SERVER_ERROR)
        )
