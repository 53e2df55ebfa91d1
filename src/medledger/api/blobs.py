"""Blobs: encrypted record content, uploaded and read by digest over signed requests.

- ``PUT /v1/blobs/{digest}``: a registered, active key (a member, an admin or a patient)
  uploads ciphertext whose SHA-256 is ``digest``; another member node pushes one it was
  given. This node then pushes a client's upload to its peers (:class:`BlobPeers`).
- ``GET /v1/blobs/{digest}``: the bytes, to a reader whom some app lets read them
  (``AppRegistry.may_read_blob`` at the tip's block time), or to a member node. A blob this
  node lacks is fetched from a peer first.

Every request is signed (RFC 9421, Ed25519; :mod:`medledger.client.signing` signs them).
Who signed is who asks: the signature's ``keyid`` is the reader's key. Refusals, each a 401
with a reason: ``unsigned`` (no signature), ``bad_signature`` (it does not verify, does
not cover what it must, or the body does not match its signed ``content-digest``),
``stale`` (created more than :data:`MAX_AGE_S` seconds ago, or ahead of this node's clock
by more than :data:`MAX_SKEW_S`), ``replayed`` (its nonce was seen in that window).

A member node's key is a key of the current validator set, or the CometBFT node key of a
node that genesis or governance lists as a member's (the peer filter's rule).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    algorithms,
)
from http_message_signatures.resolvers import HTTPSignatureKeyResolver

from medledger.api.errors import ApiError, error_responses
from medledger.api.schemas import json_content, obj
from medledger.crypto.http_signing import COVERED
from medledger.node import Node
from medledger.node.blobs import MAX_BLOB_BYTES, BlobStore, BlobTampered, BlobTooLarge
from medledger.node.engine import node_id_of

__all__ = ["COVERED", "MAX_AGE_S", "MAX_SKEW_S", "ReplayCache", "blobs_router"]

log = logging.getLogger("medledger.api")

MAX_AGE_S = 30
MAX_SKEW_S = 5
MAX_NONCE = 128
REPLAY_CAPACITY = 100_000
DIGEST_PATTERN = "^[0-9a-f]{64}$"



class ReplayCache:
    """The (key, nonce) pairs of accepted signatures, each remembered for ``ttl`` seconds
    (long enough that a request carrying it would be refused as stale by then). At most
    ``capacity`` of them: when that many are live, :meth:`add` says so (None) rather than
    forget one early."""

    def __init__(self, ttl: float, capacity: int = REPLAY_CAPACITY) -> None:
        self.ttl, self.capacity = ttl, capacity
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def add(self, key: str, nonce: str, now: float) -> bool | None:
        """True if new (now remembered), False if seen, None if the cache is full."""
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if (key, nonce) in self._seen:
            return False
        if len(self._seen) >= self.capacity:
            return None
        self._seen[(key, nonce)] = now + self.ttl
        return True

    def __len__(self) -> int:
        return len(self._seen)


class _HexKeys(HTTPSignatureKeyResolver):
    """A ``keyid`` is the Ed25519 public key itself, in lower-case hex."""

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        if len(key_id) != 64 or any(c not in "0123456789abcdef" for c in key_id):
            return None
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_id))


class _Verifier(HTTPMessageVerifier):
    # the times are checked after the signature, with their own codes (see _check_time)
    max_clock_skew = datetime.timedelta(days=365 * 100)


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


class SignedRequests:
    """Checks a request's signature, its age and its nonce (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.replays = ReplayCache(MAX_AGE_S + MAX_SKEW_S)
        self._verifier = _Verifier(signature_algorithm=algorithms.ED25519,
                                   key_resolver=_HexKeys())

    @staticmethod
    def require_signed(request: Request) -> None:
        if "signature" not in request.headers or "signature-input" not in request.headers:
            raise _unauthorized("unsigned", "this route needs a signed request (RFC 9421 "
                                            "HTTP Message Signatures, Ed25519, keyid = your "
                                            "key's hex); none was given")

    def signer_key(self, request: Request, body: bytes) -> bytes:
        """The key that signed ``request`` (whose body is ``body``), or a 401."""
        self.require_signed(request)
        try:
            result = self._verifier.verify(request, max_age=None, require_components=COVERED,
                                           body=body)[0]
        except HTTPMessageSignaturesException as e:
            reason = str(e) or ("the signature does not verify with the key its keyid names "
                                "(was the request changed after it was signed?)")
            raise _unauthorized("bad_signature", reason) from e
        params = result.parameters
        nonce = params.get("nonce")
        if not isinstance(nonce, str) or not 8 <= len(nonce) <= MAX_NONCE:
            raise _unauthorized("bad_signature", f"the signature needs a nonce of 8 to "
                                                 f"{MAX_NONCE} characters")
        now = self.clock()
        self._check_time(int(params["created"]), now)
        fresh = self.replays.add(params["keyid"], nonce, now)
        if fresh is None:
            raise ApiError(503, "busy", "this node is remembering too many recent nonces; "
                                        "retry in a few seconds")
        if not fresh:
            raise _unauthorized("replayed", "this signature's nonce was already used: sign "
                                            "each request afresh")
        return bytes.fromhex(params["keyid"])

    @staticmethod
    def _check_time(created: int, now: float) -> None:
        if created > now + MAX_SKEW_S:
            raise _unauthorized("stale", f"the signature was created {created - now:.0f} s "
                                         "ahead of this node's clock; check your clock")
        if now - created > MAX_AGE_S:
            raise _unauthorized("stale", f"the signature was created {now - created:.0f} s "
                                         f"ago; a request must be at most {MAX_AGE_S} s old")


# request bodies ---------------------------------------------------------------------------
async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the blob is {size} bytes or more; this node keeps "
                                      f"blobs of at most {limit} bytes")


# the routes -------------------------------------------------------------------------------
_STORED = obj({"digest": {"type": "string", "pattern": DIGEST_PATTERN},
               "size": {"type": "integer", "minimum": 0}}, title="StoredBlob")
_CODES = {"unsigned": 401, "bad_signature": 401, "stale": 401, "replayed": 401,
          "not_allowed": 403, "not_found": 404, "erased": 410, "too_large": 413,
          "digest_mismatch": 422,
          "busy": 503, "unavailable": 503, "integrity": 500}
_DIGEST = Annotated[str, Path(pattern=DIGEST_PATTERN,
                              description="the blob's SHA-256, 64 lower-case hex")]


def blobs_router(node: Node, *, clock: Callable[[], float] = time.time) -> APIRouter:
    """``/v1/blobs``: upload and read encrypted content by digest, on signed requests."""
    router = APIRouter(prefix="/v1/blobs", tags=["blobs"])
    signed = SignedRequests(clock)

    def store() -> BlobStore:
        if node.blobs is None:
            raise ApiError(503, "unavailable", "this node keeps no blob store")
        return node.blobs

    def is_node(key: bytes) -> bool:
        chain = node.chain
        return (chain.validators.power_of(key) > 0
                or chain.registry.admits_peer(chain.view(), node_id_of(key)))

    def may_upload(key: bytes) -> bool:
        chain = node.chain
        return chain.registry.may_upload_blob(chain.view(), key)

    def may_read(digest: bytes, key: bytes) -> bool:
        chain = node.chain
        return chain.registry.may_read_blob(chain.view(), digest, key, chain.next_time())

    def codes(*statuses: int) -> dict[str, int]:
        return {c: s for c, s in _CODES.items() if s in statuses}

    put_statuses = (401, 403, 410, 413, 422, 503)
    put_responses: dict[int | str, Any] = {
        201: json_content(_STORED, "stored"),
        200: json_content(_STORED, "this node had it already"),
        **error_responses(*put_statuses, codes=codes(*put_statuses)),
    }

    @router.put("/{digest}", status_code=201, responses=put_responses,
                summary="Upload encrypted content (ciphertext only) under its SHA-256",
                openapi_extra={
                    "requestBody": {"required": True, "content": {"application/octet-stream": {
                        "schema": {"type": "string", "format": "binary"}}}},
                    "x-refusal-codes": codes(*put_statuses)})
    async def put_blob(request: Request, digest: _DIGEST) -> Any:
        """The body is ciphertext whose SHA-256 is ``digest`` (else 422
        ``digest_mismatch``), at most 32 MiB (else 413 ``too_large``). The request is signed
        (RFC 9421; see the tag) by a registered, active key, or by a member node pushing
        what a client gave it (else 403 ``not_allowed``). A client's upload is then pushed
        to the other member nodes in the background. The ciphertext of erased content is
        refused (410 ``erased``), from a client or a late push from a peer alike."""
        signed.require_signed(request)
        limit = node.blobs.max_bytes if node.blobs is not None else MAX_BLOB_BYTES
        body = await _read_body(request, limit)
        key = signed.signer_key(request, body)
        blobs = store()
        from_node = is_node(key)
        if not from_node and not may_upload(key):
            raise ApiError(403, "not_allowed", f"key {key.hex()} is not a registered, active "
                                               "key of this chain, nor a member node's")
        expected = bytes.fromhex(digest)
        if not node.chain.registry.may_store_blob(node.chain.view(), expected):
            raise ApiError(410, "erased", f"blob {digest} was erased; no node stores it again")
        if hashlib.sha256(body).digest() != expected:
            raise ApiError(422, "digest_mismatch", "the body's SHA-256 is "
                                                   f"{hashlib.sha256(body).hexdigest()}, not "
                                                   f"{digest}")
        had = await asyncio.to_thread(blobs.has, expected)
        try:
            await asyncio.to_thread(blobs.put_expecting, expected, body)
        except BlobTooLarge as e:
            raise _too_large(e.size, e.limit) from e
        if not from_node and node.blob_peers is not None:
            node.blob_peers.push_later(expected)
        return JSONResponse({"digest": digest, "size": len(body)},
                            status_code=200 if had else 201)

    get_statuses = (401, 403, 404, 500, 503)
    get_responses: dict[int | str, Any] = {
        200: {"description": "the ciphertext, exactly as uploaded",
              "content": {"application/octet-stream": {
                  "schema": {"type": "string", "format": "binary"}}}},
        **error_responses(*get_statuses, codes=codes(*get_statuses)),
    }

    @router.get("/{digest}", responses=get_responses, response_class=Response,
                summary="Read encrypted content by its SHA-256",
                openapi_extra={"x-refusal-codes": codes(*get_statuses)})
    async def get_blob(request: Request, digest: _DIGEST) -> Response:
        """Answered only to a reader whom the ledger lets read it (some app's
        ``may_read_blob``, at the tip's block time; else 403 ``not_allowed``, whether or not
        this node has it), or to a member node. The bytes are checked against ``digest``
        before they are sent; a blob this node lacks is fetched from a peer first (else 404
        ``not_found``)."""
        signed.require_signed(request)
        try:
            await _read_body(request, 0)
        except ApiError:
            raise ApiError(400, "malformed", "a GET carries no body") from None
        key = signed.signer_key(request, b"")
        blobs = store()
        from_node = is_node(key)
        wanted = bytes.fromhex(digest)
        if not from_node and not await asyncio.to_thread(may_read, wanted, key):
            raise ApiError(403, "not_allowed", f"key {key.hex()} may not read blob {digest}")
        data = await _local_or_fetched(node, blobs, wanted, fetch=not from_node)
        if data is None:
            raise ApiError(404, "not_found", f"no blob {digest} on this node or its peers")
        return Response(data, media_type="application/octet-stream",
                        headers={"Cache-Control": "no-store"})

    return router


async def _local_or_fetched(node: Node, blobs: BlobStore, digest: bytes, *,
                            fetch: bool) -> bytes | None:
    """The blob from this node's store, else (with ``fetch``) from a peer. A stored file
    that no longer hashes to its digest is never served: a peer's copy replaces it, or the
    answer is 500 ``integrity``."""
    tampered: BlobTampered | None = None
    try:
        data = await asyncio.to_thread(blobs.get, digest)
    except BlobTampered as e:
        log.error("%s", e)
        tampered, data = e, None
    if data is None and fetch and node.blob_peers is not None:
        data = await node.blob_peers.fetch(digest)
    if data is None and tampered is not None:
        raise ApiError(500, "integrity", str(tampered))
    return data
