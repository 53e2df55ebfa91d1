"""The p2p layer: authenticated TCP between member nodes.

- :mod:`~medledger.p2p.tls`: each node's deterministic self-signed certificate, and TLS
  1.3 contexts pinned to the current members' certificates.
- :mod:`~medledger.p2p.frames`: 4-byte length-prefixed frames with a size limit, and the
  canonical JSON messages (``{"kind": ...}``) the node puts in them.
- :mod:`~medledger.p2p.handshake`: the greeting after TLS, and ``host:port`` addresses.
- :mod:`~medledger.p2p.transport`: :class:`Transport`, asyncio connections with bounded
  queues, heartbeats, one connection per pair and redialing with backoff.

The layer imports only :mod:`medledger.codec` and :mod:`medledger.crypto` from medledger.
The error tree is drawn in :mod:`medledger.p2p.errors`. ``docs/p2p.md`` describes the
wire format and the policies.
"""

from medledger.p2p.backoff import Backoff
from medledger.p2p.connection import Limits, PeerStats
from medledger.p2p.errors import (
    CertificateError,
    FrameTooLarge,
    P2PError,
    PeerRejected,
    ProtocolError,
)
from medledger.p2p.frames import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    decode_message,
    encode_frame,
    encode_message,
    read_frame,
)
from medledger.p2p.handshake import (
    GREETING,
    accept_member,
    dial_member,
    exchange_greeting,
    keep_new_connection,
    split_address,
)
from medledger.p2p.tls import (
    TlsIdentity,
    certificate_key,
    check_certificate,
    node_certificate,
    peer_identity,
    tls_context,
)
from medledger.p2p.transport import Members, OnMessage, Transport

__all__ = [
    "DEFAULT_MAX_FRAME", "GREETING", "Backoff", "CertificateError", "FrameDecoder",
    "FrameTooLarge", "Limits", "Members", "OnMessage", "P2PError", "PeerRejected",
    "PeerStats", "ProtocolError", "TlsIdentity", "Transport", "accept_member",
    "certificate_key", "check_certificate", "decode_message", "dial_member", "encode_frame",
    "encode_message", "exchange_greeting", "keep_new_connection", "node_certificate",
    "peer_identity", "read_frame", "split_address", "tls_context",
]
