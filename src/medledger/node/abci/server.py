"""An asyncio ABCI 2.0 server on CometBFT's socket protocol.

CometBFT opens four connections to the application (consensus, mempool, query, snapshot)
and sends requests on each in order, expecting the responses in the same order; a
``Flush`` request asks for everything buffered to be written out. The server reads every
frame that has arrived on a connection at once (:class:`~medledger.node.abci.wire.
FrameReader`), hands them together to one worker thread, which calls the application's
method of each request's name in turn (so the application is never entered twice at once,
and the event loop, which also serves the REST API, stays free), and writes their
responses out together. CometBFT sends each transaction's CheckTx as a request of its own,
thousands after a block when it rechecks its mempool: a hand-over to the worker thread
for each cost more than the check itself.

With ``MEDLEDGER_PROFILE=DIR`` in the environment, the worker thread runs under cProfile and
writes its statistics to ``DIR/abci-<pid>.prof`` when the server closes.

An application method that raises ends with a ``ResponseException`` carrying the message,
and CometBFT stops: a deterministic application that fails is a bug to see at once, never
something to paper over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from medledger.node.abci.wire import FrameError, FrameReader, abci_types, frame, varint

__all__ = ["PROFILE_ENV", "AbciServer"]

log = logging.getLogger("medledger.abci")

PROFILE_ENV = "MEDLEDGER_PROFILE"
BATCH_REQUESTS = 1000  # most requests of one connection handed to the worker thread at once

# the Request oneof's field name -> (application method, Response field)
_METHODS = ("echo", "flush", "info", "init_chain", "query", "check_tx", "commit",
            "list_snapshots", "offer_snapshot", "load_snapshot_chunk", "apply_snapshot_chunk",
            "prepare_proposal", "process_proposal", "extend_vote", "verify_vote_extension",
            "finalize_block")


class AbciServer:
    """Serves ``application`` on a Unix socket (``unix://PATH``) or ``tcp://HOST:PORT``.

    ``application`` has one method per ABCI request (``info``, ``check_tx``, ...), each
    taking the request message and returning the response message; ``echo`` and ``flush``
    are answered here. An application with ``check_txs(requests) -> responses`` gets each
    run of CheckTx requests that arrived together in one call.
    """

    def __init__(self, application: Any, address: str) -> None:
        self.application = application
        self.address = address
        self._types = abci_types()
        self._profile_dir = os.environ.get(PROFILE_ENV)
        self._profile: Any = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="abci",
            initializer=self._start_profile if self._profile_dir else None)
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._handlers: dict[str, Callable[[Any], Any]] = {
            name: getattr(application, name) for name in _METHODS
            if name not in ("echo", "flush") and hasattr(application, name)}
        self._check_many: Callable[[list[Any]], list[Any]] | None = getattr(
            application, "check_txs", None)
        # a response is the Response message with one field set: its tag, the length of
        # the inner message, the inner message (built here without a Response object)
        fields = self._types.Response.DESCRIPTOR.fields_by_name
        self._tags = {name: varint(fields[name].number << 3 | 2) for name in _METHODS}
        self._flushed = frame(self._types.Response(flush=self._types.ResponseFlush())
                              .SerializeToString())

    async def start(self) -> None:
        """Listen (removing a stale socket file first)."""
        if self.address.startswith("unix://"):
            path = Path(self.address.removeprefix("unix://"))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._server = await asyncio.start_unix_server(self._serve, path=str(path))
            os.chmod(path, 0o600)
        elif self.address.startswith("tcp://"):
            host, _, port = self.address.removeprefix("tcp://").rpartition(":")
            self._server = await asyncio.start_server(self._serve, host, int(port))
        else:
            raise ValueError(f"ABCI address {self.address!r}: use unix://PATH or tcp://HOST:PORT")
        log.info("ABCI server listening on %s", self.address)

    async def close(self) -> None:
        """Stop listening, end every connection and the worker thread."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
        if self._profile_dir:
            await asyncio.get_running_loop().run_in_executor(self._executor,
                                                             self._save_profile)
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._requests(reader, writer)
        except (FrameError, asyncio.IncompleteReadError, ConnectionError) as e:
            log.warning("ABCI connection closed: %s", e or type(e).__name__)
        except asyncio.CancelledError:
            pass  # close(): the connection ends here, not as an error of asyncio's
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                        ) -> None:
        frames = FrameReader(reader)
        loop = asyncio.get_running_loop()
        flushed = self._flushed
        while True:
            payloads = await frames.read()
            if not payloads:
                return
            for first in range(0, len(payloads), BATCH_REQUESTS):
                chunk = payloads[first:first + BATCH_REQUESTS]
                if all(p == _FLUSH_REQUEST for p in chunk):  # nothing for the app to do
                    writer.write(flushed * len(chunk))
                else:
                    writer.write(await loop.run_in_executor(self._executor, self._answer,
                                                            chunk))
            await writer.drain()

    def _answer(self, payloads: list[bytes]) -> bytes:
        """The framed responses to ``payloads``, in order (in the worker thread). A run of
        CheckTx goes to the application's ``check_txs`` at once, when it has one."""
        types = self._types
        requests: list[tuple[str | None, Any]] = []
        for payload in payloads:
            if payload == _FLUSH_REQUEST:
                requests.append(("flush", None))
                continue
            request = types.Request.FromString(payload)
            kind = request.WhichOneof("value")
            requests.append((kind, getattr(request, kind) if kind else None))
        out: list[bytes] = []
        index = 0
        while index < len(requests):
            kind, message = requests[index]
            end = index + 1
            if kind == "check_tx" and self._check_many is not None:
                while end < len(requests) and requests[end][0] == "check_tx":
                    end += 1
            if end - index > 1:
                answers = self._handle_many([m for _, m in requests[index:end]])
            elif kind == "flush":
                answers = [None]
            elif kind == "echo":
                answers = [types.ResponseEcho(message=message.message)]
            else:
                answers = [self._handle(kind, message)]
            for answer in answers:
                out.append(self._encode(kind, answer))
            index = end
        return b"".join(out)

    def _encode(self, kind: str | None, answer: Any) -> bytes:
        """One framed response: Flush's for None, the exception of a :class:`_Failure`."""
        if answer is None:
            return self._flushed
        if isinstance(answer, _Failure):
            return frame(answer.response.SerializeToString())
        inner = answer.SerializeToString()
        return frame(self._tags[kind or ""] + varint(len(inner)) + inner)

    def _handle_many(self, messages: list[Any]) -> list[Any]:
        """The application's answers to a run of CheckTx (in the worker thread)."""
        assert self._check_many is not None
        try:
            return self._check_many(messages)
        except Exception as e:  # noqa: BLE001 - reported to CometBFT, which stops
            log.exception("ABCI check_tx failed")
            failure = _Failure(self._types.Response(exception=self._types.ResponseException(
                error=f"check_tx: {type(e).__name__}: {e}")))
            return [failure] * len(messages)

    def _handle(self, kind: str | None, message: Any) -> Any:
        """The application's answer to one request (in the worker thread), or a
        :class:`_Failure` carrying the ``ResponseException`` to send instead."""
        types = self._types
        handler = self._handlers.get(kind or "")
        if handler is None:
            return _Failure(types.Response(exception=types.ResponseException(
                error=f"request {kind!r} is not served by this application")))
        try:
            return handler(message)
        except Exception as e:  # noqa: BLE001 - reported to CometBFT, which stops
            log.exception("ABCI %s failed", kind)
            return _Failure(types.Response(exception=types.ResponseException(
                error=f"{kind}: {type(e).__name__}: {e}")))

    # profiling (MEDLEDGER_PROFILE) ---------------------------------------------------------
    def _start_profile(self) -> None:
        import cProfile

        self._profile = cProfile.Profile()
        self._profile.enable()

    def _save_profile(self) -> None:
        if self._profile is None or not self._profile_dir:
            return
        self._profile.disable()
        path = Path(self._profile_dir) / f"abci-{os.getpid()}.prof"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._profile.dump_stats(str(path))
        log.info("ABCI thread profile written to %s", path)


class _Failure:
    """A request the application could not answer: the exception response CometBFT gets."""

    __slots__ = ("response",)

    def __init__(self, response: Any) -> None:
        self.response = response


#: a Flush request's bytes (field 2 of Request, an empty RequestFlush)
_FLUSH_REQUEST = b"\x12\x00"
