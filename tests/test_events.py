"""Events: committed with each result and proven by the results root; listed by type,
attribute and height; streamed as Server-Sent Events that resume by event id, across a node
restart, exactly once; and seen through the SDK and the ``medledger events`` commands.

In-process tests go through ``httpx.ASGITransport`` (blocks are committed by the demo
node's local chain, ``node.produce_block()``) or call the ASGI app directly where a stream
must stay open; the tests marked ``processes`` run a real ``medledger up`` on 127.0.0.1 and
stop it by its pid.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

import medledger.cli.events as cli_events
from medledger.api import create_app
import medledger.api.events as events_module
from medledger.api.events import events_router
from medledger.client import ApiRefused, Client, Unreachable, VerificationFailed, verify_tx_answer
from medledger.client.http import _sse_frames
from medledger.crypto import DEFAULT_SUITE, EncryptionKey, SigningKey
from medledger.ledger import Event, Transaction
from medledger.node import Home, Node
from tests.nodeproc import NodeProcess, make_home

CHAIN = "test-chain"  # the conftest's demo chain
PROC_CHAIN = "proc-chain"  # tests.nodeproc's chain
JSON = {"content-type": "application/json"}
ENC_KEY = EncryptionKey.generate(DEFAULT_SUITE).public_bytes().hex()


def digest(n: int) -> str:
    return hashlib.sha256(f"event document {n}".encode()).hexdigest()


def anchor(key: SigningKey, nonce: int, n: int, chain: str = CHAIN) -> Transaction:
    return Transaction.create(key, chain, "ledger.anchor", nonce,
                              {"digest": digest(n), "label": f"doc{n}"})


def register(admin: SigningKey, nonce: int, org: str, role: str = "clinician"
             ) -> tuple[Transaction, str]:
    member = SigningKey.generate().public_key.hex()
    tx = Transaction.create(admin, CHAIN, "identity.member.register", nonce, {
        "org": org, "key": member, "role": role, "name": f"member of {org}",
        "enc_key": ENC_KEY, "enc_suite": DEFAULT_SUITE})
    return tx, member


def commit(node: Node, *txs: Transaction) -> int:
    """Submit ``txs`` and commit them in one block of the demo node's local chain (which
    then commits the empty block that signs its app hash, as CometBFT does); return the
    height of the block that holds them."""
    for tx in txs:
        result = node.submit(tx)
        assert result.accepted, result
    block = node.produce_block()
    assert block is not None and block.tx_ids == [tx.tx_id for tx in txs]
    return int(block.height)


@pytest.fixture
def hospital(demo_home: Home) -> SigningKey:
    """The admin key of the demo organisation st-mary."""
    return demo_home.member_keys("st-mary").signing


@pytest.fixture
def history(demo_node: Node, demo_admin_key: SigningKey, hospital: SigningKey
            ) -> dict[str, Any]:
    """Three blocks of transactions, at ``heights`` (an empty block follows each, signing
    its app hash). The first: anchors doc1, doc2 (local admin) and a refused second anchor
    of doc1 (st-mary). The second: a member registered by st-mary, anchor doc3 (st-mary).
    The third: a member registered by the local admin, anchor doc4 (local admin). Events
    1-6."""
    refused = anchor(hospital, 1, 1)
    heights = [commit(demo_node, anchor(demo_admin_key, 1, 1), anchor(demo_admin_key, 2, 2),
                      refused)]
    reg_mary, mary_member = register(hospital, 2, "st-mary")  # a refused tx spends its nonce
    heights.append(commit(demo_node, reg_mary, anchor(hospital, 3, 3)))
    reg_local, local_member = register(demo_admin_key, 3, "local", role="auditor")
    doc4 = anchor(demo_admin_key, 4, 4)
    heights.append(commit(demo_node, reg_local, doc4))
    assert heights[0] == 1 and heights == sorted(set(heights))
    return {"refused": refused.tx_id.hex(), "mary_member": mary_member,
            "local_member": local_member, "doc4": doc4.tx_id.hex(),
            "reg_mary": reg_mary.tx_id.hex(), "heights": heights}


async def events(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await api.get("/v1/events", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# committed with the result, proven by the results root ---------------------------------------
@pytest.mark.anyio
async def test_events_are_committed_in_the_result_and_verify(
        api: httpx.AsyncClient, demo_node: Node, demo_admin_key: SigningKey) -> None:
    tx = anchor(demo_admin_key, 1, 1)
    commit(demo_node, tx)
    expected = Event.of("anchor.anchored", digest=digest(1),
                        sender=demo_admin_key.public_key.hex())

    stored = demo_node.store.get_tx(tx.tx_id)
    assert stored is not None and json.loads(stored.events) == [expected.to_dict()]

    answer = (await api.get(f"/v1/txs/{tx.tx_id.hex()}")).json()
    assert answer["events"] == [expected.to_dict()]
    checked = verify_tx_answer(answer, demo_node.chain.genesis.validators, CHAIN)
    assert checked.result.events == (expected,)

    listed = (await events(api))["events"]
    assert listed == [{"id": 1, "height": 1, "tx_index": 0, "tx_id": tx.tx_id.hex(),
                       "type": "anchor.anchored", "attrs": expected.to_dict()["attrs"]}]


def _tamper_digest(answer: dict[str, Any]) -> dict[str, Any]:
    event = answer["events"][0]
    return {**answer, "events": [{**event, "attrs": {**event["attrs"], "digest": "ee" * 32}}]}


TAMPERS = {
    "an attribute changed": _tamper_digest,
    "the events dropped": lambda a: {**a, "events": []},
    "an event added": lambda a: {**a, "events": a["events"] + [
        {"type": "anchor.anchored", "attrs": {"digest": "00" * 32}}]},
    "the type changed": lambda a: {**a, "events": [{**a["events"][0],
                                                     "type": "anchor.removed"}]},
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", TAMPERS)
async def test_a_tampered_event_fails_verification(
        name: str, api: httpx.AsyncClient, demo_node: Node, demo_admin_key: SigningKey) -> None:
    txs = [anchor(demo_admin_key, n, n) for n in (1, 2, 3)]
    commit(demo_node, *txs)
    answer = (await api.get(f"/v1/txs/{txs[1].tx_id.hex()}")).json()
    verify_tx_answer(answer, demo_node.chain.genesis.validators, CHAIN)
    with pytest.raises(VerificationFailed):
        verify_tx_answer(TAMPERS[name](answer), demo_node.chain.genesis.validators, CHAIN)


@pytest.mark.anyio
async def test_a_rejected_transaction_has_no_events(
        api: httpx.AsyncClient, demo_node: Node, history: dict[str, Any]) -> None:
    answer = (await api.get(f"/v1/txs/{history['refused']}")).json()
    assert (answer["code"], answer["events"]) == ("exists", [])
    checked = verify_tx_answer(answer, demo_node.chain.genesis.validators, CHAIN)
    assert checked.result.events == ()
    listed = (await events(api, limit=1000))["events"]
    assert history["refused"] not in {e["tx_id"] for e in listed}
    assert [e["tx_index"] for e in listed if e["height"] == 1] == [0, 1]


# listing -------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_list_filters_by_type_attribute_and_height(
        api: httpx.AsyncClient, demo_admin_key: SigningKey, hospital: SigningKey,
        history: dict[str, Any]) -> None:
    first, second, third = history["heights"]
    everything = (await events(api))["events"]
    assert [e["id"] for e in everything] == [1, 2, 3, 4, 5, 6]
    assert [e["height"] for e in everything] == [first, first, second, second, third, third]

    anchors = (await events(api, type="anchor.anchored"))["events"]
    assert [e["attrs"]["digest"] for e in anchors] == [digest(n) for n in (1, 2, 3, 4)]

    registered = (await events(api, type="identity.member_registered"))["events"]
    assert [(e["attrs"]["org"], e["attrs"]["member"]) for e in registered] == [
        ("st-mary", history["mary_member"]), ("local", history["local_member"])]
    assert registered[0]["tx_id"] == history["reg_mary"]

    by_org = (await events(api, org="st-mary"))["events"]
    assert [e["id"] for e in by_org] == [3]
    by_two = (await events(api, type="identity.member_registered", org="local",
                           role="auditor"))["events"]
    assert [e["attrs"]["member"] for e in by_two] == [history["local_member"]]
    assert (await events(api, org="local", role="clinician"))["events"] == []
    mary = hospital.public_key.hex()
    by_sender = (await events(api, type="anchor.anchored", sender=mary))["events"]
    assert [e["attrs"]["digest"] for e in by_sender] == [digest(3)]

    late = (await events(api, from_height=third))["events"]
    assert [e["id"] for e in late] == [5, 6]
    assert late[1]["tx_id"] == history["doc4"]
    assert (await events(api, from_height=third + 1))["events"] == []
    late_anchors = (await events(api, from_height=second, type="anchor.anchored",
                                 sender=demo_admin_key.public_key.hex()))["events"]
    assert [e["attrs"]["digest"] for e in late_anchors] == [digest(4)]


@pytest.mark.anyio
async def test_list_pages_with_after(api: httpx.AsyncClient, history: dict[str, Any]) -> None:
    seen: list[int] = []
    after, pages = 0, 0
    while after is not None and pages < 10:  # bounded
        page = await events(api, after=after, limit=4)
        seen.extend(e["id"] for e in page["events"])
        after, pages = page["next"], pages + 1
    assert seen == [1, 2, 3, 4, 5, 6] and pages == 2
    page = await events(api, type="anchor.anchored", after=0, limit=2)
    assert ([e["id"] for e in page["events"]], page["next"]) == ([1, 2], 2)
    page = await events(api, type="anchor.anchored", after=2, limit=2)
    assert ([e["id"] for e in page["events"]], page["next"]) == ([4, 6], 6)
    assert await events(api, type="anchor.anchored", after=6, limit=2) == {
        "events": [], "next": None}
    assert (await events(api, after=99))["events"] == []


LIST_REFUSALS = {
    "a name that is no attribute name": ({"Org": "x"}, 400, "neither a known one"),
    "a too long attribute name": ({"a" * 33: "x"}, 400, "attribute name"),
    "a too long value": ({"org": "x" * 513}, 400, "at most 512"),
    "a type that is no event type": ({"type": "anchor"}, 400, "type"),
    "limit 0": ({"limit": 0}, 422, "limit"),
    "limit above 1000": ({"limit": 1001}, 422, "limit"),
    "a negative after": ({"after": -1}, 422, "after"),
    "after not a number": ({"after": "x"}, 422, "after"),
    "too many filters": ({f"a{n}": "x" for n in range(9)}, 400, "at most 8"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", LIST_REFUSALS)
async def test_list_refuses_bad_filters_plainly(name: str, api: httpx.AsyncClient) -> None:
    params, status, words = LIST_REFUSALS[name]
    response = await api.get("/v1/events", params=params)
    # 422: the framework's check of a typed parameter (the app may answer 400 for some)
    assert response.status_code in ((400, 422) if status == 422 else (400,))
    assert response.json()["code"] == "malformed"
    assert words in response.json()["message"]


@pytest.mark.anyio
async def test_a_repeated_attribute_filter_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/events?org=a&org=b")
    assert (response.status_code, response.json()["code"]) == (400, "malformed")
    assert "twice" in response.json()["message"]


@pytest.mark.anyio
async def test_openapi_documents_attribute_filters(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    for path in ("/v1/events", "/v1/events/stream"):
        operation = spec["paths"][path]["get"]
        assert "any other query parameter" in operation["description"]
        names = {p["name"] for p in operation["parameters"]}
        assert {"type", "from_height", "attrs"} <= names
    stream = spec["paths"]["/v1/events/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert "Last-Event-ID" in {p["name"] for p in stream["parameters"]}


# the stream: refusals before it starts -------------------------------------------------------
STREAM_REFUSALS = {
    "Last-Event-ID abc": ({"last-event-id": "abc"}, {}, "not an event id"),
    "Last-Event-ID from the future": ({"last-event-id": "999999"}, {}, "from the future"),
    "Last-Event-ID negative": ({"last-event-id": "-1"}, {}, "not an event id"),
    "Last-Event-ID one past the last": ({"last-event-id": "7"}, {}, "last event is 6"),
    "last_event_id abc": ({}, {"last_event_id": "abc"}, "not an event id"),
    "last_event_id from the future": ({}, {"last_event_id": "999999"}, "from the future"),
    "a bad attribute name": ({}, {"Org": "x"}, "neither a known one"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", STREAM_REFUSALS)
async def test_stream_refuses_a_malformed_or_future_id_before_it_starts(
        name: str, api: httpx.AsyncClient, history: dict[str, Any]) -> None:
    headers, params, words = STREAM_REFUSALS[name]
    response = await api.get("/v1/events/stream", headers=headers, params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "malformed" and words in body["message"], body


# the stream in process: wakes on commit, keeps alive, ends with the node ----------------------
class AsgiStream:
    """A GET of the stream, straight through the ASGI app; ``chunks`` fill as it sends."""

    def __init__(self, app: FastAPI, path: str, headers: dict[str, str] | None = None) -> None:
        self.app, self.path = app, path
        self.headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.status: int | None = None
        self.disconnect = asyncio.Event()

    async def run(self) -> None:
        path, _, query = self.path.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
                 "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
                 "headers": self.headers, "client": ("127.0.0.1", 1),
                 "server": ("node.test", 80)}
        sent_request = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body" and message.get("body"):
                await self.chunks.put(message["body"])

        await self.app(scope, receive, send)

    async def read_until(self, needle: bytes, timeout: float = 5.0) -> bytes:
        got = b""
        async with asyncio.timeout(timeout):
            while needle not in got:
                got += await self.chunks.get()
        return got


@pytest.mark.anyio
async def test_stream_wakes_on_commit_and_ends_when_the_node_stops(
        demo_node: Node, demo_admin_key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "_POLL", 30.0)  # only the notification can wake it
    app = FastAPI()
    app.include_router(events_router(demo_node, keepalive=60))
    commit(demo_node, anchor(demo_admin_key, 1, 1))
    stream = AsgiStream(app, "/v1/events/stream", {"Last-Event-ID": "0"})
    task = asyncio.create_task(stream.run())
    try:
        first = await stream.read_until(digest(1).encode())
        assert first.startswith(b"retry: 2000\nid: 0\n\n")
        assert b"id: 1\nevent: anchor.anchored\ndata: {" in first
        assert stream.status == 200
        await asyncio.sleep(0.1)  # the stream waits now
        height = commit(demo_node, anchor(demo_admin_key, 2, 2))
        frame = await stream.read_until(digest(2).encode(), 3.0)
        data = json.loads(frame.split(b"data: ")[1].split(b"\n")[0])
        assert (data["id"], data["height"], data["attrs"]["digest"]) == (2, height, digest(2))
        demo_node.stop()
        async with asyncio.timeout(5):
            await task  # the stream ended by itself
    finally:
        stream.disconnect.set()
        if not task.done():
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


@pytest.mark.anyio
async def test_stream_sends_keep_alives_while_idle(demo_node: Node) -> None:
    app = FastAPI()
    app.include_router(events_router(demo_node, keepalive=0.1))
    stream = AsgiStream(app, "/v1/events/stream")
    task = asyncio.create_task(stream.run())
    try:
        got = await stream.read_until(b": keep-alive\n\n: keep-alive\n\n", 3.0)
        assert got.startswith(b"retry: 2000\nid: 0\n\n")
    finally:
        stream.disconnect.set()
        async with asyncio.timeout(5):
            await task


@pytest.mark.anyio
async def test_stream_ends_when_the_client_leaves(
        demo_node: Node, demo_admin_key: SigningKey) -> None:
    app = FastAPI()
    app.include_router(events_router(demo_node))
    stream = AsgiStream(app, "/v1/events/stream?type=anchor.anchored")
    task = asyncio.create_task(stream.run())
    await stream.read_until(b"id: 0\n")  # without a cursor: from the next new event on
    commit(demo_node, anchor(demo_admin_key, 1, 1))
    await stream.read_until(digest(1).encode())
    stream.disconnect.set()
    async with asyncio.timeout(5):
        await task


@pytest.mark.anyio
async def test_wait_new_block(demo_node: Node, demo_admin_key: SigningKey) -> None:
    started = time.monotonic()
    assert await demo_node.wait_new_block(0, 0.05) == 0
    assert 0.04 <= time.monotonic() - started < 1.0
    waiter = asyncio.create_task(demo_node.wait_new_block(0, 5.0))
    await asyncio.sleep(0.02)
    assert commit(demo_node, anchor(demo_admin_key, 1, 1)) == 1
    tip = demo_node.chain.height  # block 1, and the empty block signing its app hash
    async with asyncio.timeout(1):
        assert await waiter == tip
    assert await demo_node.wait_new_block(0, 5.0) == tip  # already above: at once
    waiter = asyncio.create_task(demo_node.wait_new_block(tip, 5.0))
    await asyncio.sleep(0.02)
    demo_node.stop()
    async with asyncio.timeout(1):
        assert await waiter == tip


# the SDK: SSE parsing and reconnection, against canned streams --------------------------------
def test_sse_frames_parse_as_the_specification_says() -> None:
    lines = [": hello", "", "retry: 2000", "id: 0", "", "id: 1", "event: a.b", "data: {",
             'data:"x": 1}', "unknown: field", "", "data: no id", "", "id: 2", "data: cut off"]
    frames = list(_sse_frames(lines))
    assert [(f.id, f.event, f.data, f.comment) for f in frames] == [
        (None, None, None, True), ("0", None, None, False), ("1", "a.b", '{\n"x": 1}', False),
        (None, None, "no id", False)]


def _event(seq: int) -> dict[str, Any]:
    return {"id": seq, "height": seq, "tx_index": 0, "tx_id": "ab" * 32,
            "type": "anchor.anchored", "attrs": {"label": f"doc{seq}"}}


def _frames(*seqs: int, start: int | None = None) -> list[bytes]:
    out = [] if start is None else [f"retry: 2000\nid: {start}\n\n".encode()]
    for seq in seqs:
        out.append(f"id: {seq}\nevent: anchor.anchored\ndata: {json.dumps(_event(seq))}"
                   f"\n\n".encode())
    return out


class Dropping(httpx.SyncByteStream):
    """Sends its chunks, then fails as a dropped connection does (or ends, without error)."""

    def __init__(self, chunks: list[bytes], error: bool = True) -> None:
        self.chunks, self.error = chunks, error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.error:
            raise httpx.ReadError("connection reset")


def _sse(stream: httpx.SyncByteStream) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)


def test_stream_events_reconnects_with_last_event_id_and_yields_each_once() -> None:
    seen_headers: list[str | None] = []
    answers = [
        # half of event 3 arrives before the connection drops: it must not be yielded
        lambda: _sse(Dropping([*_frames(1, 2, start=0), b"id: 3\nevent: anchor.anch"])),
        lambda: httpx.Response(503, json={"code": "unavailable", "message": "starting"}),
        lambda: (_ for _ in ()).throw(httpx.ConnectError("refused")),
        # the node sends 2 again (it must not repeat), then 3 and 4, then ends cleanly
        lambda: _sse(Dropping([*_frames(2, 3, 4, start=1), b": keep-alive\n\n"], error=False)),
        lambda: _sse(Dropping(_frames(5, 6, start=4))),
    ]

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/events/stream"
        assert request.url.params.get("type") == "anchor.anchored"
        assert request.url.params.get("org") == "st-mary"
        seen_headers.append(request.headers.get("last-event-id"))
        return answers[len(seen_headers) - 1]()

    retried: list[str] = []
    with Client("http://node.test", transport=httpx.MockTransport(handle)) as client:
        got = []
        for event in client.stream_events("anchor.anchored", {"org": "st-mary"},
                                          last_event_id=0, backoff=0.001,
                                          on_retry=lambda e, d: retried.append(type(e).__name__)):
            got.append(event["id"])
            if len(got) == 6:
                break
    assert got == [1, 2, 3, 4, 5, 6]
    assert got == sorted(set(got))
    assert seen_headers == ["0", "2", "2", "2", "4"]
    assert retried == ["ReadError", "ApiRefused", "ConnectError", "Unreachable"]


def test_stream_events_adopts_the_servers_starting_id() -> None:
    """Without an id, the first frame names where the stream starts; a reconnection before
    any event came resumes from there, so nothing committed in between is missed."""
    seen_headers: list[str | None] = []
    answers = [lambda: _sse(Dropping(_frames(start=41))),
               lambda: _sse(Dropping(_frames(42)))]

    def handle(request: httpx.Request) -> httpx.Response:
        seen_headers.append(request.headers.get("last-event-id"))
        return answers[len(seen_headers) - 1]()

    with Client("http://node.test", transport=httpx.MockTransport(handle)) as client:
        stream = client.stream_events(backoff=0.001)
        assert next(stream)["id"] == 42
        stream.close()
    assert seen_headers == [None, "41"]


def test_stream_events_gives_up_after_its_retries_and_raises_refusals() -> None:
    calls = 0

    def down(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused")

    with Client("http://node.test", transport=httpx.MockTransport(down)) as client:
        with pytest.raises(Unreachable, match="gave up after 3 retries"):
            next(client.stream_events(retries=3, backoff=0.001))
    assert calls == 4

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(400, json={"code": "malformed", "message": "from the future"})

    calls = 0
    with Client("http://node.test", transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(ApiRefused, match="from the future"):
            next(client.stream_events(last_event_id=99, backoff=0.001))
    assert calls == 1


def test_events_sends_filters_as_query_parameters() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/events"
        assert dict(request.url.params) == {"type": "identity.member_registered",
                                            "org": "st-mary", "role": "admin",
                                            "from_height": "3", "after": "7", "limit": "5"}
        return httpx.Response(200, json={"events": [_event(8)], "next": None})

    with Client("http://node.test", transport=httpx.MockTransport(handle)) as client:
        answer = client.events("identity.member_registered", {"role": "admin",
                                                              "org": "st-mary"},
                               from_height=3, after=7, limit=5)
        assert answer["events"][0]["id"] == 8
        with pytest.raises(ValueError, match="query parameter"):
            client.events(attrs={"limit": "3"})


# the CLI -------------------------------------------------------------------------------------
def _served(app: FastAPI) -> httpx.MockTransport:
    async def forward(request: httpx.Request) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as http:
            return await http.request(request.method, request.url.raw_path.decode())

    def handle(request: httpx.Request) -> httpx.Response:
        response = asyncio.run(forward(request))
        return httpx.Response(response.status_code, content=response.content,
                              headers={"content-type": response.headers["content-type"]})

    return httpx.MockTransport(handle)


def test_cli_events_list(demo_node: Node, history: dict[str, Any], demo_home: Home,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_events, "Client", functools.partial(
        Client, transport=_served(create_app(demo_node, run_node=False))))
    runner = CliRunner()
    home = ["--home", str(demo_home.path)]

    result = runner.invoke(cli_events.events_app, ["list", *home])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 6
    assert lines[0].split()[:3] == ["1", "h=1", "anchor.anchored"]
    assert f"digest={digest(1)}" in lines[0] and f"member={history['mary_member']}" in lines[2]

    result = runner.invoke(cli_events.events_app, [
        "list", *home, "--type", "identity.member_registered", "--attr", "org=local",
        "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert [e["attrs"]["member"] for e in answer["events"]] == [history["local_member"]]

    third = history["heights"][2]
    result = runner.invoke(cli_events.events_app, ["list", *home, "--from-height", str(third),
                                                   "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["5"]
    assert "--after 5" in result.stderr

    for bad, words in ((["--attr", "org"], "NAME=VALUE"), (["--attr", "limit=3"], "query"),
                       (["--type", "nope"], "malformed: query.type")):
        result = runner.invoke(cli_events.events_app, ["list", *home, *bad])
        assert result.exit_code == 1, result.output
        assert words in result.stderr and "Traceback" not in result.output


def test_cli_events_options_have_help() -> None:
    import typer.main

    group = typer.main.get_group(cli_events.events_app)
    assert set(group.commands) == {"list", "watch"}
    for command in group.commands.values():
        assert (command.help or "").strip()
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert (getattr(param, "help", None) or "").strip(), (command.name, param.name)


# against a real node process -----------------------------------------------------------------
class Anchors:
    """Anchors signed by the home's admin, submitted and waited for, one nonce after the
    other."""

    def __init__(self, home: Home) -> None:
        self.key = home.member_keys("admin").signing
        self.count = 0
        self.heights: list[int] = []  # each anchor's block

    def add(self, url: str, n: int = 1) -> list[str]:
        """Anchor ``n`` more documents; their digests."""
        labels = []
        with Client(url, timeout=10) as client:
            for _ in range(n):
                self.count += 1
                tx = anchor(self.key, self.count, self.count, PROC_CHAIN)
                answer = client.submit(tx, wait=True, timeout=10)
                assert (answer["status"], answer["code"]) == ("committed", "ok"), answer
                labels.append(digest(self.count))
                self.heights.append(answer["height"])
        return labels


def read_events(lines: Iterator[str], count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of a raw SSE stream (its read timeout bounds the wait)."""
    out: list[dict[str, Any]] = []
    for frame in _sse_frames(lines):
        if frame.data is not None:
            event = json.loads(frame.data)
            assert (frame.id, frame.event) == (str(event["id"]), event["type"])
            out.append(event)
            if len(out) == count:
                break
    assert len(out) == count, out
    return out


class Follower(threading.Thread):
    """The SDK's stream_events in a thread, collecting events until told to stop."""

    class Stop(Exception):
        pass

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events: list[dict[str, Any]] = []
        self.retries: list[str] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def _retry(self, error: Exception, delay: float) -> None:
        self.retries.append(type(error).__name__)
        if self.stop.is_set():
            raise Follower.Stop()

    def run(self) -> None:
        try:
            with Client(self.url) as client:
                for event in client.stream_events(last_event_id=0, timeout=5, retries=40,
                                                  backoff=0.05, max_backoff=0.5,
                                                  on_retry=self._retry):
                    self.events.append(event)
                    if self.stop.is_set():
                        return
        except Follower.Stop:
            pass
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline and self.error is None:
            time.sleep(0.02)
        assert self.error is None, self.error
        assert len(self.events) >= count, (len(self.events), self.retries)


@pytest.mark.processes
def test_stream_resumes_across_a_node_restart_exactly_once(tmp_path: Path) -> None:
    home = make_home(tmp_path / "node", demo=True)
    node = NodeProcess(home)
    anchors = Anchors(home)
    follower = Follower(node.url)
    try:
        node.start()
        labels = anchors.add(node.url, 3)
        follower.start()
        with httpx.Client(base_url=node.url, timeout=10) as http:
            with http.stream("GET", "/v1/events/stream", headers={"Last-Event-ID": "0"}
                             ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.iter_lines()
                seen = read_events(lines, 3)
                labels += anchors.add(node.url, 3)  # committed while the stream is open
                seen += read_events(lines, 3)
                follower.wait_for(6)

                started = time.monotonic()
                node.stop()  # SIGTERM to the process started here, by its pid
                assert node.proc is not None and node.proc.returncode == -signal.SIGTERM
                # the open streams did not hold the shutdown up (stop() waits 15 s)
                assert time.monotonic() - started < 10
                # the stream ended cleanly (a read timeout would raise)
                assert all(not line or line.startswith(":") for line in lines)

            node.start()
            labels += anchors.add(node.url, 2)  # committed before the reconnection
            last = seen[-1]["id"]
            with http.stream("GET", "/v1/events/stream",
                             headers={"Last-Event-ID": str(last)}) as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                seen += read_events(lines, 2)
                labels += anchors.add(node.url, 2)  # and after it
                seen += read_events(lines, 2)

            for bad, words in (("abc", "not an event id"), ("999999", "from the future")):
                answer = http.get("/v1/events/stream", headers={"Last-Event-ID": bad})
                assert answer.status_code == 400
                assert answer.json()["code"] == "malformed"
                assert words in answer.json()["message"]

        assert [e["id"] for e in seen] == list(range(1, 11))
        assert [e["attrs"]["digest"] for e in seen] == labels == [digest(n) for n in
                                                                   range(1, 11)]
        assert all(e["type"] == "anchor.anchored" and e["tx_id"] for e in seen)

        follower.wait_for(10)
        follower.stop.set()
        assert [e["id"] for e in follower.events] == list(range(1, 11))
        assert [e["attrs"]["digest"] for e in follower.events] == labels
        assert follower.retries  # it did reconnect
    finally:
        follower.stop.set()
        node.stop()
        follower.join(15)
    assert not follower.is_alive()
    log = node.log.read_text()
    for trouble in ("Traceback", "ERROR", "Task was destroyed", "Waiting for connections",
                    "graceful shutdown exceeded"):
        assert trouble not in log, log[-3000:]


def _watch(url: str, *args: str) -> subprocess.Popen[str]:
    code = "from medledger.cli.events import events_app; events_app(prog_name='medledger events')"
    return subprocess.Popen([sys.executable, "-c", code, "watch", "--api", url, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _lines_of(proc: subprocess.Popen[str], pumps: list[threading.Thread]) -> queue.Queue[str]:
    """The process's stdout lines as they come (a thread reads them until it ends)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    pumps.append(thread)
    return lines


@pytest.mark.processes
def test_cli_events_watch_follows_until_interrupted(tmp_path: Path) -> None:
    home = make_home(tmp_path / "node", demo=True)
    node = NodeProcess(home)
    anchors = Anchors(home)
    watchers: list[subprocess.Popen[str]] = []
    pumps: list[threading.Thread] = []
    try:
        node.start()
        anchors.add(node.url, 2)
        everything = _watch(node.url, "--since", "0")
        watchers.append(everything)
        as_json = _watch(node.url, "--type", "anchor.anchored", "--attr", f"digest={digest(3)}",
                         "--from-height", "3", "--json")
        watchers.append(as_json)
        out, json_out = _lines_of(everything, pumps), _lines_of(as_json, pumps)
        first = [out.get(timeout=20) for _ in range(2)]
        assert [line.split()[:3] for line in first] == [
            ["1", f"h={anchors.heights[0]}", "anchor.anchored"],
            ["2", f"h={anchors.heights[1]}", "anchor.anchored"]]
        assert f"digest={digest(1)}" in first[0]
        anchors.add(node.url, 2)
        later = [out.get(timeout=20) for _ in range(2)]
        assert [line.split()[0] for line in later] == ["3", "4"]
        followed = json.loads(json_out.get(timeout=20))
        assert (followed["id"], followed["attrs"]["digest"]) == (3, digest(3))
        with pytest.raises(queue.Empty):
            json_out.get(timeout=0.5)  # doc4 does not match

        for proc in watchers:  # Ctrl-C
            proc.send_signal(signal.SIGINT)
        for proc in watchers:
            assert proc.wait(10) == 0
            assert proc.stderr is not None
            stderr = proc.stderr.read()
            assert "Traceback" not in stderr and "following events" in stderr
    finally:
        for proc in watchers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for thread in pumps:
            thread.join(5)
        for proc in watchers:
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        node.stop()
