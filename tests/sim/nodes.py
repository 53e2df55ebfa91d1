"""The simulated nodes' pieces: block values, keys, wire encoding and Byzantine tricks."""

from __future__ import annotations

import hashlib
import random
from functools import cache
from typing import Any

from medledger.consensus import CommitMsg, ProposalMsg, VoteMsg
from medledger.crypto import SigningKey
from medledger.ledger import Certificate, LedgerError, Proposal, Vote

__all__ = ["CHAIN_ID", "SimValues", "Wire", "conflicting_proposal", "conflicting_vote",
           "decode", "encode_msg", "garbage", "key_of"]

CHAIN_ID = "sim-chain"
#: What travels: ("proposal", dict, block) | ("vote", dict) | ("commit", block, dict) | junk.
Wire = Any


@cache
def key_of(index: int) -> SigningKey:
    """The fixed key of validator ``index`` (deterministic across runs)."""
    return SigningKey.from_seed(hashlib.sha256(f"sim-validator-{index}".encode()).digest())


class SimValues:
    """Blocks are short byte strings; a block starting with b"INVALID" is refused."""

    def __init__(self, name: str, invalid: bool = False) -> None:
        self.name = name
        self.invalid = invalid

    def propose(self, height: int, round_: int) -> bytes:
        prefix = b"INVALID" if self.invalid else b"block"
        return prefix + f"|h{height}|r{round_}|{self.name}".encode()

    def block_hash(self, block: bytes) -> bytes:
        return hashlib.sha256(block).digest()

    def valid(self, height: int, block: bytes) -> bool:
        return not block.startswith(b"INVALID") and f"|h{height}|".encode() in block


def encode_msg(msg: ProposalMsg | VoteMsg | CommitMsg) -> Wire:
    """The wire form of a message (what a real transport would serialise)."""
    if isinstance(msg, ProposalMsg):
        return ("proposal", msg.proposal.to_dict(), msg.block)
    if isinstance(msg, VoteMsg):
        return ("vote", msg.vote.to_dict())
    return ("commit", msg.block, msg.certificate.to_dict())


def decode(wire: Wire) -> ProposalMsg | VoteMsg | CommitMsg | None:
    """Parse a wire message; None for anything malformed (it is dropped)."""
    try:
        kind = wire[0]
        if kind == "proposal" and isinstance(wire[2], bytes):
            return ProposalMsg(Proposal.from_dict(wire[1]), wire[2])
        if kind == "vote":
            return VoteMsg(Vote.from_dict(wire[1]))
        if kind == "commit" and isinstance(wire[1], bytes):
            return CommitMsg(wire[1], Certificate.from_dict(wire[2]))
    except (LedgerError, TypeError, IndexError, KeyError, ValueError):
        return None
    return None


def conflicting_proposal(index: int, proposal: Proposal, block: bytes) -> ProposalMsg:
    """A second, different proposal for the same (height, round), signed with the raw key."""
    other = block + b"|alt"
    signed = Proposal.sign(key_of(index), CHAIN_ID, proposal.height, proposal.round,
                           proposal.pol_round, hashlib.sha256(other).digest())
    return ProposalMsg(signed, other)


def conflicting_vote(index: int, vote: Vote, alternative: bytes | None) -> VoteMsg:
    """A vote of the same (type, height, round) for another value, signed with the raw key."""
    if vote.block_hash is None:
        target: bytes | None = alternative or hashlib.sha256(b"phantom").digest()
    else:
        target = alternative if alternative not in (None, vote.block_hash) else None
    signed = Vote.sign(key_of(index), CHAIN_ID, vote.type, vote.height, vote.round, target,
                       vote.time)
    return VoteMsg(signed)


def garbage(rng: random.Random, sample: Wire) -> Wire:
    """A malformed or forged message, in one of several shapes."""
    choice = rng.randrange(6)
    if choice == 0:
        return rng.randbytes(rng.randrange(1, 64))
    if choice == 1:
        return ("vote", {"type": "prevote", "height": "one"})
    if choice == 2:
        return ("proposal", [1, 2, 3], b"x")
    if choice == 3:
        return ("commit", b"block", {"height": 1, "round": 0, "block_hash": "zz",
                                     "signatures": "none"})
    if choice == 4 and sample is not None and sample[0] == "vote":
        forged = dict(sample[1])
        forged["signature"] = rng.randbytes(64).hex()  # well formed, bad signature
        return ("vote", forged)
    return ("nonsense", rng.random())
