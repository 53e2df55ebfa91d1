"""A TCP proxy on 127.0.0.1 for fault tests: cut a link for a while, then restore it.

It runs its own event loop in a daemon thread, so synchronous tests and tests with their
own event loop use it alike::

    with Proxy("127.0.0.1", target_port) as proxy:   # listens on proxy.address
        ...
        proxy.cut()       # close live connections; refuse new ones
        proxy.restore()   # forward again

``cut(blackhole=True)`` holds new connections open and silent instead of refusing them
(a peer that vanished without a reset); they are closed on :meth:`Proxy.restore`. Every
call waits at most :data:`CALL_TIMEOUT` seconds for the proxy's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

__all__ = ["CALL_TIMEOUT", "Proxy"]

CALL_TIMEOUT = 5.0
_CHUNK = 65536


class Proxy:
    """Forward ``127.0.0.1:listen_port`` (0: any free port) to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        """Configure; :meth:`start` binds and starts forwarding."""
        self.target = (target_host, target_port)
        self.port = listen_port
        self.accepted = 0
        self._mode = "forward"  # or "refuse" or "blackhole"
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="netproxy",
                                        daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` the proxy listens on."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start the thread and bind; return ``self``."""
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        """Close everything, stop the loop and join the thread (bounded)."""
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    def cut(self, blackhole: bool = False) -> None:
        """Close every live connection; from now on refuse new ones (or hold them silent)."""
        self._call(self._set_mode("blackhole" if blackhole else "refuse"))

    def restore(self) -> None:
        """Forward again (connections held by a blackhole are closed first)."""
        self._call(self._set_mode("forward"))

    @property
    def links(self) -> int:
        """Connections open now (each forwarded or held one counts once per side)."""
        return len(self._links)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # --- inside the proxy's loop ---------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._on_accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_links()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CALL_TIMEOUT / 2)

    async def _set_mode(self, mode: str) -> None:
        self._mode = mode
        self._close_links()

    def _close_links(self) -> None:
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._mode == "refuse":
            writer.transport.abort()
            return
        self._links.add(writer)
        if self._mode == "forward":
            task = asyncio.ensure_future(self._forward(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._links.discard(writer)
            writer.transport.abort()
            return
        if writer not in self._links:  # cut while connecting upstream
            up_writer.transport.abort()
            return
        self._links.add(up_writer)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        for w in (writer, up_writer):
            self._links.discard(w)
            w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()
