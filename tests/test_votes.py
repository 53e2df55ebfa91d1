"""Votes, proposals and double-sign evidence: sign bytes, round trips, and what checks out."""

from __future__ import annotations

import pytest

from medledger.codec import Tag, decode, encode
from medledger.crypto import SigningKey
from medledger.ledger import (
    PRECOMMIT,
    PREVOTE,
    Certificate,
    DuplicateVoteEvidence,
    IntegrityError,
    MalformedError,
    Proposal,
    Validator,
    ValidatorSet,
    Vote,
    commit_sign_bytes,
)

CHAIN = "vote-chain"
KEYS = [SigningKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]
SET = ValidatorSet.of([Validator(k.public_key, 10, f"v{i}") for i, k in enumerate(KEYS)])
A, B = b"\xaa" * 32, b"\xbb" * 32


def test_precommits_for_a_block_form_a_certificate() -> None:
    votes = [Vote.sign(k, CHAIN, PRECOMMIT, 5, 2, A, 1_000 + i) for i, k in enumerate(KEYS[:3])]
    assert votes[0].sign_bytes(CHAIN) == commit_sign_bytes(CHAIN, 5, 2, A, 1_000)
    cert = Certificate(5, 2, A, tuple(sorted((v.commit_sig() for v in votes),
                                             key=lambda s: s.validator)))
    cert.verify(CHAIN, SET)
    assert cert.bft_time(SET) == 1_001


SIGN_BYTES_DIFFER = {
    "prevote vs precommit": ((PREVOTE, A), (PRECOMMIT, A)),
    "block vs nil": ((PREVOTE, A), (PREVOTE, None)),
    "nil prevote vs nil precommit": ((PREVOTE, None), (PRECOMMIT, None)),
    "one block vs another": ((PRECOMMIT, A), (PRECOMMIT, B)),
}


@pytest.mark.parametrize("one,other", SIGN_BYTES_DIFFER.values(), ids=SIGN_BYTES_DIFFER.keys())
def test_sign_bytes_are_distinct(one: tuple[str, bytes | None],
                                 other: tuple[str, bytes | None]) -> None:
    v1 = Vote.sign(KEYS[0], CHAIN, one[0], 1, 0, one[1], 7)
    v2 = Vote.sign(KEYS[0], CHAIN, other[0], 1, 0, other[1], 7)
    assert v1.sign_bytes(CHAIN) != v2.sign_bytes(CHAIN)
    assert v1.signature_valid(CHAIN) and v2.signature_valid(CHAIN)


def test_votes_and_proposals_are_domain_separated_and_chain_bound() -> None:
    nil = Vote.sign(KEYS[0], CHAIN, PRECOMMIT, 1, 0, None, 7)
    assert nil.sign_bytes(CHAIN).startswith(Tag.VOTE.prefix)
    assert not nil.signature_valid("other-chain")
    proposal = Proposal.sign(KEYS[1], CHAIN, 3, 1, -1, A)
    assert proposal.signature_valid(CHAIN)
    assert not proposal.signature_valid("other-chain")
    with pytest.raises(ValueError):
        nil.commit_sig()


def test_round_trips() -> None:
    vote = Vote.sign(KEYS[2], CHAIN, PREVOTE, 9, 4, None, 0)
    assert Vote.from_dict(vote.to_dict()) == vote
    proposal = Proposal.sign(KEYS[1], CHAIN, 3, 2, 1, A)
    assert Proposal.from_dict(proposal.to_dict()) == proposal


MALFORMED = {
    "unknown vote type": ("vote", {"type": "yes"}),
    "round below zero": ("vote", {"round": -1}),
    "short block hash": ("vote", {"block_hash": "ab"}),
    "pol_round not below round": ("proposal", {"pol_round": 2}),
    "pol_round below -1": ("proposal", {"pol_round": -2}),
}


@pytest.mark.parametrize("kind,change", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_fields_are_refused(kind: str, change: dict[str, object]) -> None:
    if kind == "vote":
        data = {**Vote.sign(KEYS[0], CHAIN, PREVOTE, 1, 0, A, 0).to_dict(), **change}
        with pytest.raises(MalformedError):
            Vote.from_dict(data)
    else:
        data = {**Proposal.sign(KEYS[0], CHAIN, 1, 2, -1, A).to_dict(), **change}
        with pytest.raises(MalformedError):
            Proposal.from_dict(data)


def test_double_signing_is_evidence_in_one_canonical_form() -> None:
    v1 = Vote.sign(KEYS[3], CHAIN, PREVOTE, 4, 1, A, 0)
    v2 = Vote.sign(KEYS[3], CHAIN, PREVOTE, 4, 1, B, 0)
    ev = DuplicateVoteEvidence.of(CHAIN, v1, v2)
    assert ev == DuplicateVoteEvidence.of(CHAIN, v2, v1)
    ev.verify(CHAIN, SET)
    assert ev.validator == KEYS[3].public_key and ev.height == 4
    assert DuplicateVoteEvidence.from_dict(decode(encode(ev.to_dict()))) == ev
    assert len(ev.hash()) == 32


def _pair(**second: object) -> tuple[Vote, Vote]:
    v1 = Vote.sign(KEYS[0], CHAIN, PREVOTE, 4, 1, A, 0)
    fields = {"key": KEYS[0], "type_": PREVOTE, "height": 4, "round_": 1, "block_hash": B,
              **second}
    key = fields.pop("key")
    v2 = Vote.sign(key, CHAIN, fields["type_"], fields["height"], fields["round_"],  # type: ignore[arg-type]
                   fields["block_hash"], 0)  # type: ignore[arg-type]
    return v1, v2


NOT_EVIDENCE = {
    "same block": ({"block_hash": A}, "same block"),
    "other round": ({"round_": 2}, "differ"),
    "other height": ({"height": 5}, "differ"),
    "other type": ({"type_": PRECOMMIT}, "differ"),
    "other validator": ({"key": KEYS[1]}, "differ"),
    "not a validator": ({"key": SigningKey.from_seed(b"\x09" * 32)}, "differ"),
}


@pytest.mark.parametrize("second,why", NOT_EVIDENCE.values(), ids=NOT_EVIDENCE.keys())
def test_what_is_not_evidence(second: dict[str, object], why: str) -> None:
    v1, v2 = _pair(**second)
    with pytest.raises(IntegrityError, match=why):
        DuplicateVoteEvidence.of(CHAIN, v1, v2).verify(CHAIN, SET)


def test_forged_or_foreign_evidence_is_refused() -> None:
    outsider = SigningKey.from_seed(b"\x09" * 32)
    ev = DuplicateVoteEvidence.of(CHAIN, Vote.sign(outsider, CHAIN, PREVOTE, 4, 1, A, 0),
                                  Vote.sign(outsider, CHAIN, PREVOTE, 4, 1, B, 0))
    with pytest.raises(IntegrityError, match="non-validator"):
        ev.verify(CHAIN, SET)
    v1, v2 = _pair()
    forged = Vote(v2.type, v2.height, v2.round, v2.block_hash, v2.time, v2.validator,
                  bytes(64))
    with pytest.raises(IntegrityError, match="signature"):
        DuplicateVoteEvidence.of(CHAIN, v1, forged).verify(CHAIN, SET)
    ordered = DuplicateVoteEvidence.of(CHAIN, v1, v2)
    with pytest.raises(IntegrityError, match="canonical order"):
        DuplicateVoteEvidence(ordered.vote_b, ordered.vote_a).verify(CHAIN, SET)
