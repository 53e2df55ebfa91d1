"""Double-sign protection (MemorySigner, FileSigner across a crash) and vote sets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from medledger.consensus import MemorySigner, VoteSet
from medledger.consensus.votes import MAX_VALUES_PER_VALIDATOR
from medledger.crypto import SigningKey
from medledger.ledger import PRECOMMIT, PREVOTE, Validator, ValidatorSet, Vote
from medledger.node.privval import FileSigner

CHAIN = "signer-chain"
KEY = SigningKey.from_seed(b"s" * 32)
A, B = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()

# name: (first request, second request, second is signed?, second returns the first?)
# a request is ("vote", type, height, round, hash) or ("proposal", height, round, pol, hash)
SIGN_CASES = {
    "same vote again: the same signed vote": (
        ("vote", PREVOTE, 1, 0, A), ("vote", PREVOTE, 1, 0, A), True, True),
    "other value, same step: refused": (
        ("vote", PREVOTE, 1, 0, A), ("vote", PREVOTE, 1, 0, B), False, False),
    "nil after a block, same step: refused": (
        ("vote", PRECOMMIT, 1, 0, A), ("vote", PRECOMMIT, 1, 0, None), False, False),
    "later step: signed": (
        ("vote", PREVOTE, 1, 0, A), ("vote", PRECOMMIT, 1, 0, B), True, False),
    "earlier step: refused": (
        ("vote", PRECOMMIT, 1, 0, A), ("vote", PREVOTE, 1, 0, A), False, False),
    "earlier round: refused": (
        ("vote", PREVOTE, 1, 2, A), ("vote", PRECOMMIT, 1, 1, A), False, False),
    "later height: signed": (
        ("vote", PRECOMMIT, 1, 5, A), ("vote", PREVOTE, 2, 0, B), True, False),
    "proposal then prevote of the round: signed": (
        ("proposal", 1, 0, -1, A), ("vote", PREVOTE, 1, 0, A), True, False),
    "second proposal of another block: refused": (
        ("proposal", 1, 0, -1, A), ("proposal", 1, 0, -1, B), False, False),
    "same proposal again: the same proposal": (
        ("proposal", 1, 3, 1, A), ("proposal", 1, 3, 1, A), True, True),
}


def request(signer: MemorySigner | FileSigner, req: tuple) -> object:
    if req[0] == "vote":
        _, type_, height, round_, block_hash = req
        return signer.sign_vote(type_, height, round_, block_hash, 1000 + round_)
    _, height, round_, pol_round, block_hash = req
    return signer.sign_proposal(height, round_, pol_round, block_hash)


def make_signer(kind: str, path: Path) -> MemorySigner | FileSigner:
    return MemorySigner(KEY, CHAIN) if kind == "memory" else FileSigner(KEY, CHAIN, path)


@pytest.mark.parametrize("kind", ["memory", "file"])
@pytest.mark.parametrize("name", sorted(SIGN_CASES))
def test_double_sign_rules(kind: str, name: str, tmp_path: Path) -> None:
    first_req, second_req, signed, same = SIGN_CASES[name]
    signer = make_signer(kind, tmp_path / "privval.json")
    first = request(signer, first_req)
    assert first is not None
    second = request(signer, second_req)
    assert (second is not None) is signed
    assert (second is first or second == first) is same


@pytest.mark.parametrize("name", sorted(SIGN_CASES))
def test_file_signer_keeps_the_rules_across_a_crash(name: str, tmp_path: Path) -> None:
    first_req, second_req, signed, same = SIGN_CASES[name]
    path = tmp_path / "privval.json"
    first = request(FileSigner(KEY, CHAIN, path), first_req)
    restarted = FileSigner(KEY, CHAIN, path)  # the process "crashed" and came back
    second = request(restarted, second_req)
    assert (second is not None) is signed
    assert (second == first) is same


def test_file_signer_writes_before_returning(tmp_path: Path) -> None:
    path = tmp_path / "privval.json"
    vote = FileSigner(KEY, CHAIN, path).sign_vote(PREVOTE, 7, 2, A, 99)
    assert vote is not None
    record = json.loads(path.read_text())
    assert (record["height"], record["round"], record["step"]) == (7, 2, PREVOTE)
    assert record["block_hash"] == A.hex() and record["signature"] == vote.signature.hex()
    assert not (tmp_path / "privval.json.tmp").exists()


# --- vote sets ----------------------------------------------------------------------------
VKEYS = [SigningKey.from_seed(bytes([i]) * 32) for i in range(4)]
VSET = ValidatorSet.of([Validator(k.public_key, p, f"v{i}")
                        for i, (k, p) in enumerate(zip(VKEYS, [1, 1, 1, 2]))])


def vote(i: int, block_hash: bytes | None, round_: int = 0) -> Vote:
    return Vote.sign(VKEYS[i], CHAIN, PREVOTE, 1, round_, block_hash, 5)


def test_vote_set_counts_power_and_quorums() -> None:
    s = VoteSet(CHAIN, VSET, 1, 0, PREVOTE)
    assert s.add(vote(3, A)).added and not s.has_two_thirds_for(A)  # 2 of 5
    assert s.add(vote(0, A)).added and not s.has_two_thirds_for(A)  # 3 of 5
    assert s.add(vote(1, None)).added and s.has_two_thirds_any()     # 4 of 5 any
    assert s.add(vote(2, A)).added and s.has_two_thirds_for(A)       # 4 of 5 for A
    assert s.two_thirds_majority() == (True, A) and s.power_for(None) == 1


def test_vote_set_refusals() -> None:
    s = VoteSet(CHAIN, VSET, 1, 0, PREVOTE)
    assert s.add(vote(0, A)).added
    assert s.add(vote(0, A)).reason == "duplicate"
    assert s.add(vote(0, A, round_=1)).reason == "wrong height, round or type"
    stranger = Vote.sign(SigningKey.from_seed(b"z" * 32), CHAIN, PREVOTE, 1, 0, A, 5)
    assert s.add(stranger).reason == "not a validator"
    forged = Vote(PREVOTE, 1, 0, B, 5, VKEYS[1].public_key, bytes(64))
    assert s.add(forged).reason == "bad signature"
    assert s.add(forged, verified=True).added  # the caller vouched for it


def test_equivocation_gives_evidence_once_and_counts_each_value() -> None:
    s = VoteSet(CHAIN, VSET, 1, 0, PREVOTE)
    s.add(vote(3, A))
    result = s.add(vote(3, B))
    assert result.evidence is not None and result.evidence.validator == VKEYS[3].public_key
    result.evidence.verify(CHAIN, VSET)
    assert s.power_for(A) == s.power_for(B) == 2 and not s.has_two_thirds_any()
    for i in range(MAX_VALUES_PER_VALIDATOR + 2):
        s.add(vote(3, hashlib.sha256(bytes([i])).digest()))
    assert len([v for v in s.first_votes() if v.validator == VKEYS[3].public_key]) == 1
    assert sum(1 for h in (A, B) if s.power_for(h)) == 2
