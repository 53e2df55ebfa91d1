"""One authenticated connection to a peer: a bounded send queue, a read loop, a write loop.

Queue policy: a connection holds at most ``Limits.queue_size`` frames and
``Limits.queue_bytes`` bytes waiting to be written. :meth:`Connection.enqueue` on a full
queue drops the new payload (drop newest), counts it in ``drops`` and returns ``False``.
A peer that stops reading altogether is disconnected once a single write has waited
``Limits.write_timeout`` seconds; its backlog is discarded with the connection. So a slow
or hostile peer costs at most one queue and one frame of memory.

Liveness: when nothing has been sent for ``Limits.ping_interval`` seconds a zero-length
frame (a heartbeat) is sent; a connection on which nothing at all arrives for
``Limits.idle_timeout`` seconds is closed.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from medledger.p2p.errors import ProtocolError
from medledger.p2p.frames import DEFAULT_MAX_FRAME, frame_header, read_frame

__all__ = ["Connection", "Limits", "PeerStats"]

log = logging.getLogger("medledger.p2p")

HEARTBEAT = b""


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds of a transport; every one of them is per connection, times in seconds.

    ``max_frame`` bytes per frame; ``queue_size`` frames and ``queue_bytes`` bytes waiting
    to be sent; ``handshake_timeout`` for TLS plus greeting; ``ping_interval``,
    ``idle_timeout`` and ``write_timeout`` as the module docstring says; at most
    ``max_pending`` inbound connections still in their handshake at once.
    """

    max_frame: int = DEFAULT_MAX_FRAME
    queue_size: int = 1_000
    queue_bytes: int = 64 * 1024 * 1024
    handshake_timeout: float = 10.0
    ping_interval: float = 5.0
    idle_timeout: float = 20.0
    write_timeout: float = 30.0
    max_pending: int = 64

    def __post_init__(self) -> None:
        numbers = (self.max_frame, self.queue_size, self.queue_bytes, self.handshake_timeout,
                   self.ping_interval, self.idle_timeout, self.write_timeout, self.max_pending)
        if min(numbers) <= 0 or self.max_frame >= 2**32:
            raise ValueError(f"limits must be positive (max_frame below 2**32): {self!r}")
        if self.idle_timeout <= self.ping_interval:
            raise ValueError("idle_timeout must exceed ping_interval, or an idle but healthy "
                             "connection would be closed")


@dataclass(frozen=True, slots=True)
class PeerStats:
    """Counters of one peer since the transport started (a snapshot; across connections).

    ``drops`` are payloads refused by a full queue; ``connects`` counts connections that
    completed authentication, ``reconnects`` those made after the peer had been
    disconnected (not those that replaced a live connection); ``outbound`` says who
    dialed the current connection (``None`` when not connected), ``queued`` how many
    frames wait in it.
    """

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    drops: int = 0
    connects: int = 0
    reconnects: int = 0
    dial_failures: int = 0
    protocol_errors: int = 0
    queued: int = 0
    outbound: bool | None = None


class Counters:
    """The mutable counters behind :class:`PeerStats` (internal to the package)."""

    __slots__ = ("bytes_in", "bytes_out", "connects", "dial_failures", "drops", "frames_in",
                 "frames_out", "protocol_errors", "reconnects")

    def __init__(self) -> None:
        self.frames_in = self.frames_out = self.bytes_in = self.bytes_out = 0
        self.drops = self.connects = self.reconnects = 0
        self.dial_failures = self.protocol_errors = 0

    def snapshot(self, connection: Connection | None) -> PeerStats:
        """A :class:`PeerStats` of these counters and of ``connection`` (if connected)."""
        return PeerStats(
            self.frames_in, self.frames_out, self.bytes_in, self.bytes_out, self.drops,
            self.connects, self.reconnects, self.dial_failures, self.protocol_errors,
            connection.queued if connection else 0, connection.outbound if connection else None)


Deliver = Callable[[bytes, bytes], Awaitable[None]]


class Connection:
    """An authenticated stream to ``peer_key``; :meth:`run` drives it until it closes.

    ``outbound`` is true when this node dialed it. ``closed`` is set once the stream is
    shut and the tasks are gone; ``reason`` then says why it closed.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 peer_key: bytes, certificate: bytes, outbound: bool, limits: Limits,
                 counters: Counters, deliver: Deliver) -> None:
        """Wrap an authenticated stream; nothing happens until :meth:`run`."""
        self.peer_key = peer_key
        self.certificate = certificate
        self.outbound = outbound
        self.reason: str | None = None
        self.closed = asyncio.Event()
        self._reader, self._writer = reader, writer
        self._limits, self._counters, self._deliver = limits, counters, deliver
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._tasks: tuple[asyncio.Task[str], ...] = ()

    @property
    def queued(self) -> int:
        """Frames waiting to be written."""
        return len(self._queue)

    def enqueue(self, payload: bytes) -> bool:
        """Queue ``payload`` (non-empty, checked by the caller); ``False`` and a counted
        drop if the queue is full or the connection is closing."""
        limits = self._limits
        if (self.reason is not None or len(self._queue) >= limits.queue_size
                or self._queued_bytes + len(payload) > limits.queue_bytes):
            self._counters.drops += 1
            return False
        self._queue.append(payload)
        self._queued_bytes += len(payload)
        self._wakeup.set()
        return True

    def close(self, reason: str) -> None:
        """Ask the connection to close (it finishes in :meth:`run`); the first reason wins."""
        if self.reason is None:
            self.reason = reason
        for task in self._tasks:
            task.cancel()

    async def run(self) -> None:
        """Read and write until either side fails or :meth:`close`; then shut the stream."""
        self._tasks = (asyncio.create_task(self._guard(self._read_loop)),
                       asyncio.create_task(self._guard(self._write_loop)))
        if self.reason is not None:
            self.close(self.reason)
        try:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and self.reason is None:
                    self.reason = task.result()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await close_stream(self._writer)
            self._queue.clear()
            self._queued_bytes = 0
            self.closed.set()

    async def _guard(self, loop: Callable[[], Coroutine[Any, Any, None]]) -> str:
        """Run a loop; turn how it ended into the reason the connection closes."""
        try:
            await loop()
            return "loop ended"
        except ProtocolError as e:
            self._counters.protocol_errors += 1
            log.warning("closing connection to %s: %s", self.peer_key.hex()[:16], e)
            return f"protocol error: {e}"
        except TimeoutError:
            return "timed out"
        except asyncio.IncompleteReadError:
            return "peer closed the connection"
        except (OSError, ssl.SSLError, EOFError) as e:
            return f"connection error: {e!r}"

    async def _read_loop(self) -> None:
        limits, counters = self._limits, self._counters
        while True:
            async with asyncio.timeout(limits.idle_timeout):
                payload = await read_frame(self._reader, limits.max_frame)
            if payload:
                counters.frames_in += 1
                counters.bytes_in += len(payload)
                await self._deliver(self.peer_key, payload)

    async def _write_loop(self) -> None:
        limits, counters = self._limits, self._counters
        while True:
            if not self._queue:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(limits.ping_interval):
                        await self._wakeup.wait()
                except TimeoutError:
                    await self._write(HEARTBEAT)
                continue
            payload = self._queue.popleft()
            self._queued_bytes -= len(payload)
            await self._write(payload)
            counters.frames_out += 1
            counters.bytes_out += len(payload)

    async def _write(self, payload: bytes) -> None:
        self._writer.writelines((frame_header(len(payload), self._limits.max_frame), payload))
        try:
            async with asyncio.timeout(self._limits.write_timeout):
                await self._writer.drain()
        except TimeoutError:
            log.warning("closing connection to %s: it has not read for %ss",
                        self.peer_key.hex()[:16], self._limits.write_timeout)
            raise


async def close_stream(writer: asyncio.StreamWriter, timeout: float = 1.0) -> None:
    """Close ``writer``'s stream, politely for ``timeout`` seconds, then by force.

    A stream already closing is cut at once: after a failed TLS upgrade the stream never
    hears that its socket closed, and waiting for it would only hold a handshake slot.
    """
    if writer.transport.is_closing():
        writer.transport.abort()
        return
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
    except (OSError, TimeoutError):  # not shut in time, or the shutdown failed: cut it
        writer.transport.abort()
