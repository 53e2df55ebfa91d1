"""Vote sets: the votes of one (height, round, type), and of all rounds of one height.

Adding a vote checks its signature (unless the caller already did), that it comes from a
validator, and drops exact duplicates. A second, different vote from one validator for the
same (height, round, type) is equivocation: the pair comes back as
:class:`~medledger.ledger.DuplicateVoteEvidence`, and the new vote is still counted for the
value it names, as the paper counts messages (up to :data:`MAX_VALUES_PER_VALIDATOR` values
per validator). Counting an equivocator for each value it signed keeps quorums safe: two
quorums of more than 2/3 share more than 1/3 of the power, so some correct validator --
which signs one value only -- is in both. It keeps liveness too: whichever of an
equivocator's votes reached a node first, the node can still check a quorum that another
correct node formed with the other one. "2/3+ any" counts each validator once.

Rounds ahead of the node's own are bounded per validator: a validator's votes are kept in
at most :data:`MAX_FUTURE_ROUNDS` rounds above the node's current round, its highest ones
(a vote for a higher round drops its votes of the lowest), so a faulty validator cannot make
a node keep votes for unboundedly many rounds. Correct validators that hear each other are
at most a round apart, so their latest votes still share a round with f+1 power and the node
skips to it (lines 55-56).
"""

from __future__ import annotations

from dataclasses import dataclass

from medledger.ledger import (
    PRECOMMIT,
    PREVOTE,
    DuplicateVoteEvidence,
    ValidatorSet,
    Vote,
)

__all__ = ["MAX_FUTURE_ROUNDS", "MAX_VALUES_PER_VALIDATOR", "AddResult", "HeightVotes", "VoteSet",
           "more_than_one_third", "more_than_two_thirds"]


#: Distinct values counted for one validator in one vote set (an equivocator may sign many).
MAX_VALUES_PER_VALIDATOR = 3
#: Distinct rounds above the node's own in which one validator's votes are counted.
MAX_FUTURE_ROUNDS = 2


def more_than_two_thirds(power: int, total: int) -> bool:
    """``power > 2/3 total`` in integers (a quorum: 2f+1 when n = 3f+1)."""
    return 3 * power > 2 * total


def more_than_one_third(power: int, total: int) -> bool:
    """``power > 1/3 total`` (f+1: at least one correct validator among them)."""
    return 3 * power > total


@dataclass(frozen=True, slots=True)
class AddResult:
    """What adding a vote did: ``added`` if newly counted; ``evidence`` if it conflicts with
    an earlier vote of the same validator; ``reason`` when it was not counted."""

    added: bool
    evidence: DuplicateVoteEvidence | None = None
    reason: str = ""


class VoteSet:
    """The votes of one type at one (height, round), counted by block hash (None = nil)."""

    def __init__(self, chain_id: str, validators: ValidatorSet, height: int, round_: int,
                 type_: str) -> None:
        self.chain_id = chain_id
        self.validators = validators
        self.height = height
        self.round = round_
        self.type = type_
        self._by_validator: dict[bytes, list[Vote]] = {}
        self._power: dict[bytes | None, int] = {}
        self._any_power = 0
        self._reported: list[tuple[bytes, bytes | None]] = []

    def add(self, vote: Vote, verified: bool = False) -> AddResult:
        """Count ``vote`` (see the module docstring)."""
        if (vote.height, vote.round, vote.type) != (self.height, self.round, self.type):
            return AddResult(False, reason="wrong height, round or type")
        power = self.validators.power_of(vote.validator)
        if power == 0:
            return AddResult(False, reason="not a validator")
        earlier = self._by_validator.get(vote.validator, [])
        if any(e.block_hash == vote.block_hash for e in earlier):
            return AddResult(False, reason="duplicate")
        if len(earlier) >= MAX_VALUES_PER_VALIDATOR:
            return AddResult(False, reason="too many values from one validator")
        if not verified and not vote.signature_valid(self.chain_id):
            return AddResult(False, reason="bad signature")
        self._by_validator[vote.validator] = earlier + [vote]
        self._power[vote.block_hash] = self._power.get(vote.block_hash, 0) + power
        if not earlier:
            self._any_power += power
            return AddResult(True)
        return AddResult(True, self._conflict(earlier[0], vote), reason="equivocation")

    def drop(self, validator: bytes) -> None:
        """Forget ``validator``'s votes here (a round ahead that it has moved past)."""
        votes = self._by_validator.pop(validator, [])
        if not votes:
            return
        power = self.validators.power_of(validator)
        self._any_power -= power
        for vote in votes:
            self._power[vote.block_hash] -= power
            if not self._power[vote.block_hash]:
                del self._power[vote.block_hash]

    def _conflict(self, earlier: Vote, vote: Vote) -> DuplicateVoteEvidence | None:
        key = (vote.validator, vote.block_hash)
        if key in self._reported:
            return None
        self._reported.append(key)
        return DuplicateVoteEvidence.of(self.chain_id, earlier, vote)

    def power_for(self, block_hash: bytes | None) -> int:
        """The power that voted for ``block_hash`` (None: nil)."""
        return self._power.get(block_hash, 0)

    def has_two_thirds_for(self, block_hash: bytes | None) -> bool:
        """2/3+ of the power voted for ``block_hash`` (None: nil)."""
        return more_than_two_thirds(self.power_for(block_hash), self.validators.total_power)

    def has_two_thirds_any(self) -> bool:
        """2/3+ of the power voted, for anything."""
        return more_than_two_thirds(self._any_power, self.validators.total_power)

    def two_thirds_majority(self) -> tuple[bool, bytes | None]:
        """(True, hash-or-None) if some value (or nil) has 2/3+, else (False, None)."""
        for block_hash in sorted(self._power, key=lambda h: b"" if h is None else h):
            if self.has_two_thirds_for(block_hash):
                return True, block_hash
        return False, None

    def votes_for(self, block_hash: bytes | None) -> list[Vote]:
        """The counted votes for ``block_hash``, sorted by validator key."""
        return [v for _, votes in sorted(self._by_validator.items()) for v in votes
                if v.block_hash == block_hash]

    def first_votes(self) -> list[Vote]:
        """Each validator's first vote, sorted by validator key."""
        return [votes[0] for _, votes in sorted(self._by_validator.items())]

    def voters(self) -> list[bytes]:
        """The validators counted here, sorted."""
        return sorted(self._by_validator)


class HeightVotes:
    """All vote sets of one height, created on demand per (round, type)."""

    def __init__(self, chain_id: str, validators: ValidatorSet, height: int) -> None:
        self.chain_id = chain_id
        self.validators = validators
        self.height = height
        self._sets: dict[tuple[int, str], VoteSet] = {}
        self._ahead: dict[bytes, set[int]] = {}  # validator -> rounds it voted in, once ahead

    def get(self, round_: int, type_: str) -> VoteSet:
        """The vote set of (round, type), empty if nothing arrived yet."""
        key = (round_, type_)
        found = self._sets.get(key)
        if found is None:
            found = VoteSet(self.chain_id, self.validators, self.height, round_, type_)
            self._sets[key] = found
        return found

    def add(self, vote: Vote, verified: bool = False, current_round: int | None = None
            ) -> AddResult:
        """Add ``vote`` to the set of its round and type. With ``current_round`` (the node's
        round), a vote for a later round is counted only while its validator has votes in
        fewer than :data:`MAX_FUTURE_ROUNDS` other rounds above ``current_round``."""
        if vote.height != self.height:
            return AddResult(False, reason="wrong height")
        if current_round is None or vote.round <= current_round:
            return self._add(vote, verified)
        ahead = {r for r in self._ahead.get(vote.validator, ()) if r > current_round}
        if vote.round not in ahead and len(ahead) >= MAX_FUTURE_ROUNDS:
            if vote.round < min(ahead):
                return AddResult(False, reason="older than the rounds ahead kept for it")
            if not verified and not vote.signature_valid(self.chain_id):
                return AddResult(False, reason="bad signature")
            lowest = min(ahead)
            ahead.discard(lowest)
            for type_ in (PREVOTE, PRECOMMIT):
                found = self._sets.get((lowest, type_))
                if found is not None:
                    found.drop(vote.validator)
                    if not found.voters():
                        del self._sets[(lowest, type_)]
            verified = True
        result = self._add(vote, verified)
        if result.added:
            ahead.add(vote.round)
            self._ahead[vote.validator] = ahead
        return result

    def _add(self, vote: Vote, verified: bool) -> AddResult:
        """Add to the set of the vote's round and type, made only if the vote counts (a
        refused vote leaves nothing behind)."""
        key = (vote.round, vote.type)
        existing = self._sets.get(key)
        target = existing if existing is not None else VoteSet(
            self.chain_id, self.validators, self.height, vote.round, vote.type)
        result = target.add(vote, verified)
        if result.added and existing is None:
            self._sets[key] = target
        return result

    def round_power(self, round_: int) -> int:
        """The power of the distinct validators with any vote in ``round_``."""
        voters = set(self.get(round_, PREVOTE).voters()) | set(self.get(round_, PRECOMMIT).voters())
        return sum(self.validators.power_of(k) for k in sorted(voters))

    def has_f_plus_one(self, round_: int) -> bool:
        """More than 1/3 of the power sent a vote in ``round_`` (at least one correct)."""
        return more_than_one_third(self.round_power(round_), self.validators.total_power)

    def rounds(self) -> list[int]:
        """The rounds with any vote, ascending."""
        return sorted({r for r, _ in self._sets})
