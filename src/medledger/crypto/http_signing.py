"""Signed HTTP requests (RFC 9421 HTTP Message Signatures, Ed25519): the one profile that
clients, nodes asking their peers, and the API's check share.

A signed request covers ``@method``, ``@authority`` and ``@path``, and for a body its
``content-digest`` (RFC 9530, SHA-256, added here); its parameters are ``created`` (now, in
seconds), a random ``nonce`` (a node refuses one it saw within the last 30 s), ``keyid``
(the signing key's public key, 64 hex: the node reads it as the reader's key) and
``alg="ed25519"``. A node refuses a request signed more than 30 s before it arrives, or
dated ahead of the node's clock.

A client signs with :class:`medledger.client.signing.SignedAuth`; a node signs its
requests to peers with :func:`sign_request` and its validator or node key.
"""

from __future__ import annotations

import datetime
import secrets

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import HTTPSignatureKeyResolver

from medledger.crypto.signing import SigningKey

__all__ = ["COVERED", "sign_request"]

COVERED = ("@method", "@authority", "@path")
"""The components every signed request covers (``content-digest`` is added for a body)."""


class _Key(HTTPSignatureKeyResolver):
    def __init__(self, key: SigningKey) -> None:
        self._private = Ed25519PrivateKey.from_private_bytes(key.seed)

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        return self._private


def sign_request(request: httpx.Request, key: SigningKey, *, created: int | None = None,
                 nonce: str | None = None) -> httpx.Request:
    """Sign ``request`` in place with ``key`` and return it. ``created`` (seconds since the
    epoch) and ``nonce`` default to now and 18 random bytes; tests set them."""
    body = request.read()
    when = None if created is None else datetime.datetime.fromtimestamp(
        created, tz=datetime.UTC)
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_Key(key)).sign(
        request, key_id=key.public_key.hex(), created=when,
        nonce=nonce if nonce is not None else secrets.token_urlsafe(18),
        covered_component_ids=COVERED, body=body or None)
    return request
