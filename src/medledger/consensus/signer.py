"""The signer a validator's machine signs through, with double-sign protection.

A signer remembers the last thing it signed, as (height, round, step) and the value
(block hash, and the proposal's pol_round). It refuses (returns None):

- anything at an earlier (height, round, step) than the last signed;
- a different value at the same (height, round, step).

Asked again for the identical value at the same (height, round, step), it returns the
message it signed then (the vote's time is the first one), so a restart can re-send it.
Steps are ordered propose < prevote < precommit. :class:`MemorySigner` keeps this in
memory; ``medledger.node.privval.FileSigner`` persists it before returning a signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from medledger.consensus.events import PROPOSE_STEP, STEPS
from medledger.crypto import SigningKey
from medledger.ledger import Proposal, Vote

__all__ = ["LastSigned", "MemorySigner", "Signer", "check_sign"]


class Signer(Protocol):
    """What the machine needs to sign; None means "refused: it would double-sign"."""

    @property
    def public_key(self) -> bytes:
        """The validator's public key."""
        ...

    def sign_vote(self, type_: str, height: int, round_: int, block_hash: bytes | None,
                  time: int) -> Vote | None:
        """Sign a prevote or precommit, or refuse."""
        ...

    def sign_proposal(self, height: int, round_: int, pol_round: int,
                      block_hash: bytes) -> Proposal | None:
        """Sign a proposal, or refuse."""
        ...


@dataclass(frozen=True, slots=True)
class LastSigned:
    """The last message signed and where it sits in the (height, round, step) order."""

    height: int
    round: int
    step: str
    message: Vote | Proposal

    def position(self) -> tuple[int, int, int]:
        return (self.height, self.round, STEPS.index(self.step))


def _value(message: Vote | Proposal) -> tuple[bytes | None, int]:
    if isinstance(message, Proposal):
        return message.block_hash, message.pol_round
    return message.block_hash, -1


def check_sign(last: LastSigned | None, height: int, round_: int, step: str,
               value: tuple[bytes | None, int]) -> tuple[bool, Vote | Proposal | None]:
    """Decide a signing request: (may sign anew, message to return instead).

    Returns (True, None) to sign, (False, earlier message) to re-send the identical one,
    (False, None) to refuse.
    """
    if last is None:
        return True, None
    here = (height, round_, STEPS.index(step))
    if here > last.position():
        return True, None
    if here == last.position() and _value(last.message) == value:
        return False, last.message
    return False, None


class MemorySigner:
    """A :class:`Signer` over a key in memory (tests, simulations, a node without privval)."""

    def __init__(self, key: SigningKey, chain_id: str) -> None:
        self._key = key
        self._chain_id = chain_id
        self.last: LastSigned | None = None

    @property
    def public_key(self) -> bytes:
        return self._key.public_key

    def sign_vote(self, type_: str, height: int, round_: int, block_hash: bytes | None,
                  time: int) -> Vote | None:
        fresh, earlier = check_sign(self.last, height, round_, type_, (block_hash, -1))
        if not fresh:
            return earlier if isinstance(earlier, Vote) else None
        vote = Vote.sign(self._key, self._chain_id, type_, height, round_, block_hash, time)
        self._remember(LastSigned(height, round_, type_, vote))
        return vote

    def sign_proposal(self, height: int, round_: int, pol_round: int,
                      block_hash: bytes) -> Proposal | None:
        fresh, earlier = check_sign(self.last, height, round_, PROPOSE_STEP,
                                    (block_hash, pol_round))
        if not fresh:
            return earlier if isinstance(earlier, Proposal) else None
        proposal = Proposal.sign(self._key, self._chain_id, height, round_, pol_round,
                                 block_hash)
        self._remember(LastSigned(height, round_, PROPOSE_STEP, proposal))
        return proposal

    def _remember(self, last: LastSigned) -> None:
        """Adopt ``last`` as the last signed message before the signature is returned (a
        subclass makes it durable first)."""
        self.last = last
