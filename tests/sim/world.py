"""The simulated world: nodes, a lossy network healing at GST, and the checks.

Before GST a message may be dropped (``drop``), cut by a partition, duplicated or delayed;
from GST on every message arrives within ``delay``. Honest drivers re-send their own
messages of the current height on every timeout and every ``gossip_ms`` (gossip), and
answer a message of a lower height with a :class:`CommitMsg` for it (catch-up).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from medledger.consensus import (
    Broadcast, CommitMsg, Decide, Effect, Evidence, Machine, MemorySigner, ProposalMsg,
    ScheduleTimeout, Start, TimeoutConfig, TimeoutEvent, VoteMsg, height_of,
)
from medledger.ledger import Certificate, IntegrityError, Validator, ValidatorSet

from tests.sim.nodes import (
    CHAIN_ID, SimValues, Wire, conflicting_proposal, conflicting_vote, decode, encode_msg,
    garbage, key_of,
)
from tests.sim.scenario import Scenario

__all__ = ["Outcome", "World", "run"]

MachineFactory = Callable[..., Machine]


@dataclass
class Outcome:
    """What one run did: failures (empty when every check held) and a replayable trace."""

    scenario: str
    seed: int
    failures: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    messages: int = 0
    end_ms: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


class Node:
    """One validator's driver around its machine."""

    def __init__(self, world: World, index: int, behaviour: tuple[str, ...],
                 factory: MachineFactory) -> None:
        self.index = index
        self.behaviour = behaviour
        self.honest = not behaviour
        key = key_of(index)
        self.machine = factory(CHAIN_ID, world.validators, 1, SimValues(f"n{index}",
                               "invalid" in behaviour), MemorySigner(key, CHAIN_ID), 0,
                               world.timeouts)
        self.decided: dict[int, tuple[bytes, Certificate]] = {}
        self.evidence: list[tuple[bytes, int, int, str]] = []
        self.seen_votes: dict[tuple[bytes, int, int, str], list[bytes | None]] = {}
        self.answered: dict[tuple[int, int], int] = {}
        self.alt: dict[tuple[int, int], bytes] = {}


class World:
    """The event loop: a heap of (time, seq, node, payload)."""

    def __init__(self, scenario: Scenario, seed: int, factory: MachineFactory = Machine) -> None:
        self.s = scenario
        self.seed = seed
        self.rng = random.Random(seed)
        self.validators = ValidatorSet.of([Validator(key_of(i).public_key, p, f"n{i}")
                                           for i, p in enumerate(scenario.powers)])
        self.timeouts = TimeoutConfig(*scenario.timeouts)
        byz = {b.index: b.behaviour for b in scenario.byzantine}
        self.nodes = [Node(self, i, byz.get(i, ()), factory) for i in range(scenario.validators)]
        self.side = [self.rng.randrange(2) for _ in self.nodes] if scenario.partition else []
        self.queue: list[tuple[int, int, int, str, Any]] = []
        self.seq = 0
        self.now = 0
        self.outcome = Outcome(scenario.name, seed)
        self._sig_ok: dict[Any, bool] = {}

    # --- scheduling and the network --------------------------------------------------------
    def push(self, at: int, node: int, kind: str, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, node, kind, payload))

    def send(self, src: int, dst: int, wire: Wire) -> None:
        self.outcome.messages += 1
        before_gst = self.now < self.s.gst
        if before_gst and (self.rng.random() < self.s.drop
                           or (self.side and self.side[src] != self.side[dst])):
            return
        low, high = self.s.delay
        copies = 2 if self.rng.random() < self.s.duplicate else 1
        for _ in range(copies):
            self.push(self.now + self.rng.randint(low, high), dst, "msg", (src, wire))

    def broadcast(self, node: Node, msg: ProposalMsg | VoteMsg | CommitMsg) -> None:
        wire = encode_msg(msg)
        peers = [p for p in range(len(self.nodes)) if p != node.index]
        if "equivocate" in node.behaviour and isinstance(msg, ProposalMsg):
            other = conflicting_proposal(node.index, msg.proposal, msg.block)
            node.alt[(msg.proposal.height, msg.proposal.round)] = other.proposal.block_hash
            half = len(peers) // 2
            for p in peers[:half]:
                self.send(node.index, p, wire)
            for p in peers[half:]:
                self.send(node.index, p, encode_msg(other))
            return
        if "double-vote" in node.behaviour and isinstance(msg, VoteMsg):
            v = msg.vote
            other_vote = conflicting_vote(node.index, v, node.alt.get((v.height, v.round)))
            for i, p in enumerate(peers):
                self.send(node.index, p, wire if i % 2 == 0 else encode_msg(other_vote))
            return
        for p in peers:
            self.send(node.index, p, wire)
        if "garbage" in node.behaviour:
            for p in peers:
                self.send(node.index, p, garbage(self.rng, wire))

    # --- running ---------------------------------------------------------------------------
    def run(self) -> Outcome:
        for node in self.nodes:
            if "silent" not in node.behaviour:
                self.apply(node, node.machine.handle(Start(), 0))
                self.push(self.s.gossip_ms, node.index, "gossip", None)
        deadline = self.s.gst + self.s.progress_ms
        while self.queue and not self.done():
            at, _, index, kind, payload = heapq.heappop(self.queue)
            if at > deadline:
                break
            self.now = at
            self.step(self.nodes[index], kind, payload)
        self.outcome.end_ms = self.now
        self.check()
        return self.outcome

    def done(self) -> bool:
        return all(len(n.decided) >= self.s.heights for n in self.nodes if n.honest)

    def step(self, node: Node, kind: str, payload: Any) -> None:
        m = node.machine
        if kind == "gossip":
            self.regossip(node)
            self.push(self.now + self.s.gossip_ms, node.index, "gossip", None)
        elif kind == "timeout":
            self.apply(node, m.handle(payload, self.now))
            self.regossip(node)
        else:
            src, wire = payload
            msg = self.authentic(decode(wire))
            if msg is None:
                return
            height = height_of(msg)
            if height < m.height and height in node.decided:
                self.answer(node, src, height)
                return
            if isinstance(msg, VoteMsg) and height == m.height and m.decision is None:
                v = msg.vote
                seen = node.seen_votes.setdefault((v.validator, v.height, v.round, v.type), [])
                if v.block_hash not in seen:
                    seen.append(v.block_hash)
            self.apply(node, m.handle(msg, self.now))

    def authentic(self, msg: ProposalMsg | VoteMsg | CommitMsg | None
                  ) -> ProposalMsg | VoteMsg | CommitMsg | None:
        """Check a signature once per distinct message (the driver's job, cached); return
        the message marked verified, or None to drop it."""
        if msg is None or isinstance(msg, CommitMsg):
            return msg  # the machine verifies certificates itself
        signed = msg.proposal if isinstance(msg, ProposalMsg) else msg.vote
        ok = self._sig_ok.get(signed)
        if ok is None:
            ok = signed.signature_valid(CHAIN_ID)
            self._sig_ok[signed] = ok
        return replace(msg, verified=True) if ok else None

    def answer(self, node: Node, dst: int, height: int) -> None:
        last = node.answered.get((dst, height), -10**9)
        if self.now - last >= self.s.gossip_ms:
            node.answered[(dst, height)] = self.now
            block, cert = node.decided[height]
            self.send(node.index, dst, encode_msg(CommitMsg(block, cert)))

    def regossip(self, node: Node) -> None:
        if "silent" in node.behaviour:
            return
        for msg in node.machine.gossip():
            self.broadcast(node, msg)

    def apply(self, node: Node, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Broadcast):
                if "silent" not in node.behaviour:
                    self.broadcast(node, e.msg)
            elif isinstance(e, ScheduleTimeout):
                self.push(self.now + e.delay_ms, node.index, "timeout",
                          TimeoutEvent(e.height, e.round, e.step))
            elif isinstance(e, Evidence):
                ev = e.evidence
                node.evidence.append((ev.validator, ev.height, ev.vote_a.round, ev.vote_a.type))
            elif isinstance(e, Decide):
                self.decide(node, e)

    def decide(self, node: Node, d: Decide) -> None:
        node.decided[d.height] = (d.block, d.certificate)
        self.outcome.trace.append(f"{self.now} n{node.index} h{d.height} r{d.round} "
                                  f"{d.block_hash.hex()[:16]}")
        bft = d.certificate.bft_time(self.validators)
        self.apply(node, node.machine.next_height(self.validators, bft, self.now))

    # --- the checks ------------------------------------------------------------------------
    def check(self) -> None:
        fail = self.outcome.failures
        honest = [n for n in self.nodes if n.honest]
        verified: dict[bytes, bool] = {}
        for h in range(1, 1 + max((len(n.decided) for n in honest), default=0)):
            hashes = sorted({n.decided[h][1].block_hash.hex() for n in honest if h in n.decided})
            if len(hashes) > 1:
                fail.append(f"agreement: height {h} decided differently: {hashes}")
        for n in honest:
            for h, (block, cert) in sorted(n.decided.items()):
                if not SimValues("check").valid(h, block):
                    fail.append(f"validity: n{n.index} decided invalid block {block!r} at {h}")
                digest = hashlib.sha256(repr(cert.to_dict()).encode()).digest()
                if digest not in verified:
                    verified[digest] = _verifies(cert, self.validators)
                if not verified[digest] or cert.block_hash != hashlib.sha256(block).digest():
                    fail.append(f"validity: n{n.index} certificate at {h} does not verify")
            if len(n.decided) < self.s.heights:
                fail.append(f"progress: n{n.index} decided {len(n.decided)} of "
                            f"{self.s.heights} heights by {self.now} ms (GST {self.s.gst})")
            for (validator, h, r, t), hashes in sorted(n.seen_votes.items(),
                                                        key=lambda kv: kv[0]):
                if len(hashes) > 1 and (validator, h, r, t) not in n.evidence:
                    fail.append(f"evidence: n{n.index} saw two {t}s by {validator.hex()[:8]} "
                                f"at h{h} r{r} but reported nothing")


def _verifies(cert: Certificate, validators: ValidatorSet) -> bool:
    try:
        cert.verify(CHAIN_ID, validators)
    except IntegrityError:
        return False
    return True


def run(scenario: Scenario, seed: int, factory: MachineFactory = Machine) -> Outcome:
    """Run one seed of ``scenario`` and check it."""
    return World(scenario, seed, factory).run()
