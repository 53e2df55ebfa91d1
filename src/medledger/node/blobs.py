"""The blob store: encrypted record content, kept off the ledger by every member node and
addressed by its SHA-256 (the digest the ledger holds); and its replication between the
member nodes.

::

    HOME/data/blobs/<first 2 hex>/<64 hex>   one file a blob: exactly the bytes given

The store never sees plaintext: what a client uploads is ciphertext, and a blob's bytes are
checked against its digest on every read, so a file changed on disk is never served.

Errors::

    BlobError            anything the store refuses
    ├── BlobTooLarge     more than the store's limit (``size``, ``limit``)
    ├── BlobMismatch     data whose SHA-256 is not the digest named (``expected``, ``got``)
    └── BlobTampered     a stored file no longer hashes to its name (``digest``, ``got``)

:class:`BlobPeers` pushes a blob a client gave this node to the other member nodes, and
fetches one this node lacks from them (see its docstring for the bounds).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from medledger.crypto import SigningKey
from medledger.crypto.http_signing import sign_request

__all__ = ["MAX_BLOB_BYTES", "BlobError", "BlobMismatch", "BlobPeers", "BlobStore",
           "BlobTampered", "BlobTooLarge", "sign_node_request"]

log = logging.getLogger("medledger.blobs")

MAX_BLOB_BYTES = 32 * 1024 * 1024
"""The largest blob a node keeps (an encrypted record or bundle, attachments included)."""

_TMP_PREFIX = ".tmp-"


class BlobError(Exception):
    """The blob store refused something; the message says what."""


class BlobTooLarge(BlobError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the blob is {size} bytes; this node keeps blobs of at most "
                         f"{limit} bytes")
        self.size, self.limit = size, limit


class BlobMismatch(BlobError):
    def __init__(self, expected: bytes, got: bytes) -> None:
        super().__init__(f"the data's SHA-256 is {got.hex()}, not {expected.hex()}")
        self.expected, self.got = expected, got


class BlobTampered(BlobError):
    def __init__(self, digest: bytes, got: bytes) -> None:
        super().__init__(f"the stored blob {digest.hex()} no longer hashes to its digest "
                         f"(it hashes to {got.hex()}): the file was changed on disk and is "
                         "not served")
        self.digest, self.got = digest, got


def _check_digest(digest: bytes) -> None:
    if type(digest) is not bytes or len(digest) != 32:
        raise ValueError("a blob digest is 32 bytes (a SHA-256)")


class BlobStore:
    """Content-addressed files under ``path`` (a node's ``HOME/data/blobs``).

    Writes are atomic: a temporary file beside the final one, written, fsynced, renamed
    over, and the folder fsynced; a write that fails leaves no file under the blob's name.
    """

    def __init__(self, path: str | Path, *, max_bytes: int = MAX_BLOB_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.mkdir(parents=True, exist_ok=True)
        for left in self.path.glob(f"*/{_TMP_PREFIX}*"):  # from a write cut short
            left.unlink(missing_ok=True)

    def path_of(self, digest: bytes) -> Path:
        _check_digest(digest)
        name = digest.hex()
        return self.path / name[:2] / name

    def has(self, digest: bytes) -> bool:
        """True when a file is stored under ``digest`` (not checked: :meth:`get` checks)."""
        return self.path_of(digest).is_file()

    def put(self, data: bytes) -> bytes:
        """Store ``data`` under its SHA-256 and return that digest."""
        digest = hashlib.sha256(data).digest()
        self._store(digest, data)
        return digest

    def put_expecting(self, digest: bytes, data: bytes) -> None:
        """Store ``data`` under ``digest``; :class:`BlobMismatch` unless it hashes to it."""
        _check_digest(digest)
        got = hashlib.sha256(data).digest()
        if got != digest:
            raise BlobMismatch(digest, got)
        self._store(digest, data)

    def get(self, digest: bytes) -> bytes | None:
        """The blob's bytes, checked against ``digest``; None when absent.
        :class:`BlobTampered` when the file does not hash to its name."""
        path = self.path_of(digest)
        try:
            with open(path, "rb") as f:
                data = f.read(self.max_bytes + 1)
        except FileNotFoundError:
            return None
        got = hashlib.sha256(data).digest()
        if got != digest:
            raise BlobTampered(digest, got)
        return data

    def erase(self, digest: bytes) -> bool:
        """Delete the blob; True if there was one. The file is unlinked, not overwritten:
        what it held is ciphertext, and erasing a record means destroying its content key
        (wrapped on the ledger for its readers) as well as its ciphertext everywhere, so
        overwriting the sectors would add nothing (and on SSDs and copy-on-write file
        systems could not be relied on anyway)."""
        try:
            self.path_of(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def _store(self, digest: bytes, data: bytes) -> None:
        if len(data) > self.max_bytes:
            raise BlobTooLarge(len(data), self.max_bytes)
        path = self.path_of(digest)
        with contextlib.suppress(BlobTampered):
            if self.get(digest) is not None:
                return  # already here, intact (a tampered file is replaced below)
        path.parent.mkdir(exist_ok=True)
        tmp = path.parent / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# signed requests between nodes --------------------------------------------------------------
def sign_node_request(request: httpx.Request, key: SigningKey) -> httpx.Request:
    """Sign ``request`` as a node signs its blob requests to a peer: the one profile of
    :mod:`medledger.crypto.http_signing`, with the node's key."""
    return sign_request(request, key)


# replication -----------------------------------------------------------------------------
class BlobPeers:
    """The other member nodes' APIs (``HOST:PORT`` each, from the node's ``blob_peers``),
    as this node's blob store uses them.

    - :meth:`push_later`: after a client uploads a blob here, ``PUT`` it to every peer in
      the background, signed with ``signer()`` (the node's validator key, or its node key
      when it is not a validator), each peer tried up to ``attempts`` times with doubling
      pauses from ``backoff`` seconds. A peer that refuses (a 4xx) is not asked again; at
      most ``max_pending`` pushes wait at once, and one more is dropped with a warning (the
      blob stays here, and a peer fetches it when asked for it).
    - :meth:`fetch`: ask the peers in turn for a blob this node lacks (``timeout`` seconds
      each), keep the first answer that hashes to the digest, and store it.

    ``transport``: an httpx transport for the requests (tests route them in process).
    """

    def __init__(self, store: BlobStore, signer: Callable[[], SigningKey],
                 peers: Sequence[str], *, attempts: int = 5, backoff: float = 0.5,
                 timeout: float = 10.0, max_pending: int = 1024,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.store = store
        self.signer = signer
        self.peers = tuple(peers)
        self.attempts, self.backoff, self.timeout = attempts, backoff, timeout
        self.max_pending = max_pending
        self.transport = transport
        self._tasks: set[asyncio.Task[None]] = set()
        self._shared: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> httpx.AsyncClient:
        """One client for every request of the running loop, its connections kept (making
        a client costs about 22 ms of CPU: an SSL context with the CA bundle)."""
        loop = asyncio.get_running_loop()
        if self._shared is None or self._loop is not loop:
            self._shared = httpx.AsyncClient(timeout=self.timeout, transport=self.transport)
            self._loop = loop
        return self._shared

    def push_later(self, digest: bytes) -> None:
        """Start pushing ``digest`` to every peer (in the running loop); returns at once."""
        for peer in self.peers:
            if len(self._tasks) >= self.max_pending:
                log.warning("blob %s not pushed to %s: %d pushes are waiting already",
                            digest.hex(), peer, len(self._tasks))
                continue
            task = asyncio.get_running_loop().create_task(self._push(peer, digest))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """Pushes not finished yet."""
        return len(self._tasks)

    async def _push(self, peer: str, digest: bytes) -> None:
        url = f"http://{peer}/v1/blobs/{digest.hex()}"
        pause = self.backoff
        for attempt in range(1, self.attempts + 1):
            data = await asyncio.to_thread(self.store.get, digest)
            if data is None:
                return  # erased meanwhile: nothing to push
            try:
                client = self._client()
                request = sign_node_request(client.build_request("PUT", url, content=data),
                                            self.signer())
                answer = await client.send(request)
                if answer.is_success:
                    return
                if 400 <= answer.status_code < 500 and answer.status_code not in (408, 429):
                    log.warning("peer %s refused blob %s: %s %s", peer, digest.hex(),
                                answer.status_code, answer.text[:200])
                    return
                reason = f"{answer.status_code}"
            except httpx.HTTPError as e:
                reason = f"{type(e).__name__}: {e}"
            if attempt < self.attempts:
                await asyncio.sleep(pause)
                pause *= 2
        log.warning("blob %s not pushed to %s after %d attempts (last: %s)", digest.hex(),
                    peer, self.attempts, reason)

    async def fetch(self, digest: bytes) -> bytes | None:
        """The blob from the first peer that has it, checked and stored here; None when
        none does."""
        for peer in self.peers:
            data = await self._fetch_from(peer, digest)
            if data is None:
                continue
            try:
                await asyncio.to_thread(self.store.put_expecting, digest, data)
            except BlobMismatch:
                log.warning("peer %s answered blob %s with other bytes: ignored", peer,
                            digest.hex())
                continue
            return data
        return None

    async def _fetch_from(self, peer: str, digest: bytes) -> bytes | None:
        url = f"http://{peer}/v1/blobs/{digest.hex()}"
        limit = self.store.max_bytes
        try:
            client = self._client()
            request = sign_node_request(client.build_request("GET", url), self.signer())
            answer = await client.send(request, stream=True)
            try:
                if answer.status_code != 200:
                    return None
                chunks, size = [], 0
                async for chunk in answer.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        return None
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                await answer.aclose()
        except httpx.HTTPError as e:
            log.info("peer %s did not answer for blob %s: %s", peer, digest.hex(), e)
            return None

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no push is pending (True), or ``timeout`` seconds (False)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=deadline - time.monotonic())
        return not self._tasks

    async def aclose(self) -> None:
        """Cancel the pushes still pending, and close the client's connections."""
        for task in list(self._tasks):
            task.cancel()
        if self._shared is not None and self._loop is asyncio.get_running_loop():
            await self._shared.aclose()
        self._shared = self._loop = None
