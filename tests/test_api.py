"""The REST API over a real node: submit, refuse with stable codes, read with proofs, and the
identity rules seen through it.

Requests go through ``httpx.ASGITransport`` (no sockets, no lifespan: no producer runs). The
node runs on a local chain (``tests/localchain.py``): CometBFT's ABCI calls drive its
application, and blocks are committed by calling ``node.produce_block()`` directly, which
commits the waiting transactions at height h and the empty block h + 1 whose header signs
their state, as CometBFT does. Only the ``wait=true`` tests run a producer, as a task of
their own. ASGITransport re-raises any exception the app
did not handle, so every test here also shows that its requests never end in a 500.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from medledger.client import (
    VerificationFailed,
    verify_header,
    verify_state_answer,
    verify_tx_answer,
)
from medledger.codec import decode, encode
from medledger.crypto import DEFAULT_SUITE, EncryptionKey, SigningKey
from medledger.ledger import MAX_TX_BYTES, Header, Transaction, Validator, ValidatorSet
from medledger.node import Home
from tests.localchain import LocalNode as Node

pytestmark = pytest.mark.anyio

CHAIN = "test-chain"  # the conftest's demo chain
JSON = {"content-type": "application/json"}
ENC_KEY = EncryptionKey.generate(DEFAULT_SUITE).public_bytes().hex()


def digest(n: int) -> bytes:
    return hashlib.sha256(f"document {n}".encode()).digest()


class Sender:
    """A signing key and the last nonce it used."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.nonce = 0

    @property
    def hex(self) -> str:
        return self.key.public_key.hex()

    def sign(self, type_: str, body: dict[str, Any], *, chain: str = CHAIN,
             nonce: int | None = None) -> Transaction:
        if nonce is None:
            self.nonce += 1
            nonce = self.nonce
        return Transaction.create(self.key, chain, type_, nonce, body)

    def anchor(self, n: int, **kwargs: Any) -> Transaction:
        return self.sign("ledger.anchor", {"digest": digest(n).hex(), "label": f"document {n}"},
                         **kwargs)

    def forget(self) -> None:
        """A refused transaction does not use up its nonce."""
        self.nonce -= 1


def flipped_signature(tx: Transaction) -> bytes:
    envelope = tx.to_dict()
    signature = bytearray.fromhex(envelope["signature"])
    signature[10] ^= 0x01
    envelope["signature"] = signature.hex()
    return encode(envelope)


@pytest.fixture
def admin(demo_admin_key: SigningKey) -> Sender:
    return Sender(demo_admin_key)


async def status(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/v1/status")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


async def submit(api: httpx.AsyncClient, tx: Transaction) -> httpx.Response:
    return await api.post("/v1/txs", content=tx.raw, headers=JSON)


async def commit(api: httpx.AsyncClient, node: Node, *txs: Transaction) -> None:
    for tx in txs:
        assert (await submit(api, tx)).status_code == 202
    assert node.produce_block() is not None


# submit, commit, read back with a proof ------------------------------------------------------
async def test_accepted_tx_is_committed_and_its_answer_verifies(
        api: httpx.AsyncClient, demo_node: Node, admin: Sender) -> None:
    tx = admin.anchor(1)
    response = await submit(api, tx)
    assert response.status_code == 202
    assert response.json() == {"tx_id": tx.tx_id.hex(), "status": "pending"}
    assert (await status(api))["mempool_size"] == 1
    pending = await api.get(f"/v1/txs/{tx.tx_id.hex()}")
    assert (pending.status_code, pending.json()["code"]) == (404, "not_found")

    committed = demo_node.produce_block()
    assert committed is not None
    response = await api.get(f"/v1/txs/{tx.tx_id.hex()}")
    assert response.status_code == 200
    answer = response.json()
    assert {k: answer[k] for k in ("tx_id", "height", "index", "code", "message")} == {
        "tx_id": tx.tx_id.hex(), "height": 1, "index": 0, "code": "ok", "message": ""}
    assert answer["tx"] == tx.to_dict()
    assert committed.height == 1 and demo_node.chain.height == 2  # and the header signing it
    assert answer["header"] == decode(demo_node.store.get_block(1).header)
    assert answer["light"] == [demo_node.local.signed_header(1), demo_node.local.signed_header(2)]
    assert answer["proof"]["leaf_index"] == 0 and answer["proof"]["tree_size"] == 1

    genesis = demo_node.chain.genesis
    checked = verify_tx_answer(answer, genesis.validators, CHAIN)
    assert (checked.tx.tx_id, checked.header.height, checked.index) == (tx.tx_id, 1, 0)
    assert checked.result.code == "ok"
    with pytest.raises(VerificationFailed, match="chain"):
        verify_tx_answer(answer, genesis.validators, "other-chain")


async def test_a_tx_refused_inside_its_block_is_provable_with_its_code(
        api: httpx.AsyncClient, demo_node: Node, demo_home: Home, admin: Sender) -> None:
    """Both anchors of one digest pass admission; the second fails at execution."""
    hospital = Sender(demo_home.member_keys("st-mary").signing)
    first, second = admin.anchor(7), hospital.anchor(7)
    await commit(api, demo_node, first, second)
    answer = (await api.get(f"/v1/txs/{second.tx_id.hex()}")).json()
    assert (answer["index"], answer["code"]) == (1, "exists")
    checked = verify_tx_answer(answer, demo_node.chain.validators, CHAIN)
    assert checked.result.code == "exists"
    anchored = (await api.get(f"/v1/state/anchor/{digest(7).hex()}")).json()
    assert anchored["value"]["sender"] == admin.hex


async def test_block_answer_carries_txs_results_and_signed_headers(
        api: httpx.AsyncClient, demo_node: Node, admin: Sender) -> None:
    first, second = admin.anchor(1), admin.anchor(2)
    await commit(api, demo_node, first)  # block 1, and block 2 signing its state
    await commit(api, demo_node, second)  # blocks 3 and 4
    one = (await api.get("/v1/blocks/1")).json()
    three = (await api.get("/v1/blocks/3")).json()
    assert one["txs"] == [first.to_dict()] and three["txs"] == [second.to_dict()]
    assert one["results"] == [{"code": "ok", "message": ""}]
    assert (await api.get("/v1/blocks/2")).json()["txs"] == []
    assert [h["header"]["height"] for h in three["light"]] == ["3", "4"]
    assert verify_header(three, demo_node.chain.validators).height == 3
    # header 3 names header 2's CometBFT hash, which header 1's answer carries
    assert three["light"][0]["header"]["last_block_id"]["hash"] == \
        demo_node.local.blocks[2].block_hash.hex().upper() == one["light"][1]["commit"][
            "block_id"]["hash"]


async def test_status_names_the_chain_and_its_tip(
        api: httpx.AsyncClient, demo_node: Node, admin: Sender) -> None:
    empty = await status(api)
    assert (empty["chain_id"], empty["height"], empty["total_txs"]) == (CHAIN, 0, 0)
    await commit(api, demo_node, admin.anchor(1))
    now = await status(api)
    header = demo_node.chain.tip_header
    assert header is not None
    assert now["height"] == 2 and now["total_txs"] == 1 and now["mempool_size"] == 0
    assert now["latest_block_hash"] == header.hash().hex()
    assert now["state_root"] == header.state_root.hex() != empty["state_root"]


def api_route_paths(app: FastAPI) -> set[str]:
    """The path of every API route in the schema, those of included routers too (newer
    FastAPI keeps an included router whole; ``iter_route_contexts`` walks into it)."""
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    found = set()
    for entry in (walk(app.routes) if walk is not None else app.routes):
        route = getattr(entry, "original_route", entry)
        if isinstance(route, APIRoute) and route.include_in_schema:
            found.add(entry.path_format)
    return found


async def test_openapi_lists_every_route(api: httpx.AsyncClient, app: FastAPI) -> None:
    document = (await api.get("/openapi.json")).json()
    routes = api_route_paths(app)
    assert set(document["paths"]) == routes
    assert routes >= {"/v1/txs", "/v1/txs/batch", "/v1/status", "/v1/genesis", "/v1/validators",
                      "/v1/blocks/{height}", "/v1/txs/{tx_id}", "/v1/state/{key}"}
    for path in ("/v1/txs", "/v1/txs/batch"):
        assert document["paths"][path]["post"]["requestBody"]["required"] is True


# refusals ------------------------------------------------------------------------------------
@dataclass
class World:
    """What a refusal scenario may set up first; ``pending`` is what it left in the mempool."""

    api: httpx.AsyncClient
    node: Node
    admin: Sender
    pending: list[Transaction] = field(default_factory=list)

    async def submit(self, tx: Transaction) -> None:
        assert (await submit(self.api, tx)).status_code == 202
        self.pending.append(tx)

    async def commit(self, tx: Transaction) -> None:
        await commit(self.api, self.node, tx)


Prepare = Callable[[World], Awaitable[bytes]]


def body_of(make: Callable[[World], bytes]) -> Prepare:
    async def prepare(w: World) -> bytes:
        return make(w)
    return prepare


async def replayed_after_commit(w: World) -> bytes:
    tx = w.admin.anchor(1)
    await w.commit(tx)
    return tx.raw


async def older_nonce_than_committed(w: World) -> bytes:
    await w.commit(w.admin.anchor(1))
    await w.commit(w.admin.anchor(2))
    return w.admin.anchor(3, nonce=1).raw


async def same_nonce_as_pending(w: World) -> bytes:
    await w.submit(w.admin.anchor(1))
    return w.admin.anchor(2, nonce=1).raw


async def same_tx_while_pending(w: World) -> bytes:
    tx = w.admin.anchor(1)
    await w.submit(tx)
    return tx.raw


def envelope_with(**changes: Any) -> Callable[[World], bytes]:
    def make(w: World) -> bytes:
        envelope = {**w.admin.anchor(1, nonce=1).to_dict(), **changes}
        return encode({k: v for k, v in envelope.items() if v is not None})
    return make


def raw_replaced(old: bytes, new: bytes) -> Prepare:
    def make(w: World) -> bytes:
        raw = w.admin.anchor(1, nonce=1).raw
        assert old in raw
        return raw.replace(old, new, 1)
    return body_of(make)


REFUSALS: dict[str, tuple[Prepare, int, str]] = {
    # CometBFT's cache keeps a committed transaction: its bytes are refused before CheckTx
    "replayed after its commit (same bytes)": (replayed_after_commit, 409, "duplicate"),
    "a nonce below the committed one": (older_nonce_than_committed, 409, "nonce"),
    "the nonce of a pending transaction": (same_nonce_as_pending, 409, "nonce"),
    "the same transaction again while pending": (same_tx_while_pending, 409, "duplicate"),
    "signed for another chain id": (
        body_of(lambda w: w.admin.anchor(1, chain="other-chain").raw), 400, "chain_id"),
    "one byte of the signature flipped": (
        body_of(lambda w: flipped_signature(w.admin.anchor(1))), 400, "signature"),
    "the body changed after signing": (
        raw_replaced(b'"label":"document 1"', b'"label":"document 2"'), 400, "signature"),
    "not JSON": (body_of(lambda w: b"this is not json"), 400, "malformed"),
    "an empty body": (body_of(lambda w: b""), 400, "malformed"),
    "a float": (raw_replaced(b'"nonce":1', b'"nonce":1.0'), 400, "malformed"),
    "a duplicate key": (raw_replaced(b'{"body"', b'{"nonce":1,"body"'), 400, "malformed"),
    "not UTF-8": (raw_replaced(b"document", b"docum\xffnt"), 400, "malformed"),
    "a JSON list": (body_of(lambda w: b"[]"), 400, "malformed"),
    "a missing field": (body_of(envelope_with(signature=None)), 400, "malformed"),
    "an unknown field": (body_of(envelope_with(memo="hello")), 400, "malformed"),
    "nonce zero": (body_of(envelope_with(nonce=0)), 400, "malformed"),
    "an upper-case sender": (
        body_of(lambda w: encode({**w.admin.anchor(1).to_dict(), "sender": w.admin.hex.upper()})),
        400, "malformed"),
    "an unknown transaction type": (
        body_of(lambda w: w.admin.sign("ledger.shred", {"digest": digest(1).hex()}).raw),
        400, "unknown_type"),
    "an anchor without a label": (
        body_of(lambda w: w.admin.sign("ledger.anchor", {"digest": digest(1).hex()}).raw),
        400, "malformed"),
    "an upper-case digest": (
        body_of(lambda w: w.admin.sign("ledger.anchor", {"digest": digest(1).hex().upper(),
                                                         "label": "x"}).raw),
        400, "malformed"),
    "an unregistered sender": (
        body_of(lambda w: Sender(SigningKey.generate()).anchor(1).raw), 403, "unknown_sender"),
    "larger than a transaction may be": (
        body_of(lambda w: b'{"pad":"' + b"a" * MAX_TX_BYTES + b'"}'), 413, "too_large"),
}


@pytest.mark.parametrize("name", REFUSALS)
async def test_refused_submission_has_a_stable_code_and_changes_nothing(
        name: str, api: httpx.AsyncClient, demo_node: Node, admin: Sender) -> None:
    prepare, expected_status, expected_code = REFUSALS[name]
    world = World(api, demo_node, admin)
    body = await prepare(world)
    before = await status(api)

    response = await api.post("/v1/txs", content=body, headers=JSON)

    assert (response.status_code, response.json()["code"]) == (expected_status, expected_code)
    assert response.json()["message"]
    assert await status(api) == before
    committed = demo_node.produce_block()
    in_block = [] if committed is None else committed.tx_ids
    assert in_block == [t.tx_id for t in world.pending]
    if not world.pending:
        assert await status(api) == before


READ_REFUSALS: dict[str, tuple[str, int, str]] = {
    "an unknown transaction id": ("/v1/txs/" + "00" * 32, 404, "not_found"),
    "a transaction id that is not hex": ("/v1/txs/" + "zz" * 32, 400, "malformed"),
    "a transaction id too short": ("/v1/txs/abcd", 400, "malformed"),
    "block 0": ("/v1/blocks/0", 400, "malformed"),
    "a negative height": ("/v1/blocks/-1", 400, "malformed"),
    "a block beyond the tip": ("/v1/blocks/999", 404, "not_found"),
    "a height beyond 64 bits": ("/v1/blocks/" + str(2**70), 404, "not_found"),
    "a height that is not a number": ("/v1/blocks/one", 422, "malformed"),
    "a state key longer than 512 characters": ("/v1/state/" + "k" * 513, 400, "malformed"),
    "an unknown route": ("/v1/nothing-here", 404, "not_found"),
}


@pytest.mark.parametrize("name", READ_REFUSALS)
async def test_bad_read_is_refused_with_a_code(
        name: str, api: httpx.AsyncClient, demo_node: Node, admin: Sender) -> None:
    await commit(api, demo_node, admin.anchor(1))
    path, expected_status, expected_code = READ_REFUSALS[name]
    response = await api.get(path)
    assert (response.status_code, response.json()["code"]) == (expected_status, expected_code)


async def test_state_before_the_first_block_is_not_found(api: httpx.AsyncClient) -> None:
    response = await api.get(f"/v1/state/anchor/{digest(1).hex()}")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


# wait=true -----------------------------------------------------------------------------------
async def test_wait_answers_once_a_background_task_commits(
        api: httpx.AsyncClient, demo_node: Node, admin: Sender) -> None:
    async def producer() -> None:
        while demo_node.produce_block() is None:
            await asyncio.sleep(0.01)

    tx = admin.anchor(1)
    task = asyncio.create_task(producer())
    async with asyncio.timeout(10):
        response = await api.post("/v1/txs", params={"wait": "true", "timeout": "10"},
                                  content=tx.raw, headers=JSON)
        await task
    assert response.status_code == 200
    body = tx.to_dict()["body"]
    assert response.json() == {
        "tx_id": tx.tx_id.hex(), "height": 1, "index": 0, "code": "ok", "message": "",
        "status": "committed",
        "events": [{"type": "anchor.anchored", "attrs": {
            "digest": body["digest"], "sender": tx.sender.hex()}}]}


async def test_wait_answers_once_the_node_run_loop_commits(
        api: httpx.AsyncClient, demo_node: Node, admin: Sender) -> None:
    demo_node.config = replace(demo_node.config, block_interval_ms=20)
    task = asyncio.create_task(demo_node.run())
    await asyncio.sleep(0)  # let run() make its wake-up event
    try:
        async with asyncio.timeout(10):
            answers = await asyncio.gather(*(
                api.post("/v1/txs", params={"wait": "true"}, content=tx.raw, headers=JSON)
                for tx in (admin.anchor(1), admin.anchor(2))))
    finally:
        demo_node.stop()
        await asyncio.wait_for(task, 5)
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["status"] for a in answers] == ["committed", "committed"]
    assert [a.json()["code"] for a in answers] == ["ok", "ok"]
    assert (await status(api))["total_txs"] == 2


@pytest.mark.parametrize("timeout", ["0.05", "0", "-5", "nan"])
async def test_wait_that_times_out_answers_pending(
        timeout: str, api: httpx.AsyncClient, demo_node: Node, admin: Sender) -> None:
    tx = admin.anchor(1)
    async with asyncio.timeout(5):
        response = await api.post("/v1/txs", params={"wait": "true", "timeout": timeout},
                                  content=tx.raw, headers=JSON)
    assert response.status_code == 202
    assert response.json() == {"tx_id": tx.tx_id.hex(), "status": "pending"}
    assert tx.tx_id in demo_node.mempool


async def test_wait_that_is_not_a_boolean_is_refused_before_admission(
        api: httpx.AsyncClient, admin: Sender) -> None:
    before = await status(api)
    response = await api.post("/v1/txs", params={"wait": "maybe"}, content=admin.anchor(1).raw,
                              headers=JSON)
    assert (response.status_code, response.json()["code"]) == (422, "malformed")
    assert await status(api) == before


# batches -------------------------------------------------------------------------------------
async def test_batch_answers_each_item_in_order(
        api: httpx.AsyncClient, demo_node: Node, admin: Sender) -> None:
    good1 = admin.anchor(1)
    forged = flipped_signature(admin.anchor(2, nonce=2))
    good2 = admin.anchor(2)
    items = [
        ("ok", good1.to_dict()),
        ("malformed", 42),
        ("signature", Transaction.decode(forged).to_dict()),
        ("ok", good2.to_dict()),
        ("duplicate", good1.to_dict()),
        ("nonce", admin.anchor(3, nonce=1).to_dict()),
        ("unknown_sender", Sender(SigningKey.generate()).anchor(3).to_dict()),
        ("chain_id", admin.anchor(3, chain="other-chain", nonce=3).to_dict()),
    ]
    before = await status(api)
    response = await api.post("/v1/txs/batch", content=encode([i for _, i in items]),
                              headers=JSON)
    assert response.status_code == 200
    answer = response.json()
    assert [r["code"] for r in answer["results"]] == [code for code, _ in items]
    assert answer["accepted"] == 2
    assert answer["results"][0]["tx_id"] == good1.tx_id.hex()
    assert answer["results"][3]["tx_id"] == good2.tx_id.hex()
    assert answer["results"][1]["tx_id"] is None
    assert (await status(api))["mempool_size"] == before["mempool_size"] + 2
    committed = demo_node.produce_block()
    assert committed is not None
    assert committed.tx_ids == [good1.tx_id, good2.tx_id]


BATCH_REFUSALS: dict[str, bytes] = {
    "an object, not a list": b"{}",
    "a float inside one item": b'[{"nonce": 1.5}]',
    "not JSON": b"[",
}


@pytest.mark.parametrize("name", BATCH_REFUSALS)
async def test_malformed_batch_is_refused_whole(
        name: str, api: httpx.AsyncClient, demo_node: Node) -> None:
    before = await status(api)
    response = await api.post("/v1/txs/batch", content=BATCH_REFUSALS[name], headers=JSON)
    assert (response.status_code, response.json()["code"]) == (400, "malformed")
    assert await status(api) == before


# state with proofs ---------------------------------------------------------------------------
@pytest.fixture
async def anchored(api: httpx.AsyncClient, demo_node: Node, admin: Sender) -> dict[str, Any]:
    """Answers for digest 1 (anchored in block 1) and digest 2 (never anchored), at height 2
    (the empty block whose header signs the state after block 1)."""
    await commit(api, demo_node, admin.anchor(1))
    present = (await api.get(f"/v1/state/anchor/{digest(1).hex()}")).json()
    absent = (await api.get(f"/v1/state/anchor/{digest(2).hex()}")).json()
    return {"present": present, "absent": absent}


async def test_membership_proof_of_an_anchored_digest_verifies(
        anchored: dict[str, Any], demo_node: Node, admin: Sender) -> None:
    checked = verify_state_answer(anchored["present"], demo_node.chain.validators, CHAIN)
    block1 = Header.from_dict(decode(demo_node.store.get_block(1).header))
    assert checked.key == f"anchor/{digest(1).hex()}"
    assert checked.value == {"height": 1, "label": "document 1", "sender": admin.hex,
                             "time": block1.time}
    assert checked.header == demo_node.chain.tip_header and checked.header.height == 2


async def test_non_membership_proof_of_a_never_anchored_digest_verifies(
        anchored: dict[str, Any], demo_node: Node) -> None:
    checked = verify_state_answer(anchored["absent"], demo_node.chain.validators, CHAIN)
    assert checked.key == f"anchor/{digest(2).hex()}"
    assert checked.value is None


def _flip_hex(text: str, at: int = 0) -> str:
    raw = bytearray.fromhex(text)
    raw[at] ^= 0x01
    return raw.hex()


def _flip_b64(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[5] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _stranger_set() -> ValidatorSet:
    return ValidatorSet.of([Validator(SigningKey.generate().public_key, 10, "stranger")])


# Each tamper edits an answer in place and returns the validator set to trust.
StateTamper = Callable[[dict[str, Any], ValidatorSet], ValidatorSet]


def _edit(fn: Callable[[dict[str, Any]], object]) -> StateTamper:
    def tamper(answer: dict[str, Any], trusted: ValidatorSet) -> ValidatorSet:
        fn(answer)
        return trusted
    return tamper


STATE_TAMPERS: dict[str, tuple[str, StateTamper]] = {
    "the value changed": ("present", _edit(lambda a: a["value"].update(label="forged"))),
    "a present value said to be absent": ("present", _edit(lambda a: a.update(value=None))),
    "an absent key given a value": ("absent", _edit(lambda a: a.update(value={"label": "x"}))),
    "a proof sibling changed": (
        "present", _edit(lambda a: a["proof"]["siblings"].__setitem__(
            0, _flip_hex(a["proof"]["siblings"][0])))),
    "the absence proof's sibling changed": (
        "absent", _edit(lambda a: a["proof"]["siblings"].__setitem__(
            -1, _flip_hex(a["proof"]["siblings"][-1])))),
    "a header field changed": ("present", _edit(lambda a: a["header"].update(
        time=a["header"]["time"] + 1))),
    "the header's state root changed": ("present", _edit(lambda a: a["header"].update(
        state_root=_flip_hex(a["header"]["state_root"])))),
    "the signed header's commit signature changed": ("present", _edit(
        lambda a: a["light"][0]["commit"]["signatures"][0].update(
            signature=_flip_b64(a["light"][0]["commit"]["signatures"][0]["signature"])))),
    "the signed header's app hash changed": ("present", _edit(
        lambda a: a["light"][0]["header"].update(
            app_hash=_flip_hex(a["light"][0]["header"]["app_hash"]).upper()))),
    "the signed headers left out": ("present", _edit(lambda a: a.pop("light"))),
    "another validator set trusted": ("present", lambda a, t: _stranger_set()),
}


@pytest.mark.parametrize("name", STATE_TAMPERS)
async def test_tampered_state_answer_fails_verification(
        name: str, anchored: dict[str, Any], demo_node: Node) -> None:
    which, tamper = STATE_TAMPERS[name]
    answer = anchored[which]
    trusted = tamper(answer, demo_node.chain.validators)
    with pytest.raises(VerificationFailed):
        verify_state_answer(answer, trusted, CHAIN)


# identity through the API --------------------------------------------------------------------
Action = Callable[[dict[str, Sender]], tuple[str, dict[str, Any]]]


def register(org: str, who: str, role: str = "clinician") -> Action:
    return lambda s: ("identity.member.register", {
        "org": org, "key": s[who].hex, "role": role, "name": f"{who} of {org}",
        "enc_key": ENC_KEY, "enc_suite": DEFAULT_SUITE})


def suspend(org: str, who: str) -> Action:
    return lambda s: ("identity.member.suspend", {"org": org, "key": s[who].hex})


def rotate(org: str, who: str, new: str) -> Action:
    return lambda s: ("identity.member.rotate", {
        "org": org, "key": s[who].hex, "new_key": s[new].hex, "enc_key": ENC_KEY,
        "enc_suite": DEFAULT_SUITE})


def patient_registers() -> Action:
    return lambda s: ("identity.patient.register", {"enc_key": ENC_KEY,
                                                    "enc_suite": DEFAULT_SUITE})


def anchors(n: int) -> Action:
    return lambda s: ("ledger.anchor", {"digest": digest(n).hex(), "label": f"document {n}"})


@dataclass(frozen=True)
class Step:
    actor: str
    action: Action
    status: int = 202
    code: str = "ok"


REGISTER_MEMBER = Step("st-mary", register("st-mary", "member"))

IDENTITY: dict[str, list[Step]] = {
    "an org admin registers a member, who anchors": [
        REGISTER_MEMBER, Step("member", anchors(1))],
    "a suspended member can no longer sign": [
        REGISTER_MEMBER, Step("member", anchors(1)),
        Step("st-mary", suspend("st-mary", "member")),
        Step("member", anchors(2), 403, "key_suspended")],
    "a member rotates their key: the old one is refused, the new one signs": [
        REGISTER_MEMBER, Step("member", rotate("st-mary", "member", "successor")),
        Step("member", anchors(1), 403, "key_rotated"),
        Step("successor", anchors(1))],
    "an admin rotates a member's key": [
        REGISTER_MEMBER, Step("st-mary", rotate("st-mary", "member", "successor")),
        Step("member", anchors(1), 403, "key_rotated"),
        Step("successor", anchors(2))],
    "a patient registers themselves, then anchors": [
        Step("patient", patient_registers()), Step("patient", anchors(1))],
    "an unregistered patient cannot anchor": [
        Step("patient", anchors(1), 403, "unknown_sender")],
    "a patient cannot register twice": [
        Step("patient", patient_registers()),
        Step("patient", patient_registers(), 409, "exists")],
    "an admin of another org cannot register members here": [
        Step("northgate", register("st-mary", "member"), 403, "unauthorized")],
    "an admin of another org cannot suspend members here": [
        REGISTER_MEMBER, Step("northgate", suspend("st-mary", "member"), 403, "unauthorized")],
    "a clinician cannot register members": [
        REGISTER_MEMBER, Step("member", register("st-mary", "successor"), 403, "unauthorized")],
    "a member registered as admin registers members": [
        Step("st-mary", register("st-mary", "member", role="admin")),
        Step("member", register("st-mary", "successor")), Step("successor", anchors(1))],
    "a key cannot be registered twice": [
        REGISTER_MEMBER, Step("st-mary", register("st-mary", "member"), 409, "exists")],
    "a suspended member cannot be suspended again": [
        REGISTER_MEMBER, Step("st-mary", suspend("st-mary", "member")),
        Step("st-mary", suspend("st-mary", "member"), 403, "key_suspended")],
    "an unknown role is malformed": [
        Step("st-mary", register("st-mary", "member", role="surgeon"), 400, "malformed")],
}


@pytest.mark.parametrize("name", IDENTITY)
async def test_identity_rules_through_the_api(
        name: str, api: httpx.AsyncClient, demo_node: Node, demo_home: Home) -> None:
    senders = {org: Sender(demo_home.member_keys(org).signing) for org in ("st-mary", "northgate")}
    senders |= {who: Sender(SigningKey.generate()) for who in ("member", "successor", "patient")}
    for number, step in enumerate(IDENTITY[name], 1):
        sender = senders[step.actor]
        tx = sender.sign(*step.action(senders))
        before = await status(api)
        response = await submit(api, tx)
        got = (response.status_code, response.json().get("code", "ok"))
        assert got == (step.status, step.code), f"step {number} ({step.actor})"
        if step.code != "ok":
            sender.forget()
            assert await status(api) == before
            assert demo_node.produce_block() is None
            continue
        assert demo_node.produce_block() is not None
        answer = (await api.get(f"/v1/txs/{tx.tx_id.hex()}")).json()
        assert answer["code"] == "ok", f"step {number}: {answer['message']}"
        verify_tx_answer(answer, demo_node.chain.validators, CHAIN)


async def test_a_registered_patient_is_provable_under_their_pseudonym(
        api: httpx.AsyncClient, demo_node: Node) -> None:
    patient = Sender(SigningKey.generate())
    await commit(api, demo_node, patient.sign(*patient_registers()({})))
    answer = (await api.get(f"/v1/state/identity/key/{patient.hex}")).json()
    entry = verify_state_answer(answer, demo_node.chain.validators, CHAIN).value
    assert (entry["kind"], entry["status"], entry["enc_key"]) == ("patient", "active", ENC_KEY)
    by_pseudonym = (await api.get(f"/v1/state/identity/patient/{entry['pseudonym']}")).json()
    record = verify_state_answer(by_pseudonym, demo_node.chain.validators, CHAIN).value
    assert (record["key"], record["height"]) == (patient.hex, 1)
