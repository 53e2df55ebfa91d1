"""Signed HTTP requests (RFC 9421 HTTP Message Signatures, Ed25519): what a node's blob
routes ask of a client.

A signed request covers ``@method``, ``@authority`` and ``@path``, and for a body its
``content-digest`` (RFC 9530, SHA-256, added here); its parameters are ``created`` (now, in
seconds), a random ``nonce`` (a node refuses one it saw within the last 30 s), ``keyid``
(the signing key's public key, 64 hex: the node reads it as the reader's key) and
``alg="ed25519"``. A node refuses a request signed more than 30 s before it arrives, or
dated ahead of the node's clock.

::

    with httpx.Client(base_url=url, auth=SignedAuth(key)) as http:
        http.put(f"/v1/blobs/{digest.hex()}", content=ciphertext)
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Generator

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import HTTPSignatureKeyResolver

from medledger.crypto import SigningKey

__all__ = ["COVERED", "SignedAuth", "sign_request"]

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


class SignedAuth(httpx.Auth):
    """httpx authentication that signs every request with ``key`` (:func:`sign_request`)."""

    requires_request_body = True

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield sign_request(request, self.key)
