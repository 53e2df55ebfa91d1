"""Error answers: always JSON ``{"code", "message"}`` with a 4xx status (5xx only for a
damaged store or a bug, and then without a stack trace).

- :class:`ApiError` is what the node's own routes raise; an app's routes raise
  :class:`medledger.apps.QueryError`; both become the same answer.
- A request that fails FastAPI's validation is ``malformed``: 400 when a value breaks a
  declared bound or pattern (a height below 1, a transaction id that is not 64 hex), 422
  when it is not of the declared type at all (a height that is not a number).
- A path holding a control character (``%0A``, ``%00``...) is refused with 400 before
  routing (:class:`PathHygiene`): routing would otherwise match
  ``/v1/state/identity/org/st-mary%0A`` as if the newline were not there.
- A 405 lists in ``Allow`` every method the path answers to; a literal path of the API
  (``/v1/txs/batch``) answers 405 for a method it lacks even where a path with a parameter
  (``/v1/txs/{tx_id}``) would match it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from medledger.api.schemas import ref
from medledger.apps import QueryError

__all__ = ["ApiError", "PathHygiene", "error_response", "error_responses",
           "install_error_handlers"]

log = logging.getLogger("medledger.api")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ApiError(Exception):
    """An error answer: HTTP ``status`` with a stable ``code`` and a ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status,
                        headers=headers)


#: pydantic error types meaning "not of the declared type at all" (422); any other failure
#: of a declared parameter (a bound, a pattern, a length) is a bad value (400)
_TYPE_ERRORS = ("missing", "_parsing", "_type", "json_invalid")


def _validation_status(errors: list[dict[str, Any]]) -> int:
    kinds = [str(e.get("type", "")) for e in errors]
    if any(k == "missing" or k.endswith(_TYPE_ERRORS) for k in kinds):
        return 422
    return 400


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers at the request's path (each method is
    tried against the app's routes, included routers and all)."""
    scope = request.scope
    literal = _literal_methods(scope)
    if literal is not None:
        return literal
    # as the app first saw the request (a mount changes root_path on the way in)
    fresh = {"type": "http", "path": scope["path"], "headers": [], "query_string": b"",
             "root_path": scope.get("app_root_path", scope.get("root_path", ""))}
    allowed: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Mount):  # static files: GET and HEAD only
            if route.matches({**fresh, "method": "GET"})[0] != Match.NONE:
                allowed |= {"GET", "HEAD"}
            continue
        for method in _METHODS:
            if method not in allowed and route.matches(
                    {**fresh, "method": method})[0] == Match.FULL:
                allowed.add(method)
    return [m for m in _METHODS if m in allowed]


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` a JSON ``{"code", "message"}`` answer."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(QueryError)
    async def _query_error(request: Request, exc: QueryError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(_validation_status(errors), "malformed",
                              f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            return _method_not_allowed(request.method, _allowed_methods(request))
        code = "not_found" if exc.status_code == 404 else "http"
        return error_response(exc.status_code, code, str(exc.detail), headers or None)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error answering %s %s", request.method, request.url.path)
        return error_response(500, "internal", "the node failed to answer; its log says why")


class PathHygiene:
    """ASGI middleware that settles two things about a request's path before routing:

    - a path holding a control character (C0, DEL or C1) is refused with 400: routing would
      otherwise read ``/v1/state/identity/org/st-mary%0A`` as the key without the newline;
    - a path that is one of the API's literal paths (no parameter in it, such as
      ``/v1/txs/batch``) with a method it does not have is answered 405, with ``Allow``
      naming the methods it has. Routing alone would hand ``GET /v1/txs/batch`` to
      ``GET /v1/txs/{tx_id}`` and refuse ``batch`` as a malformed id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = _path_refusal(scope)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _path_refusal(scope: Scope) -> JSONResponse | None:
    path = scope.get("path", "")
    if _has_control(path):
        return error_response(400, "malformed", "the path holds a control character (such "
                                                "as a newline); remove it")
    allowed = _literal_methods(scope)
    if allowed is not None and scope["method"] not in allowed:
        return _method_not_allowed(scope["method"], allowed)
    return None


def _literal_methods(scope: Scope) -> list[str] | None:
    """The methods of the API's literal path the request is for, or None when its path is
    not one (a path with parameters, or no operation at all)."""
    app = scope.get("app")
    if not isinstance(app, FastAPI):
        return None
    path, root = scope.get("path", ""), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    if "{" in path:
        return None
    operations = app.openapi().get("paths", {}).get(path)
    if not operations:
        return None
    return [m for m in _METHODS if m.lower() in operations]


def _method_not_allowed(method: str, allowed: list[str]) -> JSONResponse:
    return error_response(405, "method_not_allowed",
                          f"{method} is not allowed here; use {' or '.join(allowed)}",
                          {"Allow": ", ".join(allowed)})


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


_DESCRIPTIONS = {
    400: "malformed: a value breaks a declared bound or pattern, or the path holds a "
         "control character",
    403: "refused: the sender may not do this",
    404: "not_found",
    409: "refused: a conflict with committed or pending state",
    413: "too_large: the request body is too large",
    422: "malformed: a parameter is not of its declared type",
    429: "mempool_full: retry later",
    500: "integrity: the node's store is damaged (`medledger verify` says more)",
    503: "busy: blocks kept committing while the answer was read, or (on CometBFT) the "
         "header that proves it is not final yet; ask again",
}


def error_responses(*statuses: int, codes: Mapping[str, int] | None = None
                    ) -> dict[int | str, dict[str, Any]]:
    """``responses`` entries for the error ``statuses`` an operation may answer, each a
    JSON ``{"code", "message"}``. With ``codes`` (refusal code -> status), each status's
    description lists the codes it answers."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({400, 422, *statuses}):
        listed = sorted(c for c, s in (codes or {}).items() if s == status)
        description = (f"refused: {', '.join(f'`{c}`' for c in listed)}" if listed
                       else _DESCRIPTIONS.get(status, "refused"))
        out[status] = {"description": description,
                       "content": {"application/json": {"schema": ref("Error")}}}
    return out
