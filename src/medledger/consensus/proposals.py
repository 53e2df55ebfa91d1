"""The proposals and blocks a machine holds at one height, and the validity of each block.

A proposal is kept if it comes from the proposer of its round, names the hash of the block
it carries, and its signature verifies (unless the driver already checked it). An
equivocating proposer may sign several proposals for one round: up to
:data:`MAX_PROPOSALS_PER_ROUND` are kept, in arrival order, so that a quorum formed on any
of them can still be acted on (lines 36 and 49 of the paper). Proposals for rounds more
than :data:`MAX_PROPOSAL_ROUNDS_AHEAD` above the node's own are not kept: a proposer
re-sends its proposal while its round lasts, so the node gets it again once it is there.
"""

from __future__ import annotations

from medledger.consensus.events import ProposalMsg, ValueSource
from medledger.consensus.proposer import proposer
from medledger.ledger import Proposal, ValidatorSet

__all__ = ["MAX_PROPOSALS_PER_ROUND", "MAX_PROPOSAL_ROUNDS_AHEAD", "Proposals"]

#: Distinct proposals kept per round (an equivocating proposer may sign many).
MAX_PROPOSALS_PER_ROUND = 4
#: How far above the node's round a proposal is kept.
MAX_PROPOSAL_ROUNDS_AHEAD = 2


class Proposals:
    """Proposals by round, blocks by hash, and ``valid(v)`` computed once per block."""

    def __init__(self, chain_id: str, validators: ValidatorSet, height: int,
                 values: ValueSource) -> None:
        self.chain_id = chain_id
        self.validators = validators
        self.height = height
        self.values = values
        self._by_round: dict[int, list[Proposal]] = {}
        self._blocks: dict[bytes, bytes] = {}
        self._valid: dict[bytes, bool] = {}

    def add(self, msg: ProposalMsg, current_round: int | None = None) -> bool:
        """Keep ``msg`` if it is acceptable (see the module docstring); True if kept.
        ``current_round``: the node's round, against which far-ahead proposals are dropped."""
        p = msg.proposal
        if p.height != self.height or p.proposer != proposer(self.validators, p.height, p.round):
            return False
        if current_round is not None and p.round > current_round + MAX_PROPOSAL_ROUNDS_AHEAD:
            return False
        kept = self._by_round.setdefault(p.round, [])
        if p in kept or len(kept) >= MAX_PROPOSALS_PER_ROUND:
            return False
        if self.values.block_hash(msg.block) != p.block_hash:
            return False
        if not msg.verified and not p.signature_valid(self.chain_id):
            return False
        kept.append(p)
        self._blocks[p.block_hash] = msg.block
        return True

    def add_block(self, block_hash: bytes, block: bytes) -> None:
        """Remember ``block`` under ``block_hash`` (the caller checked that it matches)."""
        self._blocks[block_hash] = block

    def in_round(self, round_: int) -> list[Proposal]:
        """The proposals kept for ``round_``, in arrival order."""
        return list(self._by_round.get(round_, []))

    def rounds(self) -> list[int]:
        """The rounds with a proposal, ascending."""
        return sorted(self._by_round)

    def block(self, block_hash: bytes) -> bytes | None:
        """The block with ``block_hash``, if known."""
        return self._blocks.get(block_hash)

    def is_valid(self, block_hash: bytes) -> bool:
        """``valid(v)``: the block is known and the application accepts it at this height."""
        known = self._valid.get(block_hash)
        if known is None:
            block = self._blocks.get(block_hash)
            if block is None:
                return False
            known = self.values.valid(self.height, block)
            self._valid[block_hash] = known
        return known
