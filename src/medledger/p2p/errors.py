"""The errors raised by :mod:`medledger.p2p`.

Errors::

    P2PError                         root of everything raised here
    ├── CertificateError (ValueError)  a certificate that is not DER X.509 or whose key is
    │                                  not Ed25519, or that does not match its key (.reason)
    ├── PeerRejected                 a TLS peer that is not a current member, or not the
    │                                key that was dialed (.peer_key, .reason)
    └── ProtocolError                a peer broke the wire protocol (.reason)
        └── FrameTooLarge            a frame longer than the limit (.size, .limit)

A :class:`ProtocolError` or :class:`PeerRejected` closes one connection and never the
transport. Exceptions from ``cryptography``, :mod:`ssl` and the codec are wrapped at this
boundary (``raise ... from e``).
"""

from __future__ import annotations

__all__ = ["CertificateError", "FrameTooLarge", "P2PError", "PeerRejected", "ProtocolError"]


class P2PError(Exception):
    """Root of the errors raised by :mod:`medledger.p2p`."""


class CertificateError(P2PError, ValueError):
    """A node certificate that cannot be used; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"unusable node certificate: {reason}")
        self.reason = reason


class PeerRejected(P2PError):
    """A peer whose TLS identity is refused: ``peer_key`` (``None`` if it showed no
    certificate) and ``reason`` (``"not a current member"``, ``"expected key ..."``)."""

    def __init__(self, peer_key: bytes | None, reason: str) -> None:
        who = peer_key.hex()[:16] if peer_key else "a peer without a certificate"
        super().__init__(f"peer {who} rejected: {reason}")
        self.peer_key = peer_key
        self.reason = reason


class ProtocolError(P2PError):
    """A peer broke the wire protocol (bad greeting, undecodable message); ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FrameTooLarge(ProtocolError):
    """A frame of ``size`` bytes, over the ``limit``; its body is never read."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit
