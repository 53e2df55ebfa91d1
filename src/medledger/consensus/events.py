"""What goes into the consensus machine (events) and what comes out (effects).

Events: :class:`Start`, :class:`ProposalMsg`, :class:`VoteMsg`, :class:`TimeoutEvent`,
:class:`CommitMsg`. Effects: :class:`Broadcast`, :class:`ScheduleTimeout`, :class:`Decide`,
:class:`Evidence`. All are immutable values; the driver turns effects into I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from medledger.ledger import Certificate, DuplicateVoteEvidence, Proposal, Vote

__all__ = [
    "PRECOMMIT_STEP", "PREVOTE_STEP", "PROPOSE_STEP", "STEPS", "Broadcast", "CommitMsg",
    "Decide", "Effect", "Event", "Evidence", "ProposalMsg", "ScheduleTimeout", "Start",
    "TimeoutConfig", "TimeoutEvent", "ValueSource", "VoteMsg", "height_of", "round_of",
]

PROPOSE_STEP = "propose"
PREVOTE_STEP = "prevote"
PRECOMMIT_STEP = "precommit"
#: The steps of a round, in order (their index orders them).
STEPS = (PROPOSE_STEP, PREVOTE_STEP, PRECOMMIT_STEP)


@dataclass(frozen=True, slots=True)
class Start:
    """Start the height the machine was built for (round 0)."""


@dataclass(frozen=True, slots=True)
class ProposalMsg:
    """A signed proposal with the block it names. ``verified``: the driver already checked
    the signature (the machine then skips it)."""

    proposal: Proposal
    block: bytes
    verified: bool = False


@dataclass(frozen=True, slots=True)
class VoteMsg:
    """A signed prevote or precommit. ``verified`` as for :class:`ProposalMsg`."""

    vote: Vote
    verified: bool = False


@dataclass(frozen=True, slots=True)
class TimeoutEvent:
    """A timer set by :class:`ScheduleTimeout` has fired."""

    height: int
    round: int
    step: str


@dataclass(frozen=True, slots=True)
class CommitMsg:
    """A decided block and its certificate, from a peer that is ahead (catch-up)."""

    block: bytes
    certificate: Certificate


Event = Start | ProposalMsg | VoteMsg | TimeoutEvent | CommitMsg


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``msg`` to every peer."""

    msg: ProposalMsg | VoteMsg


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """Deliver ``TimeoutEvent(height, round, step)`` after ``delay_ms``."""

    height: int
    round: int
    step: str
    delay_ms: int


@dataclass(frozen=True, slots=True)
class Decide:
    """``block`` is decided at ``height``; ``certificate`` proves it (>2/3 precommits)."""

    height: int
    round: int
    block: bytes
    block_hash: bytes
    certificate: Certificate


@dataclass(frozen=True, slots=True)
class Evidence:
    """A validator signed two different votes of one type at one height and round."""

    evidence: DuplicateVoteEvidence


Effect = Broadcast | ScheduleTimeout | Decide | Evidence


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    """Timeouts in ms: ``base + delta_ms * round`` for each step (they grow with the round,
    so that after GST a round eventually lasts long enough for every message to arrive)."""

    propose_ms: int = 1000
    prevote_ms: int = 500
    precommit_ms: int = 500
    delta_ms: int = 500

    def delay(self, step: str, round_: int) -> int:
        """The delay of ``step``'s timeout in round ``round_``."""
        base = {PROPOSE_STEP: self.propose_ms, PREVOTE_STEP: self.prevote_ms,
                PRECOMMIT_STEP: self.precommit_ms}[step]
        return base + self.delta_ms * round_


class ValueSource(Protocol):
    """The application side of consensus: makes, hashes and checks blocks (deterministic)."""

    def propose(self, height: int, round_: int) -> bytes:
        """A new block for (height, round), when this validator proposes and has no valid
        value yet."""
        ...

    def block_hash(self, block: bytes) -> bytes:
        """The 32-byte hash that identifies ``block`` in proposals and votes."""
        ...

    def valid(self, height: int, block: bytes) -> bool:
        """Whether ``block`` may be decided at ``height``."""
        ...


def height_of(event: Event) -> int:
    """The height a message is for (-1 for Start and timeouts are not messages)."""
    if isinstance(event, ProposalMsg):
        return event.proposal.height
    if isinstance(event, VoteMsg):
        return event.vote.height
    if isinstance(event, CommitMsg):
        return event.certificate.height
    return -1


def round_of(msg: ProposalMsg | VoteMsg) -> int:
    """The round of a proposal or vote message."""
    return msg.proposal.round if isinstance(msg, ProposalMsg) else msg.vote.round
