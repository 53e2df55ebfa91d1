"""An asyncio ABCI 2.0 server on CometBFT's socket protocol.

CometBFT opens four connections to the application (consensus, mempool, query, snapshot)
and sends requests on each in order, expecting the responses in the same order; a
``Flush`` request asks for everything buffered to be written out. The server reads the
frames (:mod:`medledger.node.abci.wire`), hands each request to the application's method
of the same name in one worker thread (so the application is never entered twice at once,
and the event loop, which also serves the REST API, stays free), and writes the responses.

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

from medledger.node.abci.wire import FrameError, abci_types, frame, read_frame

__all__ = ["AbciServer"]

log = logging.getLogger("medledger.abci")

# the Request oneof's field name -> (application method, Response field)
_METHODS = ("echo", "flush", "info", "init_chain", "query", "check_tx", "commit",
            "list_snapshots", "offer_snapshot", "load_snapshot_chunk", "apply_snapshot_chunk",
            "prepare_proposal", "process_proposal", "extend_vote", "verify_vote_extension",
            "finalize_block")


class AbciServer:
    """Serves ``application`` on a Unix socket (``unix://PATH``) or ``tcp://HOST:PORT``.

    ``application`` has one method per ABCI request (``info``, ``check_tx``, ...), each
    taking the request message and returning the response message; ``echo`` and ``flush``
    are answered here.
    """

    def __init__(self, application: Any, address: str) -> None:
        self.application = application
        self.address = address
        self._types = abci_types()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abci")
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._handlers: dict[str, Callable[[Any], Any]] = {
            name: getattr(application, name) for name in _METHODS
            if name not in ("echo", "flush") and hasattr(application, name)}

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
        types = self._types
        loop = asyncio.get_running_loop()
        while True:
            payload = await read_frame(reader)
            if payload is None:
                return
            request = types.Request.FromString(payload)
            kind = request.WhichOneof("value")
            if kind == "flush":
                writer.write(frame(types.Response(flush=types.ResponseFlush())
                                   .SerializeToString()))
                await writer.drain()
                continue
            if kind == "echo":
                response = types.Response(echo=types.ResponseEcho(message=request.echo.message))
            else:
                response = await loop.run_in_executor(self._executor, self._handle, kind,
                                                      getattr(request, kind))
            writer.write(frame(response.SerializeToString()))

    def _handle(self, kind: str | None, message: Any) -> Any:
        """The Response to one request (in the worker thread)."""
        types = self._types
        handler = self._handlers.get(kind or "")
        if handler is None:
            return types.Response(exception=types.ResponseException(
                error=f"request {kind!r} is not served by this application"))
        try:
            answer = handler(message)
        except Exception as e:  # noqa: BLE001 - reported to CometBFT, which stops
            log.exception("ABCI %s failed", kind)
            return types.Response(exception=types.ResponseException(
                error=f"{kind}: {type(e).__name__}: {e}"))
        return types.Response(**{kind: answer})
