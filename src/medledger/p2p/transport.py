"""The transport: authenticated connections to the members, frames in and out.

A :class:`Transport` listens on one address and dials a list of peers (its own key, if
listed, is skipped). Each connection is TLS 1.3 with both sides pinned to the current
members' certificates (:mod:`medledger.p2p.tls`), then the greeting of
:mod:`medledger.p2p.handshake`.

There is at most one connection per pair of nodes
(:func:`~medledger.p2p.handshake.keep_new_connection`). Dialing retries forever with
:class:`~medledger.p2p.backoff.Backoff` until :meth:`Transport.stop`.

Membership is read through ``members`` (a mapping, or a callable returning one: public
key -> certificate DER) whenever a connection is made; :meth:`Transport.set_members`
changes it and closes the connections of peers that are no longer members.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

from medledger.crypto import SigningKey
from medledger.p2p.backoff import Backoff
from medledger.p2p.connection import Connection, Counters, Limits, PeerStats, close_stream
from medledger.p2p.errors import FrameTooLarge, PeerRejected
from medledger.p2p.handshake import (
    accept_member,
    dial_member,
    exchange_greeting,
    keep_new_connection,
    split_address,
)
from medledger.p2p.tls import TlsIdentity

__all__ = ["Members", "OnMessage", "Transport"]

log = logging.getLogger("medledger.p2p")

Members = Mapping[bytes, bytes] | Callable[[], Mapping[bytes, bytes]]
OnMessage = Callable[[bytes, bytes], Awaitable[None] | None]
DEFAULT_LIMITS = Limits()
_HELD = 1.0  # seconds a connection must last before redialing starts from the first delay


def _tag(key: bytes) -> str:
    return key.hex()[:16]


class Transport:
    """Authenticated, framed connections between member nodes (see the module docstring).

    ``on_message(peer_key, payload)`` gets every payload received, in order per peer; if
    it returns an awaitable, the connection reads on once that is done (backpressure).
    Its exceptions are logged and the connection stays up.
    """

    def __init__(self, key: SigningKey, listen: str, peers: Iterable[tuple[bytes, str]],
                 members: Members, on_message: OnMessage, tls_dir: Path, *,
                 limits: Limits = DEFAULT_LIMITS,
                 backoff: Callable[[], Backoff] = Backoff) -> None:
        """Configure; nothing is bound or dialed until :meth:`start`."""
        self.key = key
        self.public_key = key.public_key
        self.limits = limits
        self._listen = split_address(listen)
        self._peers = dict(peers)
        self._members_source = members
        self._on_message = on_message
        self._tls_dir = tls_dir
        self._backoff = backoff
        self._identity: TlsIdentity | None = None
        self._server: asyncio.Server | None = None
        self._conns: dict[bytes, Connection] = {}
        self._counters: dict[bytes, Counters] = {}
        self._dialers: dict[bytes, asyncio.Task[None]] = {}
        self._handshakes: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # every task, until it is done
        self._address = ""
        self._running = False

    # --- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Write the TLS identity, bind the listening socket, start dialing the peers."""
        if self._running:
            raise RuntimeError("transport already started")
        self._identity = TlsIdentity(self.key, self._tls_dir)
        try:
            self._server = await asyncio.start_server(self._on_accept, *self._listen)
        except BaseException:
            self._identity.remove()
            raise
        host, port = self._server.sockets[0].getsockname()[:2]
        self._address = f"{host}:{port}"
        self._running = True
        for peer, address in self._peers.items():
            self._start_dialer(peer, address)
        log.info("p2p listening on %s as %s", self.listen_address, _tag(self.public_key))

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection, cancel every task; bounded by
        ``timeout`` seconds (after which what is left is cancelled)."""
        if not self._running:
            return
        self._running = False
        if self._server is not None:
            self._server.close()
        for task in [*self._dialers.values(), *self._handshakes]:
            task.cancel()
        for conn in list(self._conns.values()):
            conn.close("transport stopping")
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._dialers.clear()
        if self._identity is not None:
            self._identity.remove()

    @property
    def listen_address(self) -> str:
        """``host:port`` actually bound (the real port when ``listen`` asked for 0)."""
        if not self._address:
            raise RuntimeError("transport not started")
        return self._address

    # --- sending ------------------------------------------------------------------------
    def send(self, peer_key: bytes, payload: bytes) -> bool:
        """Queue ``payload`` for ``peer_key`` without waiting. ``False`` if that peer is
        not connected or its queue is full (a counted drop; the payload is discarded)."""
        self._check_payload(payload)
        conn = self._conns.get(peer_key)
        return conn is not None and conn.enqueue(bytes(payload))

    def broadcast(self, payload: bytes) -> int:
        """Queue ``payload`` for every connected peer; return how many accepted it."""
        self._check_payload(payload)
        data = bytes(payload)
        return sum(conn.enqueue(data) for conn in list(self._conns.values()))

    def _check_payload(self, payload: bytes) -> None:
        if not isinstance(payload, (bytes, bytearray, memoryview)) or not payload:
            raise ValueError("payload must be non-empty bytes (an empty frame is a heartbeat)")
        if len(payload) > self.limits.max_frame:
            raise FrameTooLarge(len(payload), self.limits.max_frame)

    # --- what it knows ------------------------------------------------------------------
    def connected(self) -> list[bytes]:
        """Public keys of the peers connected now, sorted."""
        return sorted(self._conns)

    def stats(self) -> dict[bytes, PeerStats]:
        """A snapshot of every peer's counters, by public key."""
        return {peer: c.snapshot(self._conns.get(peer)) for peer, c in self._counters.items()}

    def members(self) -> dict[bytes, bytes]:
        """The current members: public key -> certificate DER."""
        source = self._members_source
        return dict(source() if callable(source) else source)

    def set_members(self, members: Members | None = None) -> None:
        """Use ``members`` from now on (or re-read the current source); close connections
        to peers that are no longer members or whose certificate changed."""
        if members is not None:
            self._members_source = members
        current = self.members()
        for peer, conn in list(self._conns.items()):
            if current.get(peer) != conn.certificate:
                conn.close("no longer a member")
                log.info("closing connection to %s: no longer a member", _tag(peer))

    def set_peers(self, peers: Iterable[tuple[bytes, str]]) -> None:
        """Dial exactly ``peers`` from now on; dialers of peers left out are stopped (their
        connections stay while they are members)."""
        wanted = dict(peers)
        for peer in list(self._dialers):
            if wanted.get(peer) != self._peers.get(peer):
                self._dialers.pop(peer).cancel()
        self._peers = wanted
        if self._running:
            for peer, address in wanted.items():
                if peer not in self._dialers:
                    self._start_dialer(peer, address)

    # --- connections --------------------------------------------------------------------
    def _tls(self, members: Mapping[bytes, bytes], *, server_side: bool) -> ssl.SSLContext:
        if self._identity is None:
            raise RuntimeError("transport not started")
        return self._identity.context(members, server_side=server_side)

    def _counter(self, peer: bytes) -> Counters:
        return self._counters.setdefault(peer, Counters())

    def _wanted(self, peer: bytes, outbound: bool) -> bool:
        old = self._conns.get(peer)
        old_dialer = None if old is None else self.public_key if old.outbound else peer
        new_dialer = self.public_key if outbound else peer
        return keep_new_connection(self.public_key, peer, new_dialer, old_dialer)

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: bytes, outbound: bool) -> None:
        if peer == self.public_key:
            raise PeerRejected(peer, "that is this node itself")
        if not self._wanted(peer, outbound):
            raise PeerRejected(peer, "already connected through the preferred connection")
        await exchange_greeting(reader, writer)

    def _register(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  peer: bytes, certificate: bytes, outbound: bool) -> None:
        if not self._running or self.members().get(peer) != certificate:
            raise PeerRejected(peer, "not a current member")
        if not self._wanted(peer, outbound):
            raise PeerRejected(peer, "already connected through the preferred connection")
        counters = self._counter(peer)
        conn = Connection(reader, writer, peer_key=peer, certificate=certificate,
                          outbound=outbound, limits=self.limits, counters=counters,
                          deliver=self._deliver)
        old = self._conns.get(peer)
        if old is not None:
            old.close("replaced by a newer connection")
        elif counters.connects:
            counters.reconnects += 1
        self._conns[peer] = conn
        counters.connects += 1
        log.info("connected to %s (%s)", _tag(peer), "dialed" if outbound else "accepted")
        self._spawn(self._run(conn))

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, conn: Connection) -> None:
        try:
            await conn.run()
        finally:
            if self._conns.get(conn.peer_key) is conn:
                del self._conns[conn.peer_key]
            log.info("disconnected from %s: %s", _tag(conn.peer_key), conn.reason)

    async def _deliver(self, peer: bytes, payload: bytes) -> None:
        try:
            result = self._on_message(peer, payload)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("message handler failed on a payload from %s", _tag(peer))

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._running or len(self._handshakes) >= self.limits.max_pending:
            writer.transport.abort()
            return
        task = self._spawn(self._accept(reader, writer))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.limits.handshake_timeout):
                members = self.members()
                context = self._tls(members, server_side=True)
                peer, cert = await accept_member(writer, context, members)
                await self._greet(reader, writer, peer, outbound=False)
            self._register(reader, writer, peer, cert, outbound=False)
        except Exception as e:  # noqa: BLE001 -- whatever it was, close the socket
            log.info("refused an inbound connection from %s: %r",
                     writer.get_extra_info("peername"), e)
            await close_stream(writer)
        except asyncio.CancelledError:
            writer.transport.abort()
            raise

    async def _dial(self, peer: bytes, address: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.handshake_timeout
        members = self.members()
        context = self._tls(members, server_side=False)
        async with asyncio.timeout_at(deadline):
            reader, writer, cert = await dial_member(address, context, members, peer)
        try:
            async with asyncio.timeout_at(deadline):
                await self._greet(reader, writer, peer, outbound=True)
            self._register(reader, writer, peer, cert, outbound=True)
        except BaseException:
            await close_stream(writer)
            raise

    def _start_dialer(self, peer: bytes, address: str) -> None:
        if peer != self.public_key:
            self._dialers[peer] = self._spawn(self._dial_loop(peer, address))

    async def _dial_loop(self, peer: bytes, address: str) -> None:
        backoff = self._backoff()
        loop = asyncio.get_running_loop()
        while self._running:
            conn = self._conns.get(peer)
            if conn is not None:
                since = loop.time()
                await conn.closed.wait()
                if loop.time() - since >= _HELD:
                    backoff.reset()
            else:
                try:
                    await self._dial(peer, address)
                    continue
                except Exception as e:  # noqa: BLE001 -- dialing goes on regardless
                    self._counter(peer).dial_failures += 1
                    log.debug("dialing %s at %s failed: %r", _tag(peer), address, e)
            await asyncio.sleep(backoff.delay())
