"""The consensus machine, rule by rule (Algorithm 1 of Buchman, Kwon, Milosevic 2018)."""

from __future__ import annotations

import hashlib
from collections import deque

import pytest

from medledger.consensus import (
    Broadcast, CommitMsg, Decide, Effect, Evidence, Machine, MemorySigner, ProposalMsg,
    ScheduleTimeout, Start, TimeoutConfig, TimeoutEvent, VoteMsg, height_of, proposer,
)
from medledger.crypto import SigningKey
from medledger.ledger import (
    PRECOMMIT, PREVOTE, Certificate, Proposal, Validator, ValidatorSet, Vote,
)

CHAIN = "unit-chain"
KEYS = [SigningKey.from_seed(hashlib.sha256(f"unit-{i}".encode()).digest()) for i in range(4)]
VALIDATORS = ValidatorSet.of([Validator(k.public_key, 1, f"v{i}") for i, k in enumerate(KEYS)])
BY_KEY = {k.public_key: k for k in KEYS}


class Values:
    """Blocks are byte strings; those starting with b"INVALID" are refused."""

    def propose(self, height: int, round_: int) -> bytes:
        return f"block|h{height}|r{round_}".encode()

    def block_hash(self, block: bytes) -> bytes:
        return hashlib.sha256(block).digest()

    def valid(self, height: int, block: bytes) -> bool:
        return not block.startswith(b"INVALID")


def h(block: bytes) -> bytes:
    return hashlib.sha256(block).digest()


def key_of_proposer(height: int, round_: int) -> SigningKey:
    return BY_KEY[proposer(VALIDATORS, height, round_)]


#: The validator under test: it proposes in none of rounds 0-2 of height 1.
ME = key_of_proposer(1, 3)
OTHERS = [k for k in KEYS if k != ME]


def machine(key: SigningKey | None = ME, last_block_time: int = 0) -> Machine:
    signer = MemorySigner(key, CHAIN) if key is not None else None
    return Machine(CHAIN, VALIDATORS, 1, Values(), signer, last_block_time)


def proposal(round_: int, block: bytes, pol_round: int = -1, height: int = 1) -> ProposalMsg:
    p = Proposal.sign(key_of_proposer(height, round_), CHAIN, height, round_, pol_round, h(block))
    return ProposalMsg(p, block)


def votes(type_: str, round_: int, block: bytes | None, keys: list[SigningKey],
          height: int = 1, time: int = 1) -> list[VoteMsg]:
    target = None if block is None else h(block)
    return [VoteMsg(Vote.sign(k, CHAIN, type_, height, round_, target, time)) for k in keys]


def feed(m: Machine, events: list, now: int = 0) -> list[Effect]:
    out: list[Effect] = []
    for e in events:
        out += m.handle(e, now)
    return out


def my_votes(effects: list[Effect], type_: str) -> list[bytes | None]:
    return [e.msg.vote.block_hash for e in effects
            if isinstance(e, Broadcast) and isinstance(e.msg, VoteMsg) and e.msg.vote.type == type_]


def to_round(m: Machine, target: int) -> None:
    """Move ``m`` to round ``target`` through precommit timeouts (lines 47-48, 65-67)."""
    while m.round < target:
        r = m.round
        feed(m, votes(PRECOMMIT, r, None, OTHERS))
        m.handle(TimeoutEvent(1, r, "precommit"), 0)


def lock(m: Machine, round_: int, block: bytes) -> None:
    """Bring ``m`` to ``round_`` and lock it on ``block`` there (lines 36-43)."""
    to_round(m, round_)
    out = feed(m, [proposal(round_, block)] + votes(PREVOTE, round_, block, OTHERS[:2]))
    assert my_votes(out, PRECOMMIT) == [h(block)]
    assert (m.locked_round, m.locked_value) == (round_, h(block))


# --- happy path --------------------------------------------------------------------------
def run_network(machines: list[Machine]) -> list[Decide]:
    """Deliver every broadcast to every other machine, in order, until quiet."""
    queue: deque[tuple[int, Effect]] = deque()
    for i, m in enumerate(machines):
        queue.extend((i, e) for e in m.handle(Start(), 1000))
    decided: list[Decide] = []
    while queue:
        src, effect = queue.popleft()
        if isinstance(effect, Decide):
            decided.append(effect)
        if isinstance(effect, Broadcast):
            for j, m in enumerate(machines):
                if j != src:
                    queue.extend((j, e) for e in m.handle(effect.msg, 1000))
    return decided


def test_happy_path_four_validators_decide_in_round_zero() -> None:
    machines = [Machine(CHAIN, VALIDATORS, 1, Values(), MemorySigner(k, CHAIN), 500)
                for k in KEYS]
    decided = run_network(machines)
    assert len(decided) == 4 and {d.block_hash for d in decided} == {decided[0].block_hash}
    for d in decided:
        assert d.round == 0 and d.block == b"block|h1|r0"
        d.certificate.verify(CHAIN, VALIDATORS)
        assert d.certificate.bft_time(VALIDATORS) == 1000


def test_precommit_time_is_after_the_previous_block() -> None:
    m = machine(last_block_time=5000)
    out = feed(m, [Start(), proposal(0, b"v")] + votes(PREVOTE, 0, b"v", OTHERS[:2]), now=10)
    times = [e.msg.vote.time for e in out if isinstance(e, Broadcast)]
    assert times and all(t == 5001 for t in times)


# --- lines 22-33: what a (locked) validator prevotes --------------------------------------
V, W, BAD = b"value-v", b"value-w", b"INVALID-w"
PREVOTE_CASES = {
    # name: (lock round or None, round of the proposal, block, pol_round, expected prevote)
    "unlocked, valid fresh proposal: prevote it": (None, 0, V, -1, V),
    "unlocked, invalid fresh proposal: nil": (None, 0, BAD, -1, None),
    "locked, fresh proposal of another value: nil": (0, 1, W, -1, None),
    "locked, fresh proposal of the locked value: prevote it": (0, 1, V, -1, V),
    "locked at 0, another value with a polka in round 1: prevote it": (0, 2, W, 1, W),
    "locked at 1, another value with an older polka (round 0): nil": (1, 2, W, 0, None),
    "locked at 0, invalid value with a newer polka: nil": (0, 2, BAD, 1, None),
}


@pytest.mark.parametrize("name", sorted(PREVOTE_CASES))
def test_prevote_rules(name: str) -> None:
    lock_round, round_, block, pol_round, expected = PREVOTE_CASES[name]
    m = machine()
    m.handle(Start(), 0)
    if lock_round is not None:
        lock(m, lock_round, V)
    to_round(m, round_)
    polka = votes(PREVOTE, pol_round, block, OTHERS) if pol_round >= 0 else []
    out = feed(m, polka + [proposal(round_, block, pol_round)])
    assert my_votes(out, PREVOTE) == [None if expected is None else h(expected)]


def test_a_re_proposal_waits_for_its_polka() -> None:
    m = machine()
    m.handle(Start(), 0)
    to_round(m, 1)
    assert my_votes(m.handle(proposal(1, W, 0), 0), PREVOTE) == []
    assert my_votes(feed(m, votes(PREVOTE, 0, W, OTHERS)), PREVOTE) == [h(W)]


# --- lines 34-48: timeouts, nil precommits -----------------------------------------------
def test_prevote_timeout_then_nil_precommit() -> None:
    m = machine()
    m.handle(Start(), 0)
    m.handle(TimeoutEvent(1, 0, "propose"), 0)  # lines 57-60: prevote nil
    out = feed(m, votes(PREVOTE, 0, V, OTHERS[:1]) + votes(PREVOTE, 0, W, OTHERS[1:2]))
    assert [e for e in out if isinstance(e, ScheduleTimeout)] == [
        ScheduleTimeout(1, 0, "prevote", 500)]
    assert my_votes(m.handle(TimeoutEvent(1, 0, "prevote"), 0), PRECOMMIT) == [None]


def test_two_thirds_nil_prevotes_precommit_nil() -> None:
    m = machine()
    m.handle(Start(), 0)
    m.handle(TimeoutEvent(1, 0, "propose"), 0)
    assert my_votes(feed(m, votes(PREVOTE, 0, None, OTHERS[:2])), PRECOMMIT) == [None]


def test_timeouts_grow_with_the_round() -> None:
    config = TimeoutConfig(propose_ms=1000, prevote_ms=500, precommit_ms=500, delta_ms=500)
    assert [config.delay("propose", r) for r in range(3)] == [1000, 1500, 2000]
    m = machine()
    m.handle(Start(), 0)
    delays = []
    for r in range(3):
        feed(m, votes(PRECOMMIT, r, None, OTHERS))
        out = m.handle(TimeoutEvent(1, r, "precommit"), 0)
        delays += [e.delay_ms for e in out if isinstance(e, ScheduleTimeout)]
    assert delays == [1500, 2000, 2500]


def test_stale_timeouts_are_ignored() -> None:
    m = machine()
    m.handle(Start(), 0)
    to_round(m, 2)
    assert m.handle(TimeoutEvent(1, 0, "precommit"), 0) == [] and m.round == 2


# --- lines 49-56: decide, round skip ------------------------------------------------------
def test_decide_on_two_thirds_precommits_of_an_earlier_round() -> None:
    m = machine()
    m.handle(Start(), 0)
    feed(m, [proposal(0, V)])
    to_round(m, 1)
    out = feed(m, votes(PRECOMMIT, 0, V, OTHERS))
    decide = [e for e in out if isinstance(e, Decide)]
    assert len(decide) == 1 and decide[0].round == 0 and decide[0].block == V
    decide[0].certificate.verify(CHAIN, VALIDATORS)


@pytest.mark.parametrize("voters, expected_round", [(1, 0), (2, 3)])
def test_round_skip_on_f_plus_one(voters: int, expected_round: int) -> None:
    m = machine()
    m.handle(Start(), 0)
    feed(m, votes(PREVOTE, 3, None, OTHERS[:voters]))
    assert m.round == expected_round


# --- faults -------------------------------------------------------------------------------
def test_equivocation_yields_evidence() -> None:
    m = machine()
    m.handle(Start(), 0)
    out = feed(m, votes(PREVOTE, 0, V, OTHERS[:1]) + votes(PREVOTE, 0, W, OTHERS[:1]))
    evidence = [e.evidence for e in out if isinstance(e, Evidence)]
    assert len(evidence) == 1
    evidence[0].verify(CHAIN, VALIDATORS)
    assert evidence[0].validator == OTHERS[0].public_key


def test_bad_signatures_and_strangers_are_ignored() -> None:
    m = machine()
    m.handle(Start(), 0)
    vote = votes(PREVOTE, 3, None, OTHERS[:2])
    forged = [VoteMsg(Vote(v.vote.type, 1, 3, None, 1, v.vote.validator, bytes(64))) for v in vote]
    stranger = votes(PREVOTE, 3, None, [SigningKey.from_seed(bytes(32))] * 2)
    feed(m, forged + stranger)
    assert m.round == 0
    impostor = next(k for k in OTHERS if k != key_of_proposer(1, 0))
    m.handle(ProposalMsg(Proposal.sign(impostor, CHAIN, 1, 0, -1, h(V)), V), 0)
    assert my_votes(m.handle(TimeoutEvent(1, 0, "propose"), 0), PREVOTE) == [None]


def test_observer_decides_but_never_broadcasts() -> None:
    observer = machine(key=None)
    out = feed(observer, [Start(), proposal(0, V)] + votes(PREVOTE, 0, V, OTHERS)
               + [TimeoutEvent(1, 0, "propose"), TimeoutEvent(1, 0, "prevote")]
               + votes(PRECOMMIT, 0, V, OTHERS))
    assert not any(isinstance(e, Broadcast) for e in out)
    assert [e.block for e in out if isinstance(e, Decide)] == [V]


# --- catch-up and heights -----------------------------------------------------------------
def certificate(block: bytes, keys: list[SigningKey], height: int = 1) -> Certificate:
    return Certificate.sign(keys, CHAIN, height, h(block), 1000)


COMMIT_CASES = {
    "verifying certificate: decide": (certificate(V, OTHERS), V, True),
    "too few signatures: ignored": (certificate(V, OTHERS[:2]), V, False),
    "block does not match: ignored": (certificate(V, OTHERS), W, False),
    "forged signature: ignored": (Certificate(1, 0, h(V), tuple(
        type(s)(s.validator, s.time + 1, s.signature) for s in certificate(V, OTHERS).signatures)),
        V, False),
}


@pytest.mark.parametrize("name", sorted(COMMIT_CASES))
def test_commit_msg(name: str) -> None:
    cert, block, decides = COMMIT_CASES[name]
    m = machine()
    out = feed(m, [Start(), CommitMsg(block, cert)])
    assert bool([e for e in out if isinstance(e, Decide)]) is decides


def test_future_messages_are_replayed_at_the_next_height() -> None:
    m = machine()
    feed(m, [Start()] + votes(PREVOTE, 0, None, OTHERS, height=2))
    feed(m, [CommitMsg(V, certificate(V, OTHERS))])
    m.next_height(VALIDATORS, 1000, 2000)
    assert m.height == 2 and m.votes.get(0, PREVOTE).has_two_thirds_for(None)
    out = m.handle(TimeoutEvent(2, 0, "propose"), 2500)  # prevote nil, then lines 44-46
    assert my_votes(out, PREVOTE) == [None] and my_votes(out, PRECOMMIT) == [None]


# --- bounded memory for rounds ahead ------------------------------------------------------
def test_one_validator_cannot_fill_rounds_ahead() -> None:
    """A faulty validator voting in a thousand future rounds is kept in at most
    MAX_FUTURE_ROUNDS of them, its highest; two correct validators' votes of a later round
    still make the node skip to it (f+1, lines 55-56)."""
    from medledger.consensus.votes import MAX_FUTURE_ROUNDS

    m = machine()
    m.handle(Start(), 0)
    faulty, correct = OTHERS[0], OTHERS[1:]
    feed(m, [v for r in range(1, 1001) for v in votes(PREVOTE, r, None, [faulty])])
    assert m.votes.rounds() == [0, *range(1001 - MAX_FUTURE_ROUNDS, 1001)]  # nothing else
    assert m.round == 0  # one validator is not f+1
    feed(m, votes(PREVOTE, 3, None, [faulty]))  # below the rounds kept for it: not kept
    assert not m.votes.get(3, PREVOTE).voters()
    feed(m, votes(PREVOTE, 50, None, correct))
    assert m.round == 50


def test_a_validators_latest_rounds_ahead_are_kept() -> None:
    """Two correct validators first heard in different rounds ahead (48 and 51): as they
    move on, their latest votes come to share a round, and the node skips to it."""
    m = machine()
    m.handle(Start(), 0)
    a, b = OTHERS[1], OTHERS[2]
    feed(m, votes(PREVOTE, 48, None, [a]) + votes(PREVOTE, 49, None, [a]))
    feed(m, votes(PREVOTE, 51, None, [b]) + votes(PRECOMMIT, 52, None, [b]))
    assert m.round == 0  # no round with both
    feed(m, votes(PREVOTE, 50, None, [a]))  # a moves on: its round 48 is dropped
    assert m.round == 0 and not m.votes.get(48, PREVOTE).voters()
    feed(m, votes(PREVOTE, 52, None, [a]))
    assert m.round == 52
    assert m.votes.get(52, PRECOMMIT).power_for(None) == 1


def test_refused_votes_leave_nothing_behind() -> None:
    from dataclasses import replace

    m = machine()
    m.handle(Start(), 0)
    real = votes(PREVOTE, 7, None, OTHERS[:1])[0].vote
    for r in range(1, 200):  # signatures that do not verify, each for a new round
        m.handle(VoteMsg(replace(real, round=r, signature=bytes(64))), 0)
    assert m.votes.rounds() == [0]  # its own round's, made when it looked


def test_far_ahead_proposals_are_not_kept() -> None:
    from medledger.consensus.proposals import MAX_PROPOSAL_ROUNDS_AHEAD

    m = machine()
    m.handle(Start(), 0)
    for r in range(1, 40):
        m.handle(proposal(r, f"block-r{r}".encode()), 0)
    assert m.proposals.rounds() == list(range(1, 1 + MAX_PROPOSAL_ROUNDS_AHEAD))


def test_messages_for_later_heights_are_bounded() -> None:
    """Kept for later: the next height's votes, its proposals of the first rounds, and at
    most MAX_FUTURE_BLOCKS messages that carry a block; the rest is dropped."""
    from medledger.consensus.machine import MAX_FUTURE_BLOCKS
    from medledger.consensus.proposals import MAX_PROPOSAL_ROUNDS_AHEAD

    m = machine()
    m.handle(Start(), 0)
    feed(m, votes(PREVOTE, 0, None, OTHERS, height=3))  # two heights ahead: dropped
    feed(m, [proposal(MAX_PROPOSAL_ROUNDS_AHEAD + 1, b"late", height=2)])  # far round
    assert m._future == []
    feed(m, votes(PREVOTE, 0, None, OTHERS, height=2))
    flood = [proposal(r % (MAX_PROPOSAL_ROUNDS_AHEAD + 1), f"b{r}".encode(), height=2)
             for r in range(3 * MAX_FUTURE_BLOCKS)]
    feed(m, flood)
    kept = m._future
    assert len(kept) == len(OTHERS) + MAX_FUTURE_BLOCKS
    assert all(height_of(e) == 2 for e in kept)
