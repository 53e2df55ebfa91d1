"""The Tendermint consensus algorithm (Buchman, Kwon, Milosevic 2018, Algorithm 1) as a
pure state machine: ``handle(event, now_ms) -> list[Effect]``.

Comments name the paper's line numbers. The machine runs one height at a time; after it
emits :class:`~medledger.consensus.events.Decide` it ignores events until the driver calls
:meth:`Machine.next_height`, which moves it to the next height, starts round 0 and replays
the messages it buffered for that height. See docs/consensus.md.
"""

from __future__ import annotations

from medledger.consensus.events import (
    PRECOMMIT_STEP, PREVOTE_STEP, PROPOSE_STEP, Broadcast, CommitMsg, Decide, Effect,
    Event, Evidence, ProposalMsg, ScheduleTimeout, Start, TimeoutConfig, TimeoutEvent,
    ValueSource, VoteMsg, height_of, round_of,
)
from medledger.consensus.proposals import MAX_PROPOSAL_ROUNDS_AHEAD, Proposals
from medledger.consensus.proposer import proposer
from medledger.consensus.signer import Signer
from medledger.consensus.votes import HeightVotes
from medledger.ledger import PRECOMMIT, PREVOTE, Certificate, IntegrityError, ValidatorSet

__all__ = ["MAX_FUTURE_BLOCKS", "MAX_FUTURE_MESSAGES", "Machine"]

#: Messages kept for later heights (replayed after moving height); more are dropped.
MAX_FUTURE_MESSAGES = 1024
#: Of those, messages that carry a block (proposals and commits): a block may be large.
MAX_FUTURE_BLOCKS = 16


class Machine:
    """One node's consensus state at one height. ``signer`` None makes an observer."""

    def __init__(self, chain_id: str, validators: ValidatorSet, height: int,
                 values: ValueSource, signer: Signer | None = None, last_block_time: int = 0,
                 timeouts: TimeoutConfig | None = None) -> None:
        self.chain_id = chain_id
        self.values = values
        self.signer = signer
        self.timeouts = timeouts or TimeoutConfig()
        self._future: list[Event] = []
        self._reset(validators, height, last_block_time)

    def _reset(self, validators: ValidatorSet, height: int, last_block_time: int) -> None:
        self.validators = validators
        self.height = height
        self.last_block_time = last_block_time
        self.started = False
        self.round = 0
        self.step = PROPOSE_STEP
        self.locked_value: bytes | None = None
        self.locked_round = -1
        self.valid_value: bytes | None = None
        self.valid_round = -1
        self.decision: Decide | None = None
        self.votes = HeightVotes(self.chain_id, validators, height)
        self.proposals = Proposals(self.chain_id, validators, height, self.values)
        self._fired: set[tuple[str, int]] = set()  # membership only, never iterated
        self._own: list[ProposalMsg | VoteMsg] = []
        self._now = 0

    # --- driver interface ------------------------------------------------------------------
    def handle(self, event: Event, now_ms: int) -> list[Effect]:
        """Process one event at time ``now_ms``; return the effects for the driver."""
        self._now = now_ms
        out: list[Effect] = []
        if isinstance(event, Start):
            if not self.started:
                self.started = True
                self._start_round(0, out)
        elif isinstance(event, TimeoutEvent):
            self._on_timeout(event, out)
        elif self._route(event):
            self._on_message(event, out)
        if self.started:
            self._apply_rules(out)
        return out

    def next_height(self, validators: ValidatorSet, last_block_time: int,
                    now_ms: int) -> list[Effect]:
        """Move to ``height + 1`` with ``validators``, start round 0, replay buffered
        messages of the new height; return the effects."""
        self._reset(validators, self.height + 1, last_block_time)
        self._now = now_ms
        out: list[Effect] = []
        self.started = True
        self._start_round(0, out)
        pending, self._future = self._future, []
        for event in pending:
            if self._route(event):
                self._on_message(event, out)
        self._apply_rules(out)
        return out

    def gossip(self) -> list[ProposalMsg | VoteMsg]:
        """Messages worth re-sending at this height: this node's own of the current round
        and its votes for a block, plus the prevotes that prove its valid value (relayed,
        so that every correct node can check a re-proposal's pol_round, lines 28-33)."""
        own = [m for m in self._own if round_of(m) == self.round
               or (isinstance(m, VoteMsg) and m.vote.block_hash is not None)]
        if self.valid_value is None:
            return own
        polka = self.votes.get(self.valid_round, PREVOTE).votes_for(self.valid_value)
        mine = {m.vote for m in own if isinstance(m, VoteMsg)}
        return own + [VoteMsg(v) for v in polka if v not in mine]

    # --- intake ----------------------------------------------------------------------------
    def _route(self, event: Event) -> bool:
        """True if ``event`` is for this height; buffer later heights, drop older ones."""
        height = height_of(event)
        if height > self.height and self._keep_for_later(event, height):
            self._future.append(event)
        return height == self.height and self.decision is None

    def _keep_for_later(self, event: Event, height: int) -> bool:
        """Bounded: votes and proposals of the next height only (a node further behind
        catches up by commits), proposals of its first rounds only (it starts at round 0),
        at most :data:`MAX_FUTURE_BLOCKS` messages with a block, :data:`MAX_FUTURE_MESSAGES`
        in all."""
        if len(self._future) >= MAX_FUTURE_MESSAGES:
            return False
        if isinstance(event, CommitMsg | ProposalMsg):
            if isinstance(event, ProposalMsg) and (
                    height > self.height + 1 or event.proposal.round > MAX_PROPOSAL_ROUNDS_AHEAD):
                return False
            blocks = sum(isinstance(e, CommitMsg | ProposalMsg) for e in self._future)
            return blocks < MAX_FUTURE_BLOCKS
        return height == self.height + 1

    def _on_message(self, event: Event, out: list[Effect]) -> None:
        if isinstance(event, ProposalMsg):
            self.proposals.add(event, self.round)
        elif isinstance(event, VoteMsg):
            result = self.votes.add(event.vote, event.verified, self.round)
            if result.evidence is not None:
                out.append(Evidence(result.evidence))
        elif isinstance(event, CommitMsg):
            self._on_commit(event, out)

    def _on_commit(self, msg: CommitMsg, out: list[Effect]) -> None:
        cert = msg.certificate
        if self.values.block_hash(msg.block) != cert.block_hash:
            return
        try:
            cert.verify(self.chain_id, self.validators)
        except IntegrityError:
            return
        self.proposals.add_block(cert.block_hash, msg.block)
        if self.is_valid(cert.block_hash):
            self._decide(cert.round, cert.block_hash, cert, out)

    # --- the rules -------------------------------------------------------------------------
    def _apply_rules(self, out: list[Effect]) -> None:
        rules = (self._rule_decide, self._rule_skip_round, self._rule_proposal,
                 self._rule_prevote_timeout, self._rule_polka, self._rule_nil_polka,
                 self._rule_precommit_timeout)
        while self.decision is None and any(rule(out) for rule in rules):
            pass

    def _rule_proposal(self, out: list[Effect]) -> bool:
        """Lines 22-33, in step propose: a fresh proposal (pol_round -1, lines 22-27) or a
        re-proposal whose pol_round < round has 2/3+ prevotes (lines 28-33): prevote it if
        it is valid and the lock allows (:meth:`may_prevote`), else prevote nil."""
        if self.step != PROPOSE_STEP:
            return False
        for p in self.proposals.in_round(self.round):
            vr = p.pol_round
            if vr == -1 or (vr < self.round and self.votes.get(vr, PREVOTE).has_two_thirds_for(
                    p.block_hash)):
                ok = self.is_valid(p.block_hash) and self.may_prevote(p.block_hash, vr)
                self._prevote(p.block_hash if ok else None, out)
                return True
        return False

    def may_prevote(self, block_hash: bytes, pol_round: int) -> bool:
        """The lock rule of lines 23 and 29: unlocked, locked on this value, or the
        proposal's proof of lock is at least as recent as our lock."""
        return (self.locked_round == -1 or self.locked_value == block_hash
                or (pol_round >= 0 and self.locked_round <= pol_round))

    def _rule_prevote_timeout(self, out: list[Effect]) -> bool:
        """Lines 34-35: 2/3+ prevotes of any kind, first time: schedule timeoutPrevote."""
        return self.step == PREVOTE_STEP and self._on_two_thirds_any(PREVOTE, out)

    def _rule_precommit_timeout(self, out: list[Effect]) -> bool:
        """Lines 47-48: 2/3+ precommits of any kind, first time: schedule timeoutPrecommit."""
        return self._on_two_thirds_any(PRECOMMIT, out)

    def _on_two_thirds_any(self, type_: str, out: list[Effect]) -> bool:
        if (type_, self.round) in self._fired:
            return False
        if not self.votes.get(self.round, type_).has_two_thirds_any():
            return False
        self._fired.add((type_, self.round))
        self._schedule(type_, out)  # the vote types are also the step names
        return True

    def _rule_polka(self, out: list[Effect]) -> bool:
        """Lines 36-43: a valid proposal with 2/3+ prevotes, first time: lock (if in step
        prevote) and precommit it; remember it as the valid value."""
        if self.step == PROPOSE_STEP or ("lock", self.round) in self._fired:
            return False
        prevotes = self.votes.get(self.round, PREVOTE)
        for p in self.proposals.in_round(self.round):
            if prevotes.has_two_thirds_for(p.block_hash) and self.is_valid(p.block_hash):
                self._fired.add(("lock", self.round))
                if self.step == PREVOTE_STEP:
                    self.locked_value, self.locked_round = p.block_hash, self.round
                    self._precommit(p.block_hash, out)
                self.valid_value, self.valid_round = p.block_hash, self.round
                return True
        return False

    def _rule_nil_polka(self, out: list[Effect]) -> bool:
        """Lines 44-46: 2/3+ prevotes for nil while in step prevote: precommit nil."""
        if self.step != PREVOTE_STEP:
            return False
        if not self.votes.get(self.round, PREVOTE).has_two_thirds_for(None):
            return False
        self._precommit(None, out)
        return True

    def _rule_decide(self, out: list[Effect]) -> bool:
        """Lines 49-54: a proposal of some round with 2/3+ precommits for it: decide."""
        for round_ in self.proposals.rounds():
            precommits = self.votes.get(round_, PRECOMMIT)
            for p in self.proposals.in_round(round_):
                if precommits.has_two_thirds_for(p.block_hash) and self.is_valid(p.block_hash):
                    sigs = sorted((v.commit_sig() for v in precommits.votes_for(p.block_hash)),
                                  key=lambda s: s.validator)
                    cert = Certificate(self.height, round_, p.block_hash, tuple(sigs))
                    self._decide(round_, p.block_hash, cert, out)
                    return True
        return False

    def _rule_skip_round(self, out: list[Effect]) -> bool:
        """Lines 55-56: f+1 power sent messages of a higher round: start that round."""
        for round_ in reversed(self.votes.rounds()):
            if round_ <= self.round:
                return False
            if self.votes.has_f_plus_one(round_):
                self._start_round(round_, out)
                return True
        return False

    # --- actions ---------------------------------------------------------------------------
    def _start_round(self, round_: int, out: list[Effect]) -> None:
        """Lines 11-21. The propose timer is set for the proposer too (a no-op once it has
        prevoted), so that a proposer whose signer refuses still moves on."""
        self.round, self.step = round_, PROPOSE_STEP
        if self.signer is not None and proposer(self.validators, self.height, round_) == \
                self.signer.public_key:
            if self.valid_value is not None:
                block = self._known_block(self.valid_value)
            else:
                block = self.values.propose(self.height, round_)
            block_hash = self.values.block_hash(block)
            signed = self.signer.sign_proposal(self.height, round_, self.valid_round, block_hash)
            if signed is not None:
                msg = ProposalMsg(signed, block)
                self._own.append(msg)
                self.proposals.add(ProposalMsg(signed, block, verified=True))
                out.append(Broadcast(msg))
        self._schedule(PROPOSE_STEP, out)

    def _on_timeout(self, t: TimeoutEvent, out: list[Effect]) -> None:
        """Lines 57-67."""
        if (t.height, t.round) != (self.height, self.round) or self.decision is not None:
            return
        if t.step == PROPOSE_STEP and self.step == PROPOSE_STEP:
            self._prevote(None, out)
        elif t.step == PREVOTE_STEP and self.step == PREVOTE_STEP:
            self._precommit(None, out)
        elif t.step == PRECOMMIT_STEP:
            self._start_round(self.round + 1, out)

    def _prevote(self, block_hash: bytes | None, out: list[Effect]) -> None:
        self._vote(PREVOTE, block_hash, out)
        self.step = PREVOTE_STEP

    def _precommit(self, block_hash: bytes | None, out: list[Effect]) -> None:
        self._vote(PRECOMMIT, block_hash, out)
        self.step = PRECOMMIT_STEP

    def _vote(self, type_: str, block_hash: bytes | None, out: list[Effect]) -> None:
        if self.signer is None:
            return
        time = max(self._now, self.last_block_time + 1)
        vote = self.signer.sign_vote(type_, self.height, self.round, block_hash, time)
        if vote is None:
            return
        self.votes.add(vote, verified=True)
        msg = VoteMsg(vote)
        self._own.append(msg)
        out.append(Broadcast(msg))

    def _schedule(self, step: str, out: list[Effect]) -> None:
        out.append(ScheduleTimeout(self.height, self.round, step,
                                   self.timeouts.delay(step, self.round)))

    def _decide(self, round_: int, block_hash: bytes, cert: Certificate,
                out: list[Effect]) -> None:
        self.decision = Decide(self.height, round_, self._known_block(block_hash), block_hash,
                               cert)
        out.append(self.decision)

    def is_valid(self, block_hash: bytes) -> bool:
        """``valid(v)`` of the paper, for a block this machine holds."""
        return self.proposals.is_valid(block_hash)

    def _known_block(self, block_hash: bytes) -> bytes:
        block = self.proposals.block(block_hash)
        if block is None:  # only values whose block arrived are locked, valid or decided
            raise AssertionError(f"no block for {block_hash.hex()} at height {self.height}")
        return block
