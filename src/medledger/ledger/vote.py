"""Consensus messages as signed values: votes, proposals and double-sign evidence.

They live in the ledger layer, below both consensus (which casts and counts them) and the
apps (which judge evidence), so that neither has to import the other.

Sign bytes, each with its own domain tag and the chain id:

- a precommit for a block signs exactly :func:`medledger.ledger.commit_sign_bytes`, so the
  precommits that commit a block are its :class:`~medledger.ledger.Certificate`;
- every other vote (a prevote, a nil precommit) signs ``Tag.VOTE.prefix + encode({
  "block_hash": hex or null, "chain_id", "height", "round", "time", "type"})``;
- a proposal signs ``Tag.PROPOSAL.prefix + encode({"block_hash", "chain_id", "height",
  "pol_round", "round", "type": "proposal"})``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medledger.codec import Tag, encode, tagged_hash
from medledger.crypto import SigningKey, verify
from medledger.ledger.commit import CommitSig, commit_sign_bytes
from medledger.ledger.errors import IntegrityError, MalformedError
from medledger.ledger.fields import read_bytes, read_int, read_str, require_keys
from medledger.ledger.validators import ValidatorSet

__all__ = ["PRECOMMIT", "PREVOTE", "DuplicateVoteEvidence", "Proposal", "Vote",
           "proposal_sign_bytes", "vote_sign_bytes"]

PREVOTE = "prevote"
PRECOMMIT = "precommit"
_VOTE_TYPES = (PREVOTE, PRECOMMIT)
_VOTE_FIELDS = frozenset({"block_hash", "height", "round", "signature", "time", "type",
                          "validator"})
_PROPOSAL_FIELDS = frozenset({"block_hash", "height", "pol_round", "proposer", "round",
                              "signature"})
_EVIDENCE_FIELDS = frozenset({"vote_a", "vote_b"})
MAX_ROUND = 2**31


def vote_sign_bytes(chain_id: str, type_: str, height: int, round_: int,
                    block_hash: bytes | None, time: int) -> bytes:
    """The bytes a validator signs for a vote (see the module docstring)."""
    if type_ not in _VOTE_TYPES:
        raise ValueError(f"vote type must be one of {_VOTE_TYPES}")
    if type_ == PRECOMMIT and block_hash is not None:
        return commit_sign_bytes(chain_id, height, round_, block_hash, time)
    body = {
        "block_hash": None if block_hash is None else block_hash.hex(),
        "chain_id": chain_id,
        "height": height,
        "round": round_,
        "time": time,
        "type": type_,
    }
    return Tag.VOTE.prefix + encode(body)


def proposal_sign_bytes(chain_id: str, height: int, round_: int, pol_round: int,
                        block_hash: bytes) -> bytes:
    """The bytes a proposer signs; ``pol_round`` is -1 when it proposes a fresh block."""
    body = {
        "block_hash": block_hash.hex(),
        "chain_id": chain_id,
        "height": height,
        "pol_round": pol_round,
        "round": round_,
        "type": "proposal",
    }
    return Tag.PROPOSAL.prefix + encode(body)


@dataclass(frozen=True, slots=True)
class Vote:
    """A signed prevote or precommit for a block hash, or for nil (``block_hash`` None).

    ``time`` is the signer's clock in ms; the precommits' times give the next block its
    BFT time (:meth:`medledger.ledger.Certificate.bft_time`).
    """

    type: str
    height: int
    round: int
    block_hash: bytes | None
    time: int
    validator: bytes
    signature: bytes

    @classmethod
    def sign(cls, key: SigningKey, chain_id: str, type_: str, height: int, round_: int,
             block_hash: bytes | None, time: int) -> Vote:
        message = vote_sign_bytes(chain_id, type_, height, round_, block_hash, time)
        return cls(type_, height, round_, block_hash, time, key.public_key, key.sign(message))

    def sign_bytes(self, chain_id: str) -> bytes:
        return vote_sign_bytes(chain_id, self.type, self.height, self.round, self.block_hash,
                               self.time)

    def signature_valid(self, chain_id: str) -> bool:
        return verify(self.validator, self.sign_bytes(chain_id), self.signature)

    def commit_sig(self) -> CommitSig:
        """This precommit as one signature of a certificate."""
        if self.type != PRECOMMIT or self.block_hash is None:
            raise ValueError("only a precommit for a block belongs in a certificate")
        return CommitSig(self.validator, self.time, self.signature)

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_hash": None if self.block_hash is None else self.block_hash.hex(),
            "height": self.height,
            "round": self.round,
            "signature": self.signature.hex(),
            "time": self.time,
            "type": self.type,
            "validator": self.validator.hex(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Vote:
        data = require_keys(data, "vote", _VOTE_FIELDS)
        type_ = read_str(data, "type", 16)
        if type_ not in _VOTE_TYPES:
            raise MalformedError("type", f"must be one of {list(_VOTE_TYPES)}")
        return cls(
            type=type_,
            height=read_int(data, "height", 1),
            round=read_int(data, "round", 0, MAX_ROUND),
            block_hash=None if data["block_hash"] is None else read_bytes(data, "block_hash", 32),
            time=read_int(data, "time"),
            validator=read_bytes(data, "validator", 32),
            signature=read_bytes(data, "signature", 64),
        )


@dataclass(frozen=True, slots=True)
class Proposal:
    """A proposer's signed claim that ``block_hash`` is its block for (height, round).

    ``pol_round`` is the round of the proof of lock it re-proposes under, or -1.
    """

    height: int
    round: int
    pol_round: int
    block_hash: bytes
    proposer: bytes
    signature: bytes

    @classmethod
    def sign(cls, key: SigningKey, chain_id: str, height: int, round_: int, pol_round: int,
             block_hash: bytes) -> Proposal:
        message = proposal_sign_bytes(chain_id, height, round_, pol_round, block_hash)
        return cls(height, round_, pol_round, block_hash, key.public_key, key.sign(message))

    def signature_valid(self, chain_id: str) -> bool:
        message = proposal_sign_bytes(chain_id, self.height, self.round, self.pol_round,
                                      self.block_hash)
        return verify(self.proposer, message, self.signature)

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_hash": self.block_hash.hex(),
            "height": self.height,
            "pol_round": self.pol_round,
            "proposer": self.proposer.hex(),
            "round": self.round,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Proposal:
        data = require_keys(data, "proposal", _PROPOSAL_FIELDS)
        round_ = read_int(data, "round", 0, MAX_ROUND)
        pol_round = read_int(data, "pol_round", -1, MAX_ROUND)
        if pol_round >= round_:
            raise MalformedError("pol_round", "must be -1 or below the round")
        return cls(
            height=read_int(data, "height", 1),
            round=round_,
            pol_round=pol_round,
            block_hash=read_bytes(data, "block_hash", 32),
            proposer=read_bytes(data, "proposer", 32),
            signature=read_bytes(data, "signature", 64),
        )


@dataclass(frozen=True, slots=True)
class DuplicateVoteEvidence:
    """Two votes by one validator, of one type, height and round, for different blocks.

    Stored in canonical order (``vote_a`` has the smaller sign bytes), so one offence has
    one form and one hash however it was observed.
    """

    vote_a: Vote
    vote_b: Vote

    @classmethod
    def of(cls, chain_id: str, one: Vote, other: Vote) -> DuplicateVoteEvidence:
        if one.sign_bytes(chain_id) > other.sign_bytes(chain_id):
            one, other = other, one
        return cls(one, other)

    @property
    def validator(self) -> bytes:
        return self.vote_a.validator

    @property
    def height(self) -> int:
        return self.vote_a.height

    def hash(self) -> bytes:
        return tagged_hash(Tag.EVIDENCE, encode(self.to_dict()))

    def verify(self, chain_id: str, validators: ValidatorSet) -> None:
        """Raise IntegrityError unless this is real double signing by a validator of
        ``validators`` (the set at the evidence's height)."""
        a, b = self.vote_a, self.vote_b
        if (a.validator, a.type, a.height, a.round) != (b.validator, b.type, b.height, b.round):
            raise IntegrityError(a.height, "evidence votes differ in validator, type, height "
                                           "or round")
        if a.block_hash == b.block_hash:
            raise IntegrityError(a.height, "evidence votes are for the same block")
        if a.sign_bytes(chain_id) >= b.sign_bytes(chain_id):
            raise IntegrityError(a.height, "evidence votes are not in canonical order")
        if validators.power_of(a.validator) == 0:
            raise IntegrityError(a.height, "evidence names a non-validator",
                                 got=a.validator.hex())
        if not (a.signature_valid(chain_id) and b.signature_valid(chain_id)):
            raise IntegrityError(a.height, "an evidence vote's signature does not verify")

    def to_dict(self) -> dict[str, Any]:
        return {"vote_a": self.vote_a.to_dict(), "vote_b": self.vote_b.to_dict()}

    @classmethod
    def from_dict(cls, data: Any) -> DuplicateVoteEvidence:
        data = require_keys(data, "evidence", _EVIDENCE_FIELDS)
        return cls(Vote.from_dict(data["vote_a"]), Vote.from_dict(data["vote_b"]))
