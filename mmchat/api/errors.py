"""Errors in OpenAI's JSON shape, so clients written for it show the message as is.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "messages", "code": null}}

Bad input is always a 4xx with a message naming what to change; a 500 means a bug or
a failing model, never something the client sent.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
    503: "service_unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after  # seconds, sent as Retry-After (a 429 or 503 that will pass)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error" if status >= 500 else
                                                           "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(error: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(error_body(error.status, error.message, error.param, error.code), error.status,
                        headers=headers or None)


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """The first of pydantic's errors as one sentence, and the field it is about."""
    if not errors:
        return "The request is not valid.", None
    first = errors[0]
    where = [str(part) for part in first.get("loc", ()) if part not in ("body",)]
    param = ".".join(where) or None
    message = first.get("msg", "is not valid")
    if first.get("type") == "missing":
        return f"Missing required parameter: {param}.", param
    if first.get("type") == "extra_forbidden":
        return f"Unrecognized request argument: {param}.", param
    return (f"Invalid value for {param}: {message}." if param else f"{message}."), param


def install_error_handlers(app: FastAPI) -> None:
    """OpenAI-shaped errors for everything under /v1 (the page keeps Gradio's own)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # FastAPI says 422; OpenAI's clients and servers say 400 for a bad argument.
        message, param = validation_message(list(exc.errors()))
        return error_response(ApiError(400, message, param=param))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        # Starlette logs the traceback itself; the client gets the shape it can read.
        if not request.url.path.startswith("/v1"):
            return PlainTextResponse("Internal Server Error", 500)
        return error_response(ApiError(500, f"The server failed: {type(exc).__name__}. It keeps serving; "
                                            "the log has the details."))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        if not request.url.path.startswith("/v1"):
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers=getattr(exc, "headers", None))
        message = exc.detail if isinstance(exc.detail, str) else "The request could not be served."
        if exc.status_code == 404:
            message = f"No such endpoint: {request.method} {request.url.path}."
        return error_response(ApiError(exc.status_code, message))
