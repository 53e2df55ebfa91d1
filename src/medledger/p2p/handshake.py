"""What happens on a new connection after TLS, and peer addresses.

After the TLS handshake each side sends one frame holding :data:`GREETING` and waits for
the other's. In TLS 1.3 a client finishes its handshake before the server has checked the
client's certificate; the server's greeting is how the client learns it was accepted, so
a connection counts only once the greeting is in.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

from medledger.p2p.connection import close_stream
from medledger.p2p.errors import PeerRejected, ProtocolError
from medledger.p2p.frames import encode_frame, read_frame
from medledger.p2p.tls import peer_identity

__all__ = ["GREETING", "accept_member", "dial_member", "exchange_greeting", "keep_new_connection",
           "split_address"]

GREETING = b"medledger-p2p/1"


async def exchange_greeting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send :data:`GREETING`, then read the peer's; :class:`ProtocolError` if it differs.

    The caller bounds the time. A longer first frame is refused from its header alone.
    """
    writer.write(encode_frame(GREETING))
    await writer.drain()
    if await read_frame(reader, len(GREETING)) != GREETING:
        raise ProtocolError("bad greeting")


async def dial_member(address: str, context: ssl.SSLContext, members: Mapping[bytes, bytes],
                      expected: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter,
                                                bytes]:
    """Connect to ``address`` with TLS and check that the server is the member ``expected``.

    Returns the streams and the server's certificate; raises :class:`PeerRejected` (after
    closing the connection) if the server is another node or not a member. The caller
    bounds the time, and sends the greeting.
    """
    host, port = split_address(address)
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        key, certificate = peer_identity(writer.get_extra_info("ssl_object"), members)
        if key != expected:
            raise PeerRejected(key, f"dialed {address} for {expected.hex()[:16]}")
    except BaseException:
        await close_stream(writer)
        raise
    return reader, writer, certificate


async def accept_member(writer: asyncio.StreamWriter, context: ssl.SSLContext,
                        members: Mapping[bytes, bytes]) -> tuple[bytes, bytes]:
    """Run the server side of TLS on an accepted stream; return the client's ``(public
    key, certificate)``, or raise :class:`PeerRejected` if it is not a member. The caller
    bounds the time, closes the stream on failure, and sends the greeting."""
    await writer.start_tls(context)
    return peer_identity(writer.get_extra_info("ssl_object"), members)


def keep_new_connection(me: bytes, peer: bytes, new_dialer: bytes,
                        old_dialer: bytes | None) -> bool:
    """Whether a new connection between ``me`` and ``peer`` should be kept.

    There is one connection per pair. With no old connection (``old_dialer`` is ``None``)
    the new one is kept. Otherwise the new one replaces the old one if the node with the
    lower public key dialed it (both sides decide alike when both dial at once), or if
    its dialer also dialed the old one (a redial after a restart or a silent failure).
    """
    return old_dialer is None or new_dialer == min(me, peer) or new_dialer == old_dialer


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) as ``(host, port)``; ``ValueError`` if not."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"address must be host:port, got {address!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)
