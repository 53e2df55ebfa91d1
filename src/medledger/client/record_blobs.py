"""Encrypted record content to and from a node's blob store, on signed requests.

``PUT /v1/blobs/{digest}`` and ``GET /v1/blobs/{digest}`` want an RFC 9421 signature made
with the caller's Ed25519 key (:func:`medledger.client.signing.sign_request`); the node
reads the signature's ``keyid`` as the reader. Both go through the :class:`Client`'s own
HTTP connection (its base URL, timeout and transport), so a test's transport serves them
too. Refusals raise :class:`ApiRefused` (``not_allowed``, ``stale``, ...), and a node that
does not answer :class:`Unreachable`, as every other call of the client does.
"""

from __future__ import annotations

import hashlib

import httpx

from medledger.client.http import ApiRefused, Client, Unreachable, _refusal
from medledger.client.signing import sign_request
from medledger.crypto import SigningKey

__all__ = ["get_blob", "put_blob", "signed_request"]


def signed_request(client: Client, key: SigningKey, method: str, path: str,
                   content: bytes | None = None) -> httpx.Response:
    """Send ``method path`` (with ``content``) signed with ``key``; the response, or
    :class:`ApiRefused` for a refusal and :class:`Unreachable` for no answer."""
    http = client._http  # the client's own connection: same base URL, timeout, transport
    request = http.build_request(method, path, content=content)
    sign_request(request, key)
    try:
        response = http.send(request)
    except httpx.HTTPError as e:
        raise Unreachable(f"no answer from {client.base_url}: {e}") from e
    if response.status_code >= 400:
        raise _refusal(response)
    return response


def put_blob(client: Client, key: SigningKey, ciphertext: bytes) -> str:
    """Upload ``ciphertext`` under its SHA-256; return the digest (hex)."""
    digest = hashlib.sha256(ciphertext).hexdigest()
    signed_request(client, key, "PUT", f"/v1/blobs/{digest}", ciphertext)
    return digest


def get_blob(client: Client, key: SigningKey, digest: str) -> bytes:
    """The ciphertext named ``digest`` (hex), checked against it before it is returned."""
    data = signed_request(client, key, "GET", f"/v1/blobs/{digest}").content
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise ApiRefused(502, "digest_mismatch", f"the node sent bytes whose SHA-256 is {got}, "
                                                 f"not {digest}")
    return data
