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

from collections.abc import Generator

import httpx

from medledger.crypto import SigningKey
from medledger.crypto.http_signing import COVERED, sign_request

__all__ = ["COVERED", "SignedAuth", "sign_request"]


class SignedAuth(httpx.Auth):
    """httpx authentication that signs every request with ``key`` (:func:`sign_request`)."""

    requires_request_body = True

    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield sign_request(request, self.key)
