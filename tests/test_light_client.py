"""The light client: answers from a real node verify, and every lie in them is caught.

Answers are fetched from a node through its API (``httpx.ASGITransport``, no sockets), then
edited. Certificates with too little power or foreign signers are built by hand over a
four-validator set.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from medledger.api import create_app
from medledger.client import (
    VerificationFailed,
    verify_header,
    verify_state_answer,
    verify_tx_answer,
)
from medledger.codec import encode
from medledger.crypto import SigningKey
from medledger.ledger import Certificate, Header, Transaction, Validator, ValidatorSet
from medledger.node import Home, Node

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
    transport = httpx.ASGITransport(app=create_app(node, run_producer=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as http:
        for batch in (block1, [later]):
            for tx in batch:
                assert (await http.post("/v1/txs", content=tx.raw)).status_code == 202
            assert node.produce_block() is not None
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
    """Block 1: four anchors, the last refused (``exists``); block 2: one anchor. Answers:
    ``tx`` (block 1, index 2 of 4), ``rejected`` (block 1, index 3), ``later`` (block 2),
    ``present`` and ``absent`` (state of digests 1 and 99 at height 2)."""
    hospital = demo_home.member_keys("st-mary").signing
    return asyncio.run(build_answers(demo_node, demo_admin_key, hospital))


def test_answers_from_an_honest_node_verify(answers: dict[str, Answer], demo_node: Node) -> None:
    trusted = demo_node.chain.validators
    tx = verify_tx_answer(answers["tx"], trusted, CHAIN)
    assert (tx.header.height, tx.index, tx.result.code) == (1, 2, "ok")
    assert len(answers["tx"]["proof"]["audit_path"]) == 2  # a real path, in a tree of 4
    rejected = verify_tx_answer(answers["rejected"], trusted, CHAIN)
    assert (rejected.index, rejected.result.code) == (3, "exists")
    assert verify_tx_answer(answers["later"], trusted, CHAIN).header.height == 2
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


def stranger_signs_certificate(answer: Answer) -> Answer:
    """The certificate re-signed, correctly, by a key that is not a validator."""
    cert = answer["certificate"]
    forged = Certificate.sign([SigningKey.generate()], CHAIN, cert["height"],
                              bytes.fromhex(cert["block_hash"]),
                              cert["signatures"][0]["time"])
    return {**answer, "certificate": forged.to_dict()}


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


# name: (answer, tamper, reason the light client gives)
TX_TAMPERS: dict[str, tuple[str, Callable[[Answer], Answer], str]] = {
    "the tx body changed": (
        "tx", edit("tx.body.label", lambda _: "forged"), "do not hash to the id"),
    "the tx id changed": ("tx", edit("tx_id", flip), "do not hash to the id"),
    "the tx re-signed by someone else": (
        "tx", re_signed, "inclusion proof does not lead"),
    "the tx body changed, its id recomputed": (
        "tx", lambda a: {**a, "tx": (t := {**a["tx"], "body": {**a["tx"]["body"],
                                                               "label": "forged"}}),
                         "tx_id": Transaction.from_dict(t).tx_id.hex()},
        "signature does not verify"),
    "an audit-path hash changed": (
        "tx", edit("proof.audit_path.0", flip), "inclusion proof does not lead"),
    "an audit-path hash dropped": (
        "tx", edit("proof.audit_path", lambda p: p[:-1]), "inclusion proof does not lead"),
    "an audit-path hash that is not hex": (
        "tx", edit("proof.audit_path.0", lambda _: "zz"), "malformed"),
    "the leaf index changed": (
        "tx", edit("proof.leaf_index", lambda i: i + 1), "inclusion proof does not lead"),
    "the leaf index negative": (
        "tx", edit("proof.leaf_index", lambda _: -2), "inclusion proof does not lead"),
    "the tree size changed": (
        "tx", edit("proof.tree_size", lambda n: n + 1), "inclusion proof does not lead"),
    "the proof missing": ("tx", lambda a: {k: v for k, v in a.items() if k != "proof"},
                          "malformed"),
    "a refused tx claimed ok": (
        "rejected", edit("code", lambda _: "ok"), "results root"),
    "the result message changed": (
        "rejected", edit("message", lambda _: "all fine"), "results root"),
    "the result's audit path changed": (
        "rejected", edit("proof.result_audit_path.0", flip), "results root"),
    "the result's audit path missing": (
        "rejected", edit("proof", lambda p: {k: v for k, v in p.items()
                                             if k != "result_audit_path"}), "malformed"),
    "the header time changed": (
        "tx", edit("header.time", lambda t: t + 1), "signs another block"),
    "the header's tx root changed": (
        "tx", edit("header.tx_root", flip), "signs another block"),
    "the header's results root changed": (
        "tx", edit("header.results_root", flip), "signs another block"),
    "the header names another validator set": (
        "tx", edit("header.validators_hash", flip), "validator set other than the trusted"),
    "the header lacks a field": (
        "tx", edit("header", lambda h: {k: v for k, v in h.items() if k != "proposer"}),
        "malformed"),
    "the certificate's signature changed": (
        "tx", edit("certificate.signatures.0.signature", lambda s: flip(s, 7)),
        "does not check out"),
    "the certificate's signing time changed": (
        "tx", edit("certificate.signatures.0.time", lambda t: t + 1), "does not check out"),
    "the certificate's round changed": (
        "tx", edit("certificate.round", lambda r: r + 1), "does not check out"),
    "the certificate's block hash changed": (
        "tx", edit("certificate.block_hash", flip), "signs another block"),
    "the certificate's height changed": (
        "tx", edit("certificate.height", lambda h: h + 1), "signs another block"),
    "the certificate's signatures removed": (
        "tx", edit("certificate.signatures", lambda s: []), "lacks 2/3"),
    "the certificate's signature listed twice": (
        "tx", edit("certificate.signatures", lambda s: s + s), "twice"),
    "the certificate signed by a non-validator": (
        "tx", stranger_signs_certificate, "non-validator"),
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


def test_an_answer_is_refused_against_another_trusted_set_or_chain(
        answers: dict[str, Answer], demo_node: Node) -> None:
    stranger = ValidatorSet.of([Validator(SigningKey.generate().public_key, 10, "x")])
    with pytest.raises(VerificationFailed, match="validator set other than the trusted"):
        verify_tx_answer(answers["tx"], stranger, CHAIN)
    with pytest.raises(VerificationFailed, match="not 'other-chain'"):
        verify_tx_answer(answers["tx"], demo_node.chain.validators, "other-chain")
    with pytest.raises(VerificationFailed, match="not 'other-chain'"):
        verify_state_answer(answers["present"], demo_node.chain.validators, "other-chain")


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
                                        "signs another block"),
    "the certificate's signature changed": (
        "present", edit("certificate.signatures.0.signature", flip), "does not check out"),
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
# Top-level conveniences the light client does not rely on (it reads the header and proof).
UNCOMMITTED = {("height",), ("block_hash",), ("last_commit",), ("index",)}


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
            if path[:1] not in UNCOMMITTED:
                accepted.append((path, value))
    assert accepted == []


# certificates over a four-validator set --------------------------------------------------------
KEYS = [SigningKey.from_seed(bytes([i]) * 32) for i in range(1, 5)]
STRANGER = SigningKey.from_seed(b"\x09" * 32)
SIGN_TIME = 1_700_000_001_000


def validator_set(*powers: int) -> ValidatorSet:
    return ValidatorSet.of([Validator(k.public_key, p, f"v{i}")
                            for i, (k, p) in enumerate(zip(KEYS, powers, strict=False))])


def header_for(validators: ValidatorSet) -> Header:
    return Header(chain_id=CHAIN, height=5, time=1_700_000_000_000, prev_hash=b"\x01" * 32,
                  tx_root=b"\x02" * 32, tx_count=0, results_root=b"\x03" * 32,
                  state_root=b"\x04" * 32, history_root=b"\x05" * 32,
                  validators_hash=validators.hash(), last_commit_hash=b"\x06" * 32,
                  proposer=KEYS[0].public_key)


def signed_by(validators: ValidatorSet, signers: list[SigningKey], *, chain: str = CHAIN,
              round_: int = 0) -> Answer:
    header = header_for(validators)
    cert = Certificate.sign(signers, chain, header.height, header.hash(), SIGN_TIME, round_)
    return {"header": header.to_dict(), "certificate": cert.to_dict()}


EQUAL = (10, 10, 10, 10)
# name: (powers, signers, None if accepted else the reason)
QUORUMS: dict[str, tuple[tuple[int, ...], list[SigningKey], str | None]] = {
    "all four": (EQUAL, KEYS, None),
    "three of four, more than 2/3": (EQUAL, KEYS[:3], None),
    "two of four": (EQUAL, KEYS[:2], "lacks 2/3"),
    "one of four": (EQUAL, KEYS[3:], "lacks 2/3"),
    "nobody": (EQUAL, [], "lacks 2/3"),
    "three validators and a non-validator": (EQUAL, [*KEYS[:3], STRANGER], "non-validator"),
    "two validators and a non-validator": (EQUAL, [*KEYS[:2], STRANGER], "non-validator"),
    "a non-validator alone": (EQUAL, [STRANGER], "non-validator"),
    "one validator holding 70 of 100": ((70, 10, 10, 10), KEYS[:1], None),
    "three validators holding 30 of 100": ((70, 10, 10, 10), KEYS[1:], "lacks 2/3"),
    "exactly 2/3 of the power": ((20, 10), KEYS[:1], "lacks 2/3"),
}


@pytest.mark.parametrize("name", QUORUMS)
def test_a_certificate_needs_more_than_two_thirds_of_validator_power(name: str) -> None:
    powers, signers, reason = QUORUMS[name]
    validators = validator_set(*powers)
    answer = signed_by(validators, signers)
    if reason is None:
        assert verify_header(answer, validators) == header_for(validators)
    else:
        with pytest.raises(VerificationFailed, match=reason):
            verify_header(answer, validators)


CERT_FORGERIES: dict[str, Answer] = {
    "signed for another chain": signed_by(validator_set(*EQUAL), KEYS, chain="other-chain"),
    "signed at round 1, claimed at round 0": {
        **(a := signed_by(validator_set(*EQUAL), KEYS, round_=1)),
        "certificate": {**a["certificate"], "round": 0}},
}


@pytest.mark.parametrize("name", CERT_FORGERIES)
def test_signatures_over_other_bytes_do_not_count(name: str) -> None:
    with pytest.raises(VerificationFailed, match="bad commit signature"):
        verify_header(copy.deepcopy(CERT_FORGERIES[name]), validator_set(*EQUAL))


def test_the_failure_reason_is_an_attribute_and_a_sentence() -> None:
    validators = validator_set(*EQUAL)
    with pytest.raises(VerificationFailed) as caught:
        verify_header(signed_by(validators, KEYS[:2]), validators)
    assert caught.value.reason == str(caught.value)
    assert caught.value.reason.startswith("the certificate does not check out")
    assert encode({"reason": caught.value.reason})  # plain text, safe to show or log
