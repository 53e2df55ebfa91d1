"""Events: list what committed transactions (and block hooks) did, and follow them live.

``GET /v1/events`` pages through the node's event index; ``GET /v1/events/stream`` sends the
same events as Server-Sent Events and keeps the connection open for new ones. Every event
carries its ``id``: the chain-wide sequence number ``seq`` (1, 2, ... in commit order, the
same on every node), which is also the SSE ``id`` a client resumes from with
``Last-Event-ID``.

Filters, for both: ``type`` (``anchor.anchored``), ``from_height``, and any other query
parameter ``name=value`` as an attribute that must be equal (``org=st-mary``).

The stream waits for new blocks on the node's commit notification (with a 1 s fallback
poll), sends a keep-alive comment while idle, and ends by itself when the client goes away,
the node stops or the server shuts down.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from medledger.node import Node
from medledger.store import EventQuery, StoredEvent

__all__ = ["MAX_LIMIT", "events_router"]

MAX_LIMIT = 1000
MAX_ATTR_FILTERS = 8
MAX_ATTR_VALUE = 512
_ATTR_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
_EVENT_TYPE = re.compile(_EVENT_TYPE_PATTERN)
_SEQ = re.compile(r"[0-9]{1,18}")
_LIST_PARAMS = frozenset({"type", "from_height", "after", "limit"})
_STREAM_PARAMS = frozenset({"type", "from_height", "after", "last_event_id"})
_STREAM_PAGE = 500  # events read from the store at a time while streaming
_POLL = 1.0  # seconds: fallback re-read of the store when no commit notification came

_ERROR = {"type": "object", "required": ["code", "message"],
          "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
_EVENT = {
    "type": "object",
    "required": ["id", "height", "tx_index", "tx_id", "type", "attrs"],
    "properties": {
        "id": {"type": "integer", "minimum": 1,
               "description": "The event's chain-wide sequence number (its SSE id)."},
        "height": {"type": "integer", "minimum": 1},
        "tx_index": {"type": ["integer", "null"],
                     "description": "The transaction's index in its block; null for an "
                                    "event of a block hook."},
        "tx_id": {"type": ["string", "null"], "description": "hex; null for a block hook"},
        "type": {"type": "string", "example": "anchor.anchored"},
        "attrs": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_ATTR_PARAM = {
    "name": "attrs", "in": "query", "required": False, "style": "form", "explode": True,
    "description": "Attribute filters: every query parameter that is not one of the named "
                   "ones is an attribute `name=value` the event must carry (`org=st-mary`). "
                   "Names are `[a-z][a-z0-9_]{0,31}`, values at most 512 characters, at most "
                   f"{MAX_ATTR_FILTERS} filters.",
    "schema": {"type": "object", "maxProperties": MAX_ATTR_FILTERS,
               "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,31}$",
                                 "not": {"enum": sorted(_LIST_PARAMS | _STREAM_PARAMS)}},
               "additionalProperties": {"type": "string", "maxLength": MAX_ATTR_VALUE}},
}
_BAD = {"description": "malformed filter or cursor",
        "content": {"application/json": {"schema": _ERROR}}}
_FILTERS_DOC = (
    "Filters: `type` (`<app>.<what>`), `from_height` (events of that block and later), and "
    "**any other query parameter `name=value` is an attribute filter**: the event must carry "
    "attribute `name` equal to `value` (`?type=identity.member_registered&org=st-mary`). An "
    "attribute that has the name of a named parameter cannot be filtered on this way."
)


class _Malformed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _malformed(message: str) -> JSONResponse:
    return JSONResponse({"code": "malformed", "message": message}, status_code=400)


def _filters(request: Request, reserved: frozenset[str], type_: str | None
             ) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """The type and attribute filters of a request (raise _Malformed)."""
    if type_ is not None and (len(type_) > 128 or not _EVENT_TYPE.fullmatch(type_)):
        raise _Malformed(f"type {type_[:140]!r} is not an event type (<app>.<what>)")
    attrs: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in reserved:
            continue
        if not _ATTR_NAME.fullmatch(name):
            raise _Malformed(f"query parameter {name[:40]!r} is neither a known one nor an "
                             "attribute name ([a-z][a-z0-9_]{0,31})")
        if name in attrs:
            raise _Malformed(f"attribute filter {name!r} is given twice")
        if len(value) > MAX_ATTR_VALUE:
            raise _Malformed(f"attribute filter {name!r}: values are at most "
                             f"{MAX_ATTR_VALUE} characters")
        attrs[name] = value
    if len(attrs) > MAX_ATTR_FILTERS:
        raise _Malformed(f"at most {MAX_ATTR_FILTERS} attribute filters")
    return type_, tuple(sorted(attrs.items()))


def _cursor(text: str, what: str) -> int:
    """A non-negative integer event id (raise _Malformed)."""
    text = text.strip()
    if not _SEQ.fullmatch(text):
        raise _Malformed(f"{what} {text[:40]!r} is not an event id (a non-negative integer)")
    return int(text)


class _Rows:
    """Turns stored events into answers, looking up each block's transaction ids once."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._ids: dict[int, list[bytes]] = {}

    def tx_id(self, height: int, index: int | None) -> str | None:
        if index is None:
            return None
        ids = self._ids.get(height)
        if ids is None:
            if len(self._ids) >= 64:
                self._ids.clear()
            ids = self._ids[height] = [t.tx_id for t in self.node.store.get_block_txs(height)]
        return ids[index].hex() if 0 <= index < len(ids) else None

    def answer(self, event: StoredEvent) -> dict[str, Any]:
        return {"id": event.seq, "height": event.height, "tx_index": event.tx_index,
                "tx_id": self.tx_id(event.height, event.tx_index), "type": event.type,
                "attrs": json.loads(event.attrs)}


def _frame(answer: dict[str, Any]) -> bytes:
    """One SSE event: JSON data on one line (json.dumps escapes every line break)."""
    data = json.dumps(answer, separators=(",", ":"))
    return f"id: {answer['id']}\nevent: {answer['type']}\ndata: {data}\n\n".encode()


def _server_exiting() -> bool:
    """True once the server (uvicorn) that runs us was told to exit.

    uvicorn waits for open responses to finish before it shuts the application down, so a
    stream that waited for the node's stop would hold the shutdown forever. uvicorn handles
    SIGTERM/SIGINT with a bound method of its Server, whose ``should_exit`` says it is
    exiting; anything else (no uvicorn, not the main thread) reads as not exiting.
    """
    try:
        handler = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):  # pragma: no cover - no signals here
        return False
    return bool(getattr(getattr(handler, "__self__", None), "should_exit", False))


def events_router(node: Node, *, keepalive: float = 15.0) -> APIRouter:
    """The ``/v1/events`` routes over ``node``; the stream sends a keep-alive comment after
    ``keepalive`` seconds without an event."""
    router = APIRouter(tags=["events"])

    @router.get(
        "/v1/events", responses={"400": _BAD},
        summary="List events, filtered by type, attributes and height",
        description="Events in commit order after the cursor `after` (an event id). The "
                    "answer's `next` is the `after` of the next page, or null on the last "
                    "page.\n\n" + _FILTERS_DOC,
        openapi_extra={"parameters": [_ATTR_PARAM], "responses": {"200": {
            "description": "a page of events",
            "content": {"application/json": {"schema": {
                "type": "object", "required": ["events", "next"],
                "properties": {"events": {"type": "array", "items": _EVENT},
                               "next": {"type": ["integer", "null"]}}}}}}}},
    )
    async def list_events(
        request: Request,
        type_: Annotated[str | None, Query(
            alias="type", max_length=128, pattern=_EVENT_TYPE_PATTERN,
            description="Event type, `<app>.<what>`.")] = None,
        from_height: Annotated[int, Query(
            ge=0, le=2**53, description="Only events of this block and later.")] = 0,
        after: Annotated[int, Query(ge=0, le=2**53, description="Only events with a "
                                    "larger id (the previous page's `next`).")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many "
                                    "events.")] = 100,
    ) -> Any:
        try:
            type_, attrs = _filters(request, _LIST_PARAMS, type_)
        except _Malformed as e:
            return _malformed(e.message)
        found = node.store.list_events(EventQuery(after, type_, attrs, from_height, limit))
        rows = _Rows(node)
        return JSONResponse({"events": [rows.answer(e) for e in found],
                             "next": found[-1].seq if len(found) == limit else None})

    @router.get(
        "/v1/events/stream", responses={"400": _BAD},
        summary="Follow events as Server-Sent Events (resumable)",
        description=(
            "A `text/event-stream` of the events that match, oldest first, then each new one "
            "as its block commits. Each frame has `id: <event id>`, `event: <type>` and "
            "`data: <the event as JSON, as /v1/events lists it>`; a comment is sent while "
            "idle to keep the connection open.\n\n"
            "Where it starts: after the `Last-Event-ID` header's id (what a browser sends "
            "when it reconnects), else after `last_event_id`, else after `after`; with none "
            "of them, at `from_height` if given, else with the next new event. The first "
            "frame carries the starting id, so a client that reconnects before any event "
            "came still misses nothing. An id that is not a non-negative integer, or one "
            "above the node's last event, is refused (400) before the stream starts.\n\n"
            + _FILTERS_DOC),
        openapi_extra={"parameters": [_ATTR_PARAM], "responses": {"200": {
            "description": "the event stream",
            "content": {"text/event-stream": {"schema": {"type": "string"}}}}}},
    )
    async def stream_events(
        request: Request,
        type_: Annotated[str | None, Query(
            alias="type", max_length=128, pattern=_EVENT_TYPE_PATTERN,
            description="Event type, `<app>.<what>`.")] = None,
        from_height: Annotated[int | None, Query(
            ge=0, le=2**53, description="Only events of this block and later.")] = None,
        after: Annotated[str | None, Query(description="Start after this event id.")] = None,
        last_event_id: Annotated[str | None, Query(
            description="Start after this event id (the `Last-Event-ID` header wins).")
        ] = None,
        last_event_header: Annotated[str | None, Header(
            alias="Last-Event-ID", description="Resume after this event id.")] = None,
    ) -> Any:
        try:
            type_, attrs = _filters(request, _STREAM_PARAMS, type_)
            given = [(v, w) for v, w in ((last_event_header, "Last-Event-ID"),
                                         (last_event_id, "last_event_id"), (after, "after"))
                     if v is not None]
            last = node.store.last_event_seq()
            if given:
                start = _cursor(*given[0])
                if start > last:
                    raise _Malformed(f"{given[0][1]} {start} is from the future: this node's "
                                     f"last event is {last}")
            elif from_height is not None:
                start = 0
            else:
                start = last
        except _Malformed as e:
            return _malformed(e.message)
        query = EventQuery(start, type_, attrs, from_height or 0, _STREAM_PAGE)
        return StreamingResponse(
            _follow(node, query, keepalive), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


async def _follow(node: Node, query: EventQuery, keepalive: float) -> AsyncIterator[bytes]:
    """The stream's frames: what the store holds after ``query.after``, then whatever each
    commit adds, until the client leaves, the node stops or the server exits."""
    rows = _Rows(node)
    cursor = query.after
    yield f"retry: 2000\nid: {cursor}\n\n".encode()
    quiet_since = time.monotonic()
    while not (node.stopping or _server_exiting()):
        height = node.chain.height  # read before the store: a commit after it wakes us
        found = node.store.list_events(EventQuery(cursor, query.type, query.attrs,
                                                  query.from_height, query.limit))
        if found:
            yield b"".join(_frame(rows.answer(e)) for e in found)
            cursor = found[-1].seq
            quiet_since = time.monotonic()
            continue
        idle = time.monotonic() - quiet_since
        if idle >= keepalive:
            yield b": keep-alive\n\n"
            quiet_since = time.monotonic()
            idle = 0.0
        await node.wait_new_block(height, min(_POLL, keepalive - idle))
