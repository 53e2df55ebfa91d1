"""A small HTTP client for the node's API (httpx), with errors that explain themselves."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from medledger.ledger import Transaction

__all__ = ["ApiRefused", "Client", "Unreachable"]


class Unreachable(Exception):
    """The node did not answer (not running, wrong address, timeout)."""


class ApiRefused(Exception):
    """The node answered with an error: ``status``, stable ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status, self.code, self.message = status, code, message


def _refusal(response: httpx.Response) -> ApiRefused:
    try:
        body = response.json()
        code, message = body["code"], body["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "http", response.text[:200]
    return ApiRefused(response.status_code, code, message)


_EVENT_PARAMS = frozenset({"type", "from_height", "after", "limit", "last_event_id"})


def _event_params(type_: str | None, attrs: Mapping[str, str] | None,
                  **named: int | None) -> list[tuple[str, str]]:
    """Query parameters of the event routes: the named ones, then one per attribute."""
    params = [(k, str(v)) for k, v in named.items() if v is not None]
    if type_ is not None:
        params.append(("type", type_))
    for name, value in sorted((attrs or {}).items()):
        if name in _EVENT_PARAMS:
            raise ValueError(f"attribute {name!r} has the name of a query parameter of the "
                             "event routes: it cannot be filtered on")
        params.append((name, value))
    return params


@dataclass(frozen=True, slots=True)
class _Frame:
    """One dispatched Server-Sent Events frame (``data`` None when it had none)."""

    id: str | None
    event: str | None
    data: str | None
    comment: bool


def _sse_frames(lines: Iterable[str]) -> Iterator[_Frame]:
    """Frames of an SSE stream given as lines without their line breaks (as
    ``httpx.Response.iter_lines`` gives them): fields ``id``, ``event``, ``data`` (several
    data lines join with newlines), comments (lines starting with ``:``) noted, unknown
    fields ignored; a blank line ends a frame. A frame cut off by the end of the stream is
    dropped, as the SSE specification says."""
    id_: str | None = None
    event: str | None = None
    data: list[str] = []
    comment = seen = False
    for line in lines:
        if not line:
            if seen:
                yield _Frame(id_, event, "\n".join(data) if data else None, comment)
            id_, event, data, comment, seen = None, None, [], False, False
            continue
        seen = True
        if line.startswith(":"):
            comment = True
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            id_ = value


def _event_id(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


class Client:
    """Talk to one node's API at ``base_url`` (e.g. ``http://127.0.0.1:26657``)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise Unreachable(f"no answer from {self.base_url}: {e}") from e
        if response.status_code >= 400:
            raise _refusal(response)
        return response.json()

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/v1/status")  # type: ignore[no-any-return]

    def genesis(self) -> dict[str, Any]:
        return self._call("GET", "/v1/genesis")  # type: ignore[no-any-return]

    def submit(self, tx: Transaction, *, wait: bool = False, timeout: float = 30.0,
               proven: bool = True) -> dict[str, Any]:
        """POST /v1/txs; with ``wait``, the answer once committed and (unless ``proven`` is
        False) proven by the next signed header."""
        params = {"wait": "true", "timeout": str(timeout)} if wait else {}
        if wait and not proven:
            params["proven"] = "false"
        return self._call("POST", "/v1/txs", content=tx.raw,  # type: ignore[no-any-return]
                          params=params, headers={"content-type": "application/json"})

    def tx(self, tx_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/txs/{tx_id}")  # type: ignore[no-any-return]

    def block(self, height: int) -> dict[str, Any]:
        return self._call("GET", f"/v1/blocks/{height}")  # type: ignore[no-any-return]

    def block_proof(self, height: int) -> dict[str, Any]:
        """Block ``height`` proven by the log of blocks under a recent header (check it
        with :func:`medledger.client.verify_block_answer`)."""
        return self._call("GET", f"/v1/blocks/{height}/proof")  # type: ignore[no-any-return]

    def blocks(self, before: int | None = None, limit: int = 20) -> dict[str, Any]:
        """A page of recent blocks, newest first: ``{"blocks": [{"height", "hash", "time",
        "tx_count", "proposer"}, ...], "next": <before> or None}``. ``before`` (the previous
        page's ``next``) lists only the blocks below that height; ``limit`` is 1 to 100."""
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        return self._call("GET", "/v1/blocks", params=params)  # type: ignore[no-any-return]

    def txs_by_sender(self, sender: bytes | str, before: str | None = None,
                      limit: int = 20) -> dict[str, Any]:
        """A page of ``sender``'s committed transactions (its key, as bytes or 64 hex),
        newest first: ``{"txs": [{"tx_id", "height", "index", "type", "nonce", "code",
        "message"}, ...], "next": <before> or None}``. ``before`` (``"<height>:<index>"``,
        the previous page's ``next``) lists only those before that position; ``limit`` is
        1 to 100."""
        key = sender.hex() if isinstance(sender, bytes) else sender.lower()
        params: dict[str, Any] = {"sender": key, "limit": limit}
        if before is not None:
            params["before"] = before
        return self._call("GET", "/v1/txs", params=params)  # type: ignore[no-any-return]

    def state(self, key: str, *, prove: bool = True) -> dict[str, Any]:
        """A state entry with its proof (``prove=False``: the tip's value, unproven)."""
        params = None if prove else {"prove": "false"}
        return self._call("GET", f"/v1/state/{key}",  # type: ignore[no-any-return]
                          params=params)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` (``/v1/...``, such as an app's route) with query ``params``: the
        decoded JSON answer; a refusal raises :class:`ApiRefused`."""
        return self._call("GET", path, params=dict(params) if params else None)

    def validator_changes(self) -> list[int]:
        """The heights from which a set changed by governance was in force."""
        return self._call("GET", "/v1/validators/changes")["heights"]  # type: ignore[no-any-return]

    def validator_proof(self, height: int) -> dict[str, Any]:
        """The proof of the set of ``height`` (see :func:`medledger.client.verify_set_change`)."""
        return self._call("GET", f"/v1/validators/proof/{height}")  # type: ignore[no-any-return]

    def next_nonce(self, sender: bytes) -> int:
        """One more than the sender's last committed nonce (read at the tip, unproven: a
        wrong nonce costs only a refusal)."""
        value = self.state(f"nonce/{sender.hex()}", prove=False)["value"]
        return 1 if value is None else int(value) + 1

    # events -------------------------------------------------------------------------------
    def events(self, type: str | None = None, attrs: Mapping[str, str] | None = None,  # noqa: A002
               from_height: int = 0, after: int = 0, limit: int = 100) -> dict[str, Any]:
        """A page of events, oldest first: ``{"events": [...], "next": <after> or None}``.

        ``type`` (``anchor.anchored``) and each attribute of ``attrs`` must match; ``after``
        is the previous page's ``next``. Each event is ``{"id", "height", "tx_index",
        "tx_id", "type", "attrs"}``."""
        params = _event_params(type, attrs, from_height=from_height, after=after, limit=limit)
        return self._call("GET", "/v1/events", params=params)  # type: ignore[no-any-return]

    def stream_events(
        self, type: str | None = None, attrs: Mapping[str, str] | None = None,  # noqa: A002
        last_event_id: int | None = None, *, from_height: int | None = None,
        timeout: float = 60.0, retries: int = 8, backoff: float = 0.25,
        max_backoff: float = 5.0,
        on_retry: Callable[[Exception, float], None] | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Follow the node's events (Server-Sent Events), yielding each as
        :meth:`events` lists it, each exactly once and in order, until the caller stops.

        Starts after event ``last_event_id``; without one, at ``from_height`` when given,
        else with the next new event. A connection that drops, ends, or sends nothing (not
        even a keep-alive) for ``timeout`` seconds is reopened with ``Last-Event-ID`` set to
        the last event seen, after ``backoff`` seconds doubling up to ``max_backoff``;
        ``retries`` attempts in a row that fail raise :class:`Unreachable` (a connection
        that delivers anything resets the count). ``on_retry(error, delay)`` is told of each
        retry. A refusal (a malformed or unknown id, a bad filter) raises
        :class:`ApiRefused`; a frame whose data is not JSON raises ValueError.
        """
        params = _event_params(type, attrs, from_height=from_height)
        last = last_event_id
        failures = 0
        while True:
            headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
            if last is not None:
                headers["last-event-id"] = str(last)
            try:
                with self._http.stream("GET", "/v1/events/stream", params=params,
                                       headers=headers, timeout=httpx.Timeout(timeout)
                                       ) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise _refusal(response)
                    for frame in _sse_frames(response.iter_lines()):
                        failures = 0
                        seq = _event_id(frame.id)
                        if frame.data is None:  # the starting point, or a keep-alive
                            if seq is not None and (last is None or seq > last):
                                last = seq
                            continue
                        event = json.loads(frame.data)
                        seq = event.get("id") if isinstance(event, dict) else None
                        if not isinstance(seq, int) or isinstance(seq, bool) or (
                                last is not None and seq <= last):
                            continue  # not an event, or one seen already
                        last = seq
                        yield event
                error: Exception = Unreachable(f"{self.base_url} ended the event stream")
            except ApiRefused as e:
                if e.status < 500:
                    raise
                error = e
            except httpx.HTTPError as e:
                error = e
            failures += 1
            if failures > retries:
                raise Unreachable(f"event stream from {self.base_url} lost; gave up after "
                                  f"{retries} retries: {error}") from error
            delay = min(max_backoff, backoff * 2 ** (failures - 1))
            if on_retry is not None:
                on_retry(error, delay)
            time.sleep(delay)
