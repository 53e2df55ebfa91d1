"""Tendermint BFT consensus as a pure state machine (no I/O, no clock, no threads).

- :mod:`~medledger.consensus.machine`: :class:`Machine`, ``handle(event, now_ms) ->
  list[Effect]``, Algorithm 1 of Buchman, Kwon and Milosevic (2018);
- :mod:`~medledger.consensus.events`: the events in, the effects out, timeouts and the
  :class:`ValueSource` the application provides;
- :mod:`~medledger.consensus.votes`: vote sets, quorums and equivocation;
- :mod:`~medledger.consensus.proposer`: weighted round-robin proposer selection;
- :mod:`~medledger.consensus.signer`: the :class:`Signer` protocol with double-sign
  protection, and :class:`MemorySigner`.

The protocol as built, the fault model and the tests: docs/consensus.md.
"""

from medledger.consensus.events import (
    PRECOMMIT_STEP,
    PREVOTE_STEP,
    PROPOSE_STEP,
    Broadcast,
    CommitMsg,
    Decide,
    Effect,
    Event,
    Evidence,
    ProposalMsg,
    ScheduleTimeout,
    Start,
    TimeoutConfig,
    TimeoutEvent,
    ValueSource,
    VoteMsg,
    height_of,
    round_of,
)
from medledger.consensus.machine import Machine
from medledger.consensus.proposer import proposer
from medledger.consensus.signer import LastSigned, MemorySigner, Signer, check_sign
from medledger.consensus.votes import AddResult, HeightVotes, VoteSet

__all__ = [
    "PRECOMMIT_STEP", "PREVOTE_STEP", "PROPOSE_STEP", "AddResult", "Broadcast", "CommitMsg",
    "Decide", "Effect", "Event", "Evidence", "HeightVotes", "LastSigned", "Machine",
    "MemorySigner", "ProposalMsg", "ScheduleTimeout", "Signer", "Start", "TimeoutConfig",
    "TimeoutEvent", "ValueSource", "VoteMsg", "VoteSet", "check_sign", "height_of", "proposer", "round_of",
]
