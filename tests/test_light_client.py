"""The light client: answers from a real node verify, and every lie in them is caught.

The node runs on a local chain (``tests/localchain.py``): its application is driven through
CometBFT's ABCI calls, and its answers carry CometBFT signed headers, checked as a real
CometBFT node's are. Answers are fetched through its API (``httpx.ASGITransport``, no
sockets), then edited. Commits with too little power or foreign signers come from a local
chain of four validators, some of them absent. The last section checks the local chain's
own headers against CometBFT's rules.

Left to ``tests/test_comet_light.py``, which covers them on CometBFT's own data: each header
field flipped, a commit signed for another chain or round, a vote's time, a signature listed
twice or dropped, block id flags.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from medledger.api import create_app
from medledger.client import (
    VerificationFailed,
    comet,
    verify_state_answer,
    verify_tx_answer,
)
from medledger.client.light import verify_light
from medledger.codec import decode, encode
from medledger.crypto import SigningKey
from medledger.ledger import Header, Transaction, Validator, ValidatorSet
from medledger.ledger.engine import results_hash, tx_leaf
from medledger.merkle import log
from medledger.node import Genesis, Home, NodeConfig, result_of
from medledger.store import SQLiteStore
from tests.localchain import LocalNode as Node

CHAIN = "test-chain"  # the conftest's demo chain
Answer = dict[str, Any]


def digest(n: int) -> str:
    return hashlib.sha256(f"document {n}".encode()).hexdigest()


def anchor(key: SigningKey, nonce: int, n: int) -> Transaction:
    return Transaction.create(key, CHAIN, "ledger.anchor", nonce,
                              {"digest": digest(n), "label": f"document {n}"})


async def build_answers(node: Node, admin: SigningKey, hospital: SigningKey) -> dict[str, Answer]:
    block1 = [anchor(admin, 1, 1), anchor(admin, 2, 2), anchor(admin, 3, 3),
              anchor(hospital, 1, 3)]
    later = anchor(admin, 4, 4)
    transport = httpx.ASGITransport(app=create_app(node, run_node=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as http:
        for batch in (block1, [later]):
            for tx in batch:
                assert (await http.post("/v1/txs", content=tx.raw)).status_code == 202
            assert node.produce_block() is not None  # and the empty block signing its state
        paths = {
            "tx": f"/v1/txs/{block1[2].tx_id.hex()}",
            "rejected": f"/v1/txs/{block1[3].tx_id.hex()}",
            "later": f"/v1/txs/{later.tx_id.hex()}",
            "present": f"/v1/state/anchor/{digest(1)}",
            "absent": f"/v1/state/anchor/{digest(99)}",
        }
        return {name: (await http.get(path)).json() for name, path in paths.items()}


@pytest.fixture
def answers(demo_node: Node, demo_home: Home, demo_admin_key: SigningKey) -> dict[str, Answer]:
    """Block 1: four anchors, the last refused (``exists``); block 3: one anchor (blocks 2
    and 4 are empty: CometBFT's, signing the new app hash). Answers: ``tx`` (block 1, index
    2 of 4), ``rejected`` (block 1, index 3), ``later`` (block 3), ``present`` and ``absent``
    (state of digests 1 and 99 at height 4)."""
    hospital = demo_home.member_keys("st-mary").signing
    return asyncio.run(build_answers(demo_node, demo_admin_key, hospital))


def test_answers_from_an_honest_node_verify(answers: dict[str, Answer], demo_node: Node) -> None:
    trusted = demo_node.chain.validators
    tx = verify_tx_answer(answers["tx"], trusted, CHAIN)
    assert (tx.header.height, tx.index, tx.result.code) == (1, 2, "ok")
    assert len(answers["tx"]["proof"]["data_audit_path"]) == 2  # a real path, in a tree of 4
    assert len(answers["tx"]["proof"]["result_audit_path"]) == 2
    assert [h["header"]["height"] for h in answers["tx"]["light"]] == ["1", "2"]
    rejected = verify_tx_answer(answers["rejected"], trusted, CHAIN)
    assert (rejected.index, rejected.result.code) == (3, "exists")
    assert verify_tx_answer(answers["later"], trusted, CHAIN).header.height == 3
    assert verify_state_answer(answers["present"], trusted, CHAIN).value["label"] == "document 1"
    assert verify_state_answer(answers["absent"], trusted, CHAIN).value is None


# tampered transaction answers ----------------------------------------------------------------
def flip(text: str, at: int = 0) -> str:
    raw = bytearray.fromhex(text)
    raw[at] ^= 0x01
    return raw.hex()


def re_signed(answer: Answer, **changes: Any) -> Answer:
    """The answer's transaction re-signed by a stranger with ``changes`` to its body."""
    tx = Transaction.create(SigningKey.generate(), CHAIN, "ledger.anchor", 1,
                            {**answer["tx"]["body"], **changes})
    return {**answer, "tx": tx.to_dict(), "tx_id": tx.tx_id.hex()}


def flip64(text: str, at: int = 0) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


STRANGER = SigningKey.from_seed(b"\x09" * 32)


def stranger_signs(answer: Answer, keep_address: bool = False) -> Answer:
    """The first header's precommit replaced by a correct one of a non-validator key (under
    its own address, or the validator's)."""
    signed = answer["light"][0]
    commit, sig = signed["commit"], signed["commit"]["signatures"][0]
    block_id = comet.BlockId.from_json(commit["block_id"])
    stamp = comet.Timestamp.parse(sig["timestamp"])
    signature = STRANGER.sign(comet.canonical_vote_bytes(CHAIN, int(commit["height"]), 0,
                                                         block_id, stamp))
    sig["signature"] = base64.b64encode(signature).decode()
    if not keep_address:
        sig["validator_address"] = comet.address_of(STRANGER.public_key).hex().upper()
    return answer


def edit(path: str, change: Callable[[Any], Any]) -> Callable[[Answer], Answer]:
    """Replace the value at ``path`` (dotted; list indexes as numbers) by ``change(value)``."""
    def tamper(answer: Answer) -> Answer:
        *parents, last = [int(p) if p.lstrip("-").isdigit() else p for p in path.split(".")]
        node: Any = answer
        for part in parents:
            node = node[part]
        node[last] = change(node[last])
        return answer
    return tamper


L0, L1 = "light.0.", "light.1."  # the signed headers of the tx's block and of the next
# name: (answer, tamper, reason the light client gives)
TX_TAMPERS: dict[str, tuple[str, Callable[[Answer], Answer], str]] = {
    "the tx body changed": (
        "tx", edit("tx.body.label", lambda _: "forged"), "do not hash to the id"),
    "the tx id changed": ("tx", edit("tx_id", flip), "do not hash to the id"),
    "the tx re-signed by someone else": (
        "tx", re_signed, "inclusion proof does not lead to the block's data hash"),
    "the tx body changed, its id recomputed": (
        "tx", lambda a: {**a, "tx": (t := {**a["tx"], "body": {**a["tx"]["body"],
                                                               "label": "forged"}}),
                         "tx_id": Transaction.from_dict(t).tx_id.hex()},
        "signature does not verify"),
    "an audit-path hash changed": (
        "tx", edit("proof.data_audit_path.0", flip), "inclusion proof does not lead"),
    "an audit-path hash dropped": (
        "tx", edit("proof.data_audit_path", lambda p: p[:-1]), "inclusion proof does not lead"),
    "an audit-path hash that is not hex": (
        "tx", edit("proof.data_audit_path.0", lambda _: "zz"), "malformed"),
    "the leaf index changed": (
        "tx", edit("proof.leaf_index", lambda i: i + 1), "inclusion proof does not lead"),
    "the leaf index negative": (
        "tx", edit("proof.leaf_index", lambda _: -2), "inclusion proof does not lead"),
    "the tree size changed": (
        "tx", edit("proof.tree_size", lambda n: n + 1), "inclusion proof does not lead"),
    "the proof missing": ("tx", lambda a: {k: v for k, v in a.items() if k != "proof"},
                          "malformed"),
    "a refused tx claimed ok": (
        "rejected", edit("code", lambda _: "ok"), "next header's results hash"),
    "the result message changed": (
        "rejected", edit("message", lambda _: "all fine"), "next header's results hash"),
    "the result's audit path changed": (
        "rejected", edit("proof.result_audit_path.0", flip), "next header's results hash"),
    "the result's audit path missing": (
        "rejected", edit("proof", lambda p: {k: v for k, v in p.items()
                                             if k != "result_audit_path"}), "malformed"),
    "the header time changed": (
        "tx", edit("header.time", lambda t: t + 1), "time is not the engine's"),
    "the header lacks a field": (
        "tx", edit("header", lambda h: {k: v for k, v in h.items() if k != "proposer"}),
        "malformed"),
    "the header of another chain": (
        "tx", edit("header.chain_id", lambda _: "other-chain"), "not 'test-chain'"),
    "the signed header's data hash changed": (
        "tx", edit(L0 + "header.data_hash", lambda h: flip(h).upper()), "does not check out"),
    "the next header's results hash changed": (
        "tx", edit(L1 + "header.last_results_hash", lambda h: flip(h).upper()),
        "does not check out"),
    "the signed header's time changed": (
        "tx", edit(L0 + "header.time", lambda _: "2023-11-14T22:13:20.5Z"),
        "does not check out"),
    "the signed header of another chain": (
        "tx", edit(L0 + "header.chain_id", lambda _: "other-chain"), "does not check out"),
    "a precommit's signature changed": (
        "tx", edit(L0 + "commit.signatures.0.signature", lambda s: flip64(s, 7)),
        "does not check out"),
    "a precommit's time changed": (
        "tx", edit(L1 + "commit.signatures.0.timestamp", lambda _: "2030-01-01T00:00:00Z"),
        "does not check out"),
    "the commit's round changed": (
        "tx", edit(L0 + "commit.round", lambda r: r + 1), "does not check out"),
    "the commit's block hash changed": (
        "tx", edit(L0 + "commit.block_id.hash", lambda h: flip(h).upper()),
        "does not check out"),
    "the commit's height changed": (
        "tx", edit(L0 + "commit.height", lambda h: str(int(h) + 1)), "does not check out"),
    "the commit's precommits removed": (
        "tx", edit(L0 + "commit.signatures", lambda _: []), "does not check out"),
    "the precommit marked absent": (
        "tx", edit(L0 + "commit.signatures.0", lambda _: {
            "block_id_flag": 1, "validator_address": "", "timestamp": "0001-01-01T00:00:00Z",
            "signature": None}), "does not check out"),
    "the commit signed by a non-validator": ("tx", stranger_signs, "does not check out"),
    "a non-validator's signature under the validator's address": (
        "tx", lambda a: stranger_signs(a, keep_address=True), "does not check out"),
    "the signed headers swapped": (
        "tx", edit("light", lambda pair: pair[::-1]), "consecutive heights"),
    "the next header left out": (
        "tx", edit("light", lambda pair: pair[:1]), "headers of its block and of the next"),
    "no signed headers": ("tx", edit("light", lambda _: []), "no signed headers"),
    "the signed headers left out": (
        "tx", lambda a: {k: v for k, v in a.items() if k != "light"},
        "malformed|no signed headers"),
    "not an object at all": ("tx", lambda a: [], "malformed"),  # type: ignore[return-value]
}


@pytest.mark.parametrize("name", TX_TAMPERS)
def test_tampered_tx_answer_is_refused_with_a_reason(
        name: str, answers: dict[str, Answer], demo_node: Node) -> None:
    which, tamper, reason = TX_TAMPERS[name]
    answer = tamper(copy.deepcopy(answers[which]))
    with pytest.raises(VerificationFailed, match=reason):
        verify_tx_answer(answer, demo_node.chain.validators, CHAIN)


def test_a_tx_from_another_block_is_refused_under_this_header(
        answers: dict[str, Answer], demo_node: Node) -> None:
    swapped = {**answers["tx"], **{k: answers["later"][k] for k in ("tx", "tx_id")}}
    with pytest.raises(VerificationFailed, match="inclusion proof does not lead"):
        verify_tx_answer(swapped, demo_node.chain.validators, CHAIN)
    other_headers = {**answers["tx"], "light": answers["later"]["light"]}
    with pytest.raises(VerificationFailed, match="headers of its block and of the next"):
        verify_tx_answer(other_headers, demo_node.chain.validators, CHAIN)


def test_an_answer_is_refused_against_another_trusted_set_or_chain(
        answers: dict[str, Answer], demo_node: Node) -> None:
    stranger = ValidatorSet.of([Validator(SigningKey.generate().public_key, 10, "x")])
    with pytest.raises(VerificationFailed, match="does not check out: header 1: "
                                                 "validators_hash"):
        verify_tx_answer(answers["tx"], stranger, CHAIN)
    with pytest.raises(VerificationFailed, match="not 'other-chain'"):
        verify_tx_answer(answers["tx"], demo_node.chain.validators, "other-chain")
    with pytest.raises(VerificationFailed, match="not 'other-chain'"):
        verify_state_answer(answers["present"], demo_node.chain.validators, "other-chain")
    older = {**answers["present"], "light": answers["tx"]["light"]}  # headers 1 and 2
    with pytest.raises(VerificationFailed, match="not the engine's"):
        verify_state_answer(older, demo_node.chain.validators, CHAIN)


# tampered state answers ----------------------------------------------------------------------
STATE_TAMPERS: dict[str, tuple[str, Callable[[Answer], Answer], str]] = {
    "the value changed": ("present", edit("value.label", lambda _: "forged"),
                          "value does not lead"),
    "a present key said to be absent": ("present", edit("value", lambda _: None),
                                        "absence does not lead"),
    "an absent key given a value": ("absent", edit("value", lambda _: {"label": "x"}),
                                    "value does not lead"),
    "the key changed": ("present", edit("key", lambda _: f"anchor/{digest(2)}"),
                        "does not lead"),
    "the proof's leaf value hash changed": (
        "present", edit("proof.leaf.value_hash", flip), "does not lead"),
    "a proof sibling changed": ("absent", edit("proof.siblings.0", flip), "does not lead"),
    "a proof sibling dropped": ("present", edit("proof.siblings", lambda s: s[1:]),
                                "malformed|does not lead"),
    "the proof depth changed": ("present", edit("proof.depth", lambda d: d + 1),
                                "malformed|does not lead"),
    "the proof missing": ("present", lambda a: {k: v for k, v in a.items() if k != "proof"},
                          "malformed"),
    "the key not a string": ("present", edit("key", lambda _: 7), "malformed"),
    "a float value": ("present", edit("value", lambda _: 1.5), "malformed"),
    "the header's state root changed": ("present", edit("header.state_root", flip),
                                        "not the app hash the engine's header signs"),
    "the header's height changed": ("present", edit("header.height", lambda h: h - 1),
                                    "height or time is not the engine's"),
    "the signed header's app hash changed": (
        "present", edit(L0 + "header.app_hash", lambda h: flip(h).upper()),
        "does not check out"),
    "a precommit's signature changed": (
        "present", edit(L0 + "commit.signatures.0.signature", flip64), "does not check out"),
}


@pytest.mark.parametrize("name", STATE_TAMPERS)
def test_tampered_state_answer_is_refused_with_a_reason(
        name: str, answers: dict[str, Answer], demo_node: Node) -> None:
    which, tamper, reason = STATE_TAMPERS[name]
    answer = tamper(copy.deepcopy(answers[which]))
    with pytest.raises(VerificationFailed, match=reason):
        verify_state_answer(answer, demo_node.chain.validators, CHAIN)


# hostile answers never crash the verifier ------------------------------------------------------
HOSTILE = (None, True, 0, -1, 2**53, "", "00", "zz", [], {}, ["00"], {"a": 1})
# Top-level conveniences the light client does not rely on (it reads the header, the signed
# headers and the proof).
UNCOMMITTED = {("height",), ("block_hash",), ("index",)}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key in value:
            yield from paths(value[key], (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def replaced(answer: Answer, path: tuple[Any, ...], value: Any) -> Answer:
    out = copy.deepcopy(answer)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _same(a: Any, b: Any) -> bool:
    """The same value, or the same integer spelled as a decimal string (CometBFT's JSON
    writes int64 so, and its parser reads every integer field either way)."""
    if type(b) is int and isinstance(a, str) and a.isdigit():
        return int(a) == b
    return type(a) is type(b) and a == b


VERIFIERS = {"tx": verify_tx_answer, "present": verify_state_answer,
             "absent": verify_state_answer}


@pytest.mark.parametrize("which", VERIFIERS)
def test_any_field_replaced_by_a_hostile_value_is_refused_not_crashed(
        which: str, answers: dict[str, Answer], demo_node: Node) -> None:
    verify, honest = VERIFIERS[which], answers[which]
    trusted = demo_node.chain.validators
    accepted = []
    for path in paths(honest):
        old: Any = honest
        for part in path:
            old = old[part]
        for value in HOSTILE:
            if _same(value, old):
                continue
            try:
                verify(replaced(honest, path, value), trusted, CHAIN)
            except VerificationFailed:
                continue
            if path[:1] not in UNCOMMITTED and path[:2] not in UNSIGNED_HEADER_FIELDS:
                accepted.append((path, value))
    assert accepted == []


# The engine's headers sign the block's height, time, proposer and (through the next
# header's app hash) its state root, and the inclusion proof's tree its transaction count;
# nothing else of a tx answer's medledger header is checked (verify_tx_answer says why).
UNSIGNED_HEADER_FIELDS: set[tuple[str, ...]] = set()
SIGNED_HEADER_FIELDS = ("height", "time", "proposer", "state_root", "tx_count")


def _lie(answer: Answer, field: str) -> Answer:
    lied = copy.deepcopy(answer)
    old = lied["header"][field]
    lied["header"][field] = old + 1 if type(old) is int else flip(old)
    return lied


@pytest.mark.parametrize("field", SIGNED_HEADER_FIELDS)
def test_a_tx_answers_header_fields_that_the_engine_signs_are_checked(
        field: str, answers: dict[str, Answer], demo_node: Node) -> None:
    with pytest.raises(VerificationFailed):
        verify_tx_answer(_lie(answers["tx"], field), demo_node.chain.validators, CHAIN)


@pytest.mark.xfail(strict=True, reason="tx_root, results_root and prev_hash are the app's "
                                       "own record of the block: no signed header covers "
                                       "them, and a tx answer carries no proof of them")
@pytest.mark.parametrize("field", ("tx_root", "results_root", "prev_hash"))
def test_a_tx_answers_own_block_record_is_bound_by_the_signed_headers(
        field: str, answers: dict[str, Answer], demo_node: Node) -> None:
    with pytest.raises(VerificationFailed):
        verify_tx_answer(_lie(answers["tx"], field), demo_node.chain.validators, CHAIN)




# commits over a four-validator local chain -----------------------------------------------------
KEYS = [SigningKey.from_seed(bytes([i]) * 32) for i in range(1, 5)]
QUORUM_CHAIN = "quorum-chain"


def four_validators(tmp_path: Path, *powers: int) -> Node:
    """A node on a local chain of four validators (``powers``; the node holds ``KEYS[0]``)
    whose keys all sign unless a block leaves them absent."""
    validators = ValidatorSet.of([Validator(k.public_key, p, f"v{i}")
                                  for i, (k, p) in enumerate(zip(KEYS, powers, strict=True))])
    genesis = Genesis(chain_id=QUORUM_CHAIN, genesis_time=1_700_000_000_000,
                      validators=validators, organisations=())
    return Node(SQLiteStore(tmp_path / "chain.db"), genesis, KEYS[0], NodeConfig(),
                keys=KEYS[1:])


EQUAL = (10, 10, 10, 10)
# name: (powers, the keys absent from the commit, None if believed else the reason)
QUORUMS: dict[str, tuple[tuple[int, ...], list[SigningKey], str | None]] = {
    "all four": (EQUAL, [], None),
    "three of four, more than 2/3": (EQUAL, KEYS[3:], None),
    "two of four": (EQUAL, KEYS[2:], "20 of 40 voting power committed"),
    "one of four": (EQUAL, KEYS[:3], "10 of 40 voting power committed"),
    "nobody": (EQUAL, KEYS, "0 of 40 voting power committed"),
    "one validator holding 70 of 100": ((70, 10, 10, 10), KEYS[1:], None),
    "three validators holding 30 of 100": ((70, 10, 10, 10), KEYS[:1], "30 of 100"),
    "exactly 2/3 of the power": ((40, 10, 5, 5), KEYS[1:], "40 of 60 voting power committed"),
}


@pytest.mark.parametrize("name", QUORUMS)
def test_a_commit_needs_more_than_two_thirds_of_validator_power(
        name: str, tmp_path: Path) -> None:
    powers, absent, reason = QUORUMS[name]
    node = four_validators(tmp_path, *powers)
    try:
        block = node.local.commit_block(absent=[k.public_key for k in absent])
        answer = {"light": [node.local.signed_header(block.height)]}
        if reason is None:
            assert verify_light(answer, node.chain.genesis.validators, QUORUM_CHAIN)[0] == \
                block.signed
        else:
            with pytest.raises(VerificationFailed, match=reason):
                verify_light(answer, node.chain.genesis.validators, QUORUM_CHAIN)
    finally:
        node.close()


def test_a_non_validators_precommit_does_not_count(tmp_path: Path) -> None:
    node = four_validators(tmp_path, *EQUAL)
    try:
        node.local.commit_block(absent=[KEYS[3].public_key])  # three of four: enough
        answer = {"light": [node.local.signed_header(1)]}
        verify_light(answer, node.chain.genesis.validators, QUORUM_CHAIN)
        stranger_signs(answer)  # the first precommit now a stranger's
        with pytest.raises(VerificationFailed, match="does not check out"):
            verify_light(answer, node.chain.genesis.validators, QUORUM_CHAIN)
    finally:
        node.close()


def test_the_failure_reason_is_an_attribute_and_a_sentence(tmp_path: Path) -> None:
    node = four_validators(tmp_path, *EQUAL)
    try:
        node.local.commit_block(absent=[k.public_key for k in KEYS[2:]])
        with pytest.raises(VerificationFailed) as caught:
            verify_light({"light": [node.local.signed_header(1)]},
                         node.chain.genesis.validators, QUORUM_CHAIN)
    finally:
        node.close()
    assert caught.value.reason == str(caught.value)
    assert caught.value.reason.startswith("the engine's signed header does not check out")
    assert encode({"reason": caught.value.reason})  # plain text, safe to show or log


# the local chain's headers are CometBFT's ------------------------------------------------------
HOUR = timedelta(hours=1)


def test_the_local_chains_headers_pass_cometbfts_checks(
        answers: dict[str, Answer], demo_node: Node) -> None:
    """Each header hashes to the block id its commit signs, verifies against its set, names
    the previous block, and the chain verifies header by header (``next_validators_hash``)."""
    local = demo_node.local
    assert local.height == 4
    for height in range(1, 5):
        light = local.light_block(height)
        comet.verify_signed_header(CHAIN, light.signed_header, light.validators)
        assert comet.header_hash(light.signed_header.header) == local.blocks[height].block_hash
        if height > 1:
            previous = local.light_block(height - 1).signed_header
            assert light.signed_header.header.last_block_id == previous.commit.block_id
            comet.verify_adjacent(previous, light.signed_header, light.validators,
                                  trusting_period=HOUR, now=light.signed_header.header.time)
    with httpx.Client(transport=local.rpc_transport(), base_url="http://comet.test") as rpc:
        assert comet.fetch_light_block(rpc, 3) == local.light_block(3)
        reached = comet.verify_to_height(rpc, local.light_block(1), 4, trusting_period=HOUR,
                                         now=local.light_block(4).signed_header.header.time)
    assert reached == local.light_block(4)


def test_a_tampered_local_header_is_refused(answers: dict[str, Answer], demo_node: Node
                                            ) -> None:
    light = demo_node.local.light_block(1)
    header = light.signed_header.header
    forged = dataclasses.replace(header, data_hash=hashlib.sha256(b"other").digest())
    with pytest.raises(comet.HashMismatch):
        comet.verify_signed_header(CHAIN, comet.SignedHeader(forged, light.signed_header.commit),
                                   light.validators)
    with pytest.raises(comet.WrongChain):
        comet.verify_signed_header("other-chain", light.signed_header, light.validators)


def test_the_local_chains_headers_commit_what_the_ledger_says(
        answers: dict[str, Answer], demo_node: Node) -> None:
    """Header h + 1's app hash is the state root after block h; its results hash is the
    ledger's hash of block h's results; header h's data hash is over block h's txs; its
    time, to the millisecond, is block h's."""
    store, local = demo_node.store, demo_node.local
    for height in range(1, 4):
        stored = Header.from_dict(decode(store.get_block(height).header))
        following = local.blocks[height + 1].signed.header
        assert following.app_hash == stored.state_root
        results = [result_of(row) for row in store.get_block_txs(height)]
        assert following.last_results_hash == results_hash(results)
        own = local.blocks[height].signed.header
        rows = store.get_block_txs(height)
        assert own.data_hash == log.root([log.leaf_hash(tx_leaf(r.raw)) for r in rows])
        assert own.time.total_nanos // 10**6 == stored.time
        assert local.blocks[height].app_hash == stored.state_root
    assert local.blocks[1].signed.header.app_hash == b""  # genesis: no app hash yet
