"""The blob store, signed requests, the blob routes, and replication between member nodes.

- The store (``node/blobs.py``): round trip, a file changed on disk never served, data
  that does not hash to its digest refused, erase, a failed write leaving nothing, the size
  limit, and a canary: what is on disk is exactly the ciphertext given.
- Signed requests: ``client/signing.py`` signs, ``api/blobs.py`` verifies, both with the
  real ``http_message_signatures``; one named scenario a refusal code.
- The routes over an in-process node (``tests/localchain.py``) through
  ``httpx.ASGITransport``; the reader a tiny test app lets read is the only one served.
- Replication: between two in-process nodes (pushes, fetch on a miss, bounded retries),
  and between two real ``medledger up`` processes on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from medledger.api import create_app
from medledger.api.blobs import MAX_AGE_S, ReplayCache, SignedRequests
from medledger.api.errors import install_error_handlers
from medledger.apps import App, AppRegistry, default_registry
from medledger.client.signing import SignedAuth, sign_request
from medledger.crypto import SigningKey
from medledger.node import Home
from medledger.node.blobs import (
    BlobMismatch,
    BlobPeers,
    BlobStore,
    BlobTampered,
    BlobTooLarge,
)
from medledger.state import StateView
from tests.conftest import DEMO_CHAIN_ID, DEMO_GENESIS_TIME, FAST_KDF
from tests.localchain import LocalNode, open_local
from tests.nodeproc import NodeProcess, free_port

CIPHERTEXT = bytes(range(256)) * 40 + b"\x00sealed"


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# the store ----------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "data" / "blobs")


def test_round_trip_and_layout(store: BlobStore) -> None:
    digest = store.put(CIPHERTEXT)
    assert digest == sha(CIPHERTEXT)
    assert store.has(digest) and store.get(digest) == CIPHERTEXT
    path = store.path / digest.hex()[:2] / digest.hex()
    assert store.path_of(digest) == path and path.is_file()
    assert store.get(sha(b"other")) is None and not store.has(sha(b"other"))


def test_canary_the_file_on_disk_is_exactly_the_ciphertext(store: BlobStore) -> None:
    digest = store.put(CIPHERTEXT)
    files = [p for p in store.path.rglob("*") if p.is_file()]
    assert files == [store.path_of(digest)]
    assert files[0].read_bytes() == CIPHERTEXT


def test_a_tampered_file_is_never_served(store: BlobStore) -> None:
    digest = store.put(CIPHERTEXT)
    path = store.path_of(digest)
    path.write_bytes(CIPHERTEXT[:-1] + b"X")
    with pytest.raises(BlobTampered) as refused:
        store.get(digest)
    assert refused.value.digest == digest and digest.hex() in str(refused.value)
    store.put(CIPHERTEXT)  # storing the right bytes again repairs it
    assert store.get(digest) == CIPHERTEXT


def test_data_that_does_not_hash_to_the_digest_is_refused(store: BlobStore) -> None:
    wrong = sha(b"something else")
    with pytest.raises(BlobMismatch) as refused:
        store.put_expecting(wrong, CIPHERTEXT)
    assert refused.value.expected == wrong and refused.value.got == sha(CIPHERTEXT)
    assert not store.has(wrong) and not store.has(sha(CIPHERTEXT))
    store.put_expecting(sha(CIPHERTEXT), CIPHERTEXT)
    assert store.get(sha(CIPHERTEXT)) == CIPHERTEXT


def test_erase(store: BlobStore) -> None:
    digest = store.put(CIPHERTEXT)
    assert store.erase(digest) is True
    assert not store.has(digest) and store.get(digest) is None
    assert not store.path_of(digest).exists()
    assert store.erase(digest) is False


def test_a_failed_write_leaves_no_file(store: BlobStore,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_disk(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_disk)
    with pytest.raises(OSError, match="Input/output"):
        store.put(CIPHERTEXT)
    monkeypatch.undo()
    digest = sha(CIPHERTEXT)
    assert not store.has(digest)
    assert [p for p in store.path.rglob("*") if p.is_file()] == []


def test_a_write_cut_short_is_swept_at_open(store: BlobStore) -> None:
    shard = store.path / "ab"
    shard.mkdir()
    (shard / ".tmp-0011223344556677").write_bytes(b"half a bl")
    BlobStore(store.path)
    assert list(shard.iterdir()) == []


def test_the_size_limit(tmp_path: Path) -> None:
    small = BlobStore(tmp_path / "blobs", max_bytes=100)
    small.put(b"x" * 100)
    with pytest.raises(BlobTooLarge, match="at most 100 bytes") as refused:
        small.put(b"x" * 101)
    assert (refused.value.size, refused.value.limit) == (101, 100)
    assert not small.has(sha(b"x" * 101))


def test_a_digest_is_32_bytes(store: BlobStore) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        store.has(b"\x00" * 31)


# signed requests ----------------------------------------------------------------------------
NOW = 1_800_000_000
KEY = SigningKey.from_seed(b"\x01" * 32)
OTHER = SigningKey.from_seed(b"\x02" * 32)


def signed_app(clock: Callable[[], float] = lambda: NOW) -> FastAPI:
    """An app with one signed route answering the signer's key."""
    app = FastAPI()
    install_error_handlers(app)
    checks = SignedRequests(clock)

    @app.put("/v1/blobs/{digest}")
    async def put(request: Request, digest: str) -> dict[str, str]:
        return {"key": checks.signer_key(request, await request.body()).hex()}

    return app


def request(**sign: Any) -> httpx.Request:
    built = httpx.Request("PUT", "http://node.test/v1/blobs/ab", content=b"ciphertext")
    return sign_request(built, KEY, **({"created": NOW} | sign))


def with_headers(req: httpx.Request, **changes: str) -> httpx.Request:
    headers = dict(req.headers)
    headers.update({k.replace("_", "-"): v for k, v in changes.items()})
    return httpx.Request(req.method, req.url, headers=headers, content=req.content)


def library_signed(*, claims: SigningKey = KEY, signs: SigningKey = KEY,
                   covered: tuple[str, ...] = ("@method", "@authority", "@path"),
                   nonce: str | None = "a-nonce-of-mine") -> httpx.Request:
    """A request signed by the library directly: by ``signs``' private key under the keyid
    of ``claims``, covering ``covered``, with ``nonce`` (None: none)."""
    built = httpx.Request("PUT", "http://node.test/v1/blobs/ab", content=b"ciphertext")
    resolver = MappingKeyResolver(public_keys={}, private_keys={
        claims.public_key.hex(): Ed25519PrivateKey.from_private_bytes(signs.seed)})
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=resolver).sign(
        built, key_id=claims.public_key.hex(), nonce=nonce, body=built.read(),
        covered_component_ids=covered,
        created=datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC))
    return built


def flipped_signature(req: httpx.Request) -> httpx.Request:
    label, _, value = req.headers["signature"].partition("=:")
    flipped = ("B" if value[0] != "B" else "C") + value[1:]
    return with_headers(req, signature=f"{label}=:{flipped}")


def body_changed(req: httpx.Request) -> httpx.Request:
    return httpx.Request(req.method, req.url, headers=dict(req.headers), content=b"ciphertexT")


def unsigned(req: httpx.Request) -> httpx.Request:
    headers = {k: v for k, v in req.headers.items()
               if k not in ("signature", "signature-input")}
    return httpx.Request(req.method, req.url, headers=headers, content=req.content)


SCENARIOS: dict[str, tuple[Callable[[], httpx.Request], str]] = {
    "unsigned": (lambda: unsigned(request()), "unsigned"),
    "signature bytes changed": (lambda: flipped_signature(request()), "bad_signature"),
    "signed by another key than its keyid": (lambda: library_signed(signs=OTHER),
                                             "bad_signature"),
    "body changed after signing": (lambda: body_changed(request()), "bad_signature"),
    "path changed after signing": (
        lambda: httpx.Request("PUT", "http://node.test/v1/blobs/cd",
                              headers=dict(request().headers), content=b"ciphertext"),
        "bad_signature"),
    "keyid that is no key": (lambda: with_headers(request(), signature_input=request().headers[
        "signature-input"].replace('keyid="', 'keyid="zz')), "bad_signature"),
    "no nonce": (lambda: library_signed(nonce=None), "bad_signature"),
    "a nonce too short": (lambda: request(nonce="short"), "bad_signature"),
    "covers the method only": (lambda: library_signed(covered=("@method",)),
                               "bad_signature"),
    f"older than {MAX_AGE_S} s": (lambda: request(created=NOW - MAX_AGE_S - 1), "stale"),
    "from the future": (lambda: request(created=NOW + 60), "stale"),
}


@pytest.fixture
async def signed_client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=signed_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as client:
        yield client


@pytest.mark.anyio
async def test_a_good_signed_request_passes(signed_client: httpx.AsyncClient) -> None:
    answer = await signed_client.send(request())
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"key": KEY.public_key.hex()}
    at_the_limit = await signed_client.send(request(created=NOW - MAX_AGE_S))
    assert at_the_limit.status_code == 200, at_the_limit.text


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_each_bad_request_is_refused_with_its_code(
        name: str, signed_client: httpx.AsyncClient) -> None:
    make, code = SCENARIOS[name]
    answer = await signed_client.send(make())
    assert answer.status_code == 401, answer.text
    assert answer.json()["code"] == code, answer.text
    assert answer.json()["message"]  # a reason, even where the library gives none


@pytest.mark.anyio
async def test_a_nonce_is_accepted_once(signed_client: httpx.AsyncClient) -> None:
    first = request(nonce="the-same-nonce-twice")
    again = httpx.Request(first.method, first.url, headers=dict(first.headers),
                          content=first.content)
    assert (await signed_client.send(first)).status_code == 200
    replay = await signed_client.send(again)
    assert (replay.status_code, replay.json()["code"]) == (401, "replayed")
    other_key = sign_request(httpx.Request("PUT", "http://node.test/v1/blobs/ab",
                                           content=b"ciphertext"), OTHER, created=NOW,
                             nonce="the-same-nonce-twice")
    assert (await signed_client.send(other_key)).status_code == 200  # nonces are per key


def test_the_replay_cache_is_bounded_and_forgets_in_time() -> None:
    cache = ReplayCache(ttl=10, capacity=2)
    assert cache.add("k", "a", now=0) is True
    assert cache.add("k", "a", now=5) is False
    assert cache.add("k", "b", now=6) is True
    assert cache.add("k", "c", now=7) is None  # full of live nonces: says so
    assert cache.add("k", "a", now=10) is True  # "a" expired at 10
    assert len(cache) == 2


# the routes ---------------------------------------------------------------------------------
READER = SigningKey.from_seed(b"\x03" * 32)


class GrantsOne(App):
    """A test app that lets one key read every blob."""

    name: ClassVar[str] = "blobgrant"
    prefixes: ClassVar[tuple[str, ...]] = ()
    seen: ClassVar[list[tuple[bytes, bytes, int]]] = []

    def may_read_blob(self, view: StateView, digest: bytes, reader: bytes, time_ms: int
                      ) -> bool:
        GrantsOne.seen.append((digest, reader, time_ms))
        return reader == READER.public_key

    def routes(self, host: Any) -> Any:
        return None

    def commands(self, host: Any) -> Any:
        return None


@dataclass
class Member:
    """An in-process node with its API and blob store."""

    home: Home
    node: LocalNode
    app: FastAPI

    @property
    def blobs(self) -> BlobStore:
        assert self.node.blobs is not None
        return self.node.blobs

    def client(self, key: SigningKey | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                 base_url="http://node.test",
                                 auth=SignedAuth(key) if key is not None else None)


def open_member(path: Path, monkeypatch: pytest.MonkeyPatch, *, like: Home | None = None
                ) -> Member:
    """A demo node whose registry also holds :class:`GrantsOne`; with ``like``, a copy of
    that home (the same genesis and validator key) with a store of its own."""
    if like is None:
        home = Home.init(path, DEMO_CHAIN_ID, kdf_params=FAST_KDF, demo=True,
                         genesis_time=DEMO_GENESIS_TIME)
    else:
        import shutil

        shutil.copytree(like.path, path, ignore=shutil.ignore_patterns("data"))
        (path / "data").mkdir()
        home = Home(path)
    registry = AppRegistry([*default_registry().apps, GrantsOne()])
    monkeypatch.setattr("medledger.node.node.default_registry", lambda: registry)
    node = open_local(home)
    node.blobs = BlobStore(home.path / "data" / "blobs")
    return Member(home, node, create_app(node, run_node=False))


@pytest.fixture
def member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Member]:
    m = open_member(tmp_path / "node", monkeypatch)
    yield m
    m.node.close()


def admin(m: Member) -> SigningKey:
    return m.home.member_keys("admin").signing


URL = f"/v1/blobs/{sha(CIPHERTEXT).hex()}"


@pytest.mark.anyio
async def test_upload_then_read_by_the_granted_reader(member: Member) -> None:
    async with member.client(admin(member)) as http:
        stored = await http.put(URL, content=CIPHERTEXT)
        again = await http.put(URL, content=CIPHERTEXT)
    assert stored.status_code == 201, stored.text
    assert stored.json() == {"digest": sha(CIPHERTEXT).hex(), "size": len(CIPHERTEXT)}
    assert again.status_code == 200
    assert member.blobs.path_of(sha(CIPHERTEXT)).read_bytes() == CIPHERTEXT  # canary
    GrantsOne.seen.clear()
    async with member.client(READER) as http:
        answer = await http.get(URL)
    assert answer.status_code == 200, answer.text
    assert answer.content == CIPHERTEXT
    assert answer.headers["content-type"] == "application/octet-stream"
    # asked with the reader's key, at the tip's block time
    assert GrantsOne.seen == [(sha(CIPHERTEXT), READER.public_key, DEMO_GENESIS_TIME)]


@pytest.mark.anyio
async def test_who_may_not_read_is_refused_whether_or_not_it_is_here(member: Member) -> None:
    member.blobs.put(CIPHERTEXT)
    absent = f"/v1/blobs/{sha(b'absent').hex()}"
    async with member.client(admin(member)) as http:  # registered, but not granted
        present, missing = await http.get(URL), await http.get(absent)
    for answer in (present, missing):
        assert (answer.status_code, answer.json()["code"]) == (403, "not_allowed")
        assert CIPHERTEXT not in answer.content
    async with member.client(READER) as http:
        answer = await http.get(absent)
    assert (answer.status_code, answer.json()["code"]) == (404, "not_found")


@pytest.mark.anyio
async def test_upload_refusals(member: Member) -> None:
    stranger = SigningKey.generate()
    async with member.client(stranger) as http:
        not_registered = await http.put(URL, content=CIPHERTEXT)
    async with member.client(admin(member)) as http:
        mismatch = await http.put(URL, content=CIPHERTEXT + b"!")
    async with member.client() as http:
        unsigned = await http.put(URL, content=CIPHERTEXT)
    assert (not_registered.status_code, not_registered.json()["code"]) == (403, "not_allowed")
    assert (mismatch.status_code, mismatch.json()["code"]) == (422, "digest_mismatch")
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "unsigned")
    assert [p for p in member.blobs.path.rglob("*") if p.is_file()] == []


@pytest.mark.anyio
async def test_too_large_is_413(member: Member) -> None:
    member.node.blobs = BlobStore(member.blobs.path, max_bytes=1000)
    big = b"y" * 1001
    async with member.client(admin(member)) as http:
        answer = await http.put(f"/v1/blobs/{sha(big).hex()}", content=big)
    assert (answer.status_code, answer.json()["code"]) == (413, "too_large")
    assert not member.blobs.has(sha(big))


@pytest.mark.anyio
async def test_a_tampered_blob_is_not_served(member: Member) -> None:
    member.blobs.put(CIPHERTEXT)
    member.blobs.path_of(sha(CIPHERTEXT)).write_bytes(b"tampered" + CIPHERTEXT[8:])
    async with member.client(READER) as http:
        answer = await http.get(URL)
    assert (answer.status_code, answer.json()["code"]) == (500, "integrity")
    assert sha(CIPHERTEXT).hex() in answer.json()["message"]
    assert b"tampered" not in answer.content


@pytest.mark.anyio
async def test_a_member_node_may_read_and_push(member: Member) -> None:
    """The node's validator key is a member node's: it may push and read any blob."""
    async with member.client(member.node.key) as http:
        pushed = await http.put(URL, content=CIPHERTEXT)
        read = await http.get(URL)
    assert pushed.status_code == 201 and read.content == CIPHERTEXT


@pytest.mark.anyio
async def test_the_routes_are_in_the_openapi_document(member: Member) -> None:
    async with member.client() as http:
        document = (await http.get("/openapi.json")).json()
    path = document["paths"]["/v1/blobs/{digest}"]
    assert {"401", "403", "413", "422"} <= set(path["put"]["responses"])
    assert {"200", "401", "403", "404"} <= set(path["get"]["responses"])
    assert "application/octet-stream" in path["get"]["responses"]["200"]["content"]
    assert "`replayed`" in path["get"]["responses"]["401"]["description"]


# replication between two in-process nodes -----------------------------------------------------
class Hosts(httpx.AsyncBaseTransport):
    """Routes each request to the ASGI app of its host."""

    def __init__(self, apps: dict[str, FastAPI | httpx.AsyncBaseTransport]) -> None:
        self.transports = {host: app if isinstance(app, httpx.AsyncBaseTransport)
                           else httpx.ASGITransport(app=app) for host, app in apps.items()}
        self.seen: list[tuple[str, str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.netloc.decode()
        self.seen.append((host, request.method, request.url.path))
        return await self.transports[host].handle_async_request(request)


@pytest.fixture
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Member, Member]]:
    a = open_member(tmp_path / "a", monkeypatch)
    b = open_member(tmp_path / "b", monkeypatch, like=a.home)
    hosts = Hosts({"a.test": a.app, "b.test": b.app})
    for m, peer in ((a, "b.test"), (b, "a.test")):
        m.node.blob_peers = BlobPeers(m.blobs, lambda m=m: m.node.key, [peer], backoff=0.01,
                                      transport=hosts)
    yield a, b
    a.node.close()
    b.node.close()


@pytest.mark.anyio
async def test_an_upload_is_pushed_to_the_peers(pair: tuple[Member, Member]) -> None:
    a, b = pair
    async with a.client(admin(a)) as http:
        assert (await http.put(URL, content=CIPHERTEXT)).status_code == 201
    assert a.node.blob_peers is not None and b.node.blob_peers is not None
    assert await a.node.blob_peers.wait_idle(10)
    assert b.blobs.path_of(sha(CIPHERTEXT)).read_bytes() == CIPHERTEXT
    assert b.node.blob_peers.pending == 0  # a node's push is not pushed on again


@pytest.mark.anyio
async def test_a_blob_missing_here_is_fetched_from_a_peer(pair: tuple[Member, Member]) -> None:
    a, b = pair
    b.blobs.put(CIPHERTEXT)
    async with a.client(READER) as http:
        answer = await http.get(URL)
    assert answer.status_code == 200 and answer.content == CIPHERTEXT
    assert a.blobs.get(sha(CIPHERTEXT)) == CIPHERTEXT  # kept here now
    b.blobs.path_of(sha(CIPHERTEXT)).write_bytes(b"tampered")
    other = b"another ciphertext"
    b.blobs.put(other)
    b.blobs.path_of(sha(other)).write_bytes(b"tampered")
    async with a.client(READER) as http:
        answer = await http.get(f"/v1/blobs/{sha(other).hex()}")
    assert (answer.status_code, answer.json()["code"]) == (404, "not_found")
    assert not a.blobs.has(sha(other))


@pytest.mark.anyio
async def test_a_tampered_blob_is_replaced_by_a_peers_copy(pair: tuple[Member, Member]) -> None:
    a, b = pair
    a.blobs.put(CIPHERTEXT)
    b.blobs.put(CIPHERTEXT)
    a.blobs.path_of(sha(CIPHERTEXT)).write_bytes(b"tampered")
    async with a.client(READER) as http:
        answer = await http.get(URL)
    assert answer.status_code == 200 and answer.content == CIPHERTEXT
    assert a.blobs.path_of(sha(CIPHERTEXT)).read_bytes() == CIPHERTEXT


@pytest.mark.anyio
async def test_a_peer_answering_other_bytes_is_ignored(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    liar = httpx.MockTransport(lambda request: httpx.Response(200, content=b"not it"))
    peers = BlobPeers(store, lambda: KEY, ["liar.test"], transport=Hosts({"liar.test": liar}))
    assert await peers.fetch(sha(CIPHERTEXT)) is None
    assert not store.has(sha(CIPHERTEXT))


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "tries"), [(503, 3), (403, 1), (201, 1)])
async def test_pushes_are_retried_a_bounded_number_of_times(
        tmp_path: Path, status: int, tries: int) -> None:
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(CIPHERTEXT)
    bodies: list[bytes] = []

    def peer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        assert "signature" in request.headers and "content-digest" in request.headers
        return httpx.Response(status)

    peers = BlobPeers(store, lambda: KEY, ["peer.test"], attempts=3, backoff=0.01,
                      transport=Hosts({"peer.test": httpx.MockTransport(peer)}))
    peers.push_later(digest)
    assert await peers.wait_idle(10)
    assert bodies == [CIPHERTEXT] * tries


def test_blob_peers_in_the_config(tmp_path: Path) -> None:
    from medledger.node.config import ConfigError, NodeConfig

    NodeConfig(blob_peers=("127.0.0.1:26701", "node2.example:443")).save(tmp_path)
    assert NodeConfig.load(tmp_path).blob_peers == ("127.0.0.1:26701", "node2.example:443")
    assert NodeConfig.load(tmp_path) == NodeConfig(
        blob_peers=("127.0.0.1:26701", "node2.example:443"))
    (tmp_path / "config.json").write_text('{"blob_peers": ["no-port"]}')
    with pytest.raises(ConfigError, match="HOST:PORT"):
        NodeConfig.load(tmp_path)
    (tmp_path / "config.json").write_text('{"blob_peers": "127.0.0.1:1"}')
    with pytest.raises(ConfigError, match="blob_peers"):
        NodeConfig.load(tmp_path)


# replication between two real nodes --------------------------------------------------------
def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.mark.processes
@pytest.mark.timeout(240)
def test_replication_between_two_real_nodes(tmp_path: Path) -> None:
    from medledger.node.consortium import Consortium

    consortium = Consortium.init(tmp_path / "net", "blob-chain", 2, demo=False,
                                 kdf_params=FAST_KDF, engine=True, block_interval_ms=200,
                                 ports=[(free_port(), free_port()) for _ in range(2)])
    homes = [Home(n.home) for n in consortium.nodes]
    assert homes[0].config().blob_peers == (consortium.nodes[1].api,)
    nodes = [NodeProcess(h) for h in homes]
    try:
        for node in nodes:
            node.start(timeout=60, proven=False)
        uploader = homes[0].member_keys("admin").signing
        with httpx.Client(base_url=nodes[0].url, auth=SignedAuth(uploader),
                          timeout=10) as http:
            stored = http.put(URL, content=CIPHERTEXT)
        assert stored.status_code == 201, stored.text
        copy = homes[1].path / "data" / "blobs" / URL[-64:][:2] / URL[-64:]
        _wait(copy.is_file, 30, "node1 to hold the blob")
        assert copy.read_bytes() == CIPHERTEXT  # canary: exactly the ciphertext
        # node0's validator key reads it from node1; the uploader, granted by no app, may not
        with httpx.Client(base_url=nodes[1].url, timeout=10) as http:
            as_node = http.get(URL, auth=SignedAuth(homes[0].validator_key()))
            as_uploader = http.get(URL, auth=SignedAuth(uploader))
        assert as_node.status_code == 200 and as_node.content == CIPHERTEXT
        assert (as_uploader.status_code, as_uploader.json()["code"]) == (403, "not_allowed")
    finally:
        for node in nodes:
            node.stop()


def test_wall_clock_signing_is_accepted_now() -> None:
    """A request signed with the default ``created`` (the wall clock) is fresh for a node
    on the wall clock: the two sides agree on seconds since the epoch."""
    app = signed_app(clock=time.time)

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://node.test") as client:
            return await client.put("/v1/blobs/ab", content=b"x", auth=SignedAuth(KEY))

    answer = asyncio.run(send())
    assert answer.status_code == 200, answer.text
