"""The consensus driver: runs the pure consensus machine against the network, the clock and
the chain, for a node of a multi-validator chain.

It turns the machine's effects into I/O and peers' messages into the machine's events:

- ``Broadcast`` -> a payload to every connected peer (:class:`~medledger.p2p.Transport`);
- ``ScheduleTimeout`` -> a timer on the event loop that feeds ``TimeoutEvent`` back;
- ``Decide`` -> the block, checked earlier by :class:`~medledger.node.values.BlockValues`,
  is committed with its certificate (in a thread), waiters are answered, and after
  ``block_interval_ms`` the machine moves to the next height;
- ``Evidence`` -> an ``evidence.submit`` transaction signed with the validator key.

Peer messages (canonical JSON, see docs/consensus.md): ``proposal``, ``vote``, ``commit``
(a decided block with its certificate), ``txs`` (gossiped transactions) and ``status`` (a
peer's height; a peer that is behind is sent the commits it misses, which is block sync).
Proposed blocks are checked (re-executed) in a thread before the machine sees them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medledger.codec import decode_trusted, encode
from medledger.consensus import (
    Broadcast,
    CommitMsg,
    Decide,
    Evidence,
    Machine,
    ProposalMsg,
    ScheduleTimeout,
    Signer,
    Start,
    TimeoutConfig,
    TimeoutEvent,
    VoteMsg,
    height_of,
)
from medledger.consensus.proposals import MAX_PROPOSAL_ROUNDS_AHEAD
from medledger.ledger import (
    Block,
    Certificate,
    LedgerError,
    Proposal,
    Transaction,
    Vote,
)
from medledger.p2p import P2PError, Transport, check_certificate, decode_message, encode_message
from medledger.p2p.connection import Limits
from medledger.node.chain import result_of
from medledger.node.values import BlockValues

__all__ = ["ConsensusDriver"]

log = logging.getLogger("medledger.consensus")

STATUS_EVERY_S = 1.0
SYNC_BLOCKS_PER_ANSWER = 8
# A peer one height behind is usually still committing that height itself, from the votes
# it has: it is sent the commit only when it is still behind this long after this node
# committed (a full block each time would cost more than the block's own execution).
BEHIND_BY_ONE_S = 2.0
MAX_FRAME = 64 * 1024 * 1024
IDLE_BLOCK_S = 30.0
FETCH_TIMEOUT_S = 2.0
MAX_FETCH = 20_000
_TXS_START = b'{"kind":"txs","txs":'
  # with nothing to commit, a block at least this often (time moves on)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class ConsensusDriver:
    """Consensus for ``node`` with its peers; see the module docstring."""

    def __init__(self, node: Any, signer: Signer | None,
                 certificates: dict[bytes, bytes] | Callable[[], dict[bytes, bytes]],
                 tls_dir: Path, timeouts: TimeoutConfig | None = None) -> None:
        """``certificates``: node key -> TLS certificate DER of the nodes this one may know
        (or a function reading them); only the keys of the current validator sets may
        connect, so a validator removed by governance is disconnected."""
        self.node = node
        self.chain = node.chain
        self.signer = signer
        config = node.config
        self.values = BlockValues(self.chain, node.mempool, node.key.public_key,
                                  max_txs=config.max_block_txs,
                                  max_bytes=config.max_block_bytes,
                                  mempool_lock=node._mempool_lock,
                                  chain_lock=node._produce_lock)
        self.machine = Machine(self.chain.chain_id, self.chain.validators, self.chain.height + 1,
                               self.values, signer, self._last_block_time(),
                               timeouts or TimeoutConfig())
        self._certificates = certificates
        self._members_of = self.chain.validators.hash()
        self.transport = Transport(node.key, config.p2p, config.peer_list(), self.members,
                                   self._on_payload, tls_dir,
                                   limits=Limits(max_frame=MAX_FRAME))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = False  # a decided block is being committed
        self._held: list[Any] = []  # events that arrived meanwhile
        self._stopping = False
        self.last_decided_round = 0
        self._committed_at = time.monotonic()  # when this node last committed a height
        self._peer_heights: dict[bytes, int] = {}  # each peer's height, from its status
        self._asked_up_to = 0  # the commits asked for reach this height

    def members(self) -> dict[bytes, bytes]:
        """The certificates of the validators of the tip and of the next height: from the
        operators' file first, else the one a ``validator_add`` carried (used only once it
        checks out as self-signed by that validator's key)."""
        source = self._certificates
        certs = source() if callable(source) else source
        keys = {v.public_key for v in self.chain.validators.validators}
        keys.update(v.public_key for v in self.chain.tip_validators.validators)
        found = {key: cert for key, cert in certs.items() if key in keys}
        for key in keys - found.keys():
            cert = self._certificate_in_state(key)
            if cert is not None:
                found[key] = cert
        return dict(sorted(found.items()))

    def _certificate_in_state(self, key: bytes) -> bytes | None:
        raw = self.chain.committed_value(self.chain.registry.validators.certificate_key(key))
        if raw is None:
            return None
        try:
            der = bytes.fromhex(decode_trusted(raw))
            check_certificate(der, key)
        except (ValueError, TypeError) as e:  # CertificateError is a ValueError
            log.warning("the certificate governance holds for validator %s is not usable: %s",
                        key.hex()[:12], e)
            return None
        return der

    def _follow_validator_set(self) -> None:
        """After a commit that changed the validator set: reconnect to the new members."""
        current = self.chain.validators.hash()
        if current != self._members_of:
            self._members_of = current
            log.warning("validator set changed at height %d: %d validators",
                        self.chain.height + 1, len(self.chain.validators.validators))
            if self.chain.validators.power_of(self.node.key.public_key) == 0:
                log.warning("this node's key is not in the set from height %d: the "
                            "validators will no longer connect to it, and it will fall "
                            "behind", self.chain.height + 1)
            self.transport.set_members()

    def _last_block_time(self) -> int:
        header = self.chain.tip_header
        return header.time if header is not None else self.chain.genesis.genesis_time

    # life cycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.transport.start()
        self.node.gossip = self._gossip_txs
        self._spawn(self._status_loop())
        self._feed(Start())

    async def stop(self) -> None:
        self._stopping = True
        for timer in self._timers:
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self.transport.stop()

    def status(self) -> dict[str, Any]:
        return {"round": self.machine.round, "step": self.machine.step,
                "peers": len(self.transport.connected())}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # events in, effects out -----------------------------------------------------------------
    def _feed(self, event: Any) -> None:
        if self._stopping:
            return
        if self._busy:
            self._held.append(event)
            return
        self._apply(self.machine.handle(event, _now_ms()))

    def _apply(self, effects: list[Any]) -> None:
        for effect in effects:
            if isinstance(effect, Broadcast):
                self._broadcast(effect.msg)
            elif isinstance(effect, ScheduleTimeout):
                self._schedule(effect)
            elif isinstance(effect, Decide):
                self._busy = True
                self._spawn(self._commit(effect))
            elif isinstance(effect, Evidence):
                self._submit_evidence(effect)

    def _schedule(self, t: ScheduleTimeout) -> None:
        assert self._loop is not None
        self._timers = [h for h in self._timers if not h.cancelled()][-64:]
        event = TimeoutEvent(t.height, t.round, t.step)
        self._timers.append(self._loop.call_later(t.delay_ms / 1000, self._feed, event))

    def _broadcast(self, msg: ProposalMsg | VoteMsg) -> None:
        try:
            self.transport.broadcast(_encode(msg))
        except P2PError as e:
            log.warning("could not broadcast: %s", e)

    # deciding ---------------------------------------------------------------------------------
    async def _commit(self, decided: Decide) -> None:
        try:
            checked = self.values.checked(decided.block_hash)
            if checked is None:
                checked = await asyncio.to_thread(self.values.check, decided.height,
                                                  decided.block)
            if checked is None:
                raise RuntimeError(f"decided block {decided.block_hash.hex()} does not check "
                                   "out here: this node's state differs from the others'")
            block, record = checked
            committed = await asyncio.to_thread(self._commit_in_thread, block, record,
                                                decided.certificate)
            self._committed_at = time.monotonic()
            self.node._notify(committed)
            self._follow_validator_set()
            self._ask_for_more()
            self.last_decided_round = decided.round
            log.info("committed height %d (round %d, %d txs)", decided.height, decided.round,
                     len(block.txs))
            await self._wait_for_next_height()
        finally:
            self._busy = False
        if self._stopping:
            return
        effects = self.machine.next_height(self.chain.validators, self._last_block_time(),
                                           _now_ms())
        self._apply(effects)
        held, self._held = self._held, []
        for event in held:
            self._feed(event)

    def _commit_in_thread(self, block: Block, record: Any, certificate: Certificate) -> Any:
        with self.node._produce_lock:
            committed = self.chain.commit(block, record, certificate)
            with self.node._mempool_lock:
                self.node.mempool.remove(block.txs)
                # what another node's block made stale would only fail in a later block
                stale = self.node.mempool.drop_stale({tx.sender for tx in block.txs},
                                                     self.chain.last_nonce)
            if stale:
                log.info("dropped %d waiting transactions whose nonce a block used", len(stale))
        return committed

    async def _wait_for_next_height(self) -> None:
        """``block_interval_ms`` between heights; then, with an empty mempool, wait for
        transactions or a peer's message of the next height (or :data:`IDLE_BLOCK_S`).
        A node catching up (a peer two or more heights ahead) does not wait."""
        if not self._catching_up():
            await asyncio.sleep(self.node.config.block_interval_ms / 1000)
        deadline = time.monotonic() + IDLE_BLOCK_S
        while (not self._stopping and not len(self.node.mempool) and not self._proposed()
               and time.monotonic() < deadline):
            await asyncio.sleep(0.05)

    def _catching_up(self) -> tuple[bytes, int] | None:
        """The most advanced peer and its height, if it is two or more heights ahead."""
        best = max(self._peer_heights.items(), key=lambda item: item[1], default=None)
        return best if best is not None and best[1] >= self.chain.height + 2 else None

    def _ask_for_more(self) -> None:
        """While catching up: once the commits asked for are applied, ask the most advanced
        peer for the next ones at once, rather than at the next status round (block sync
        then runs at the speed of checking blocks, not one answer a second)."""
        ahead = self._catching_up()
        if ahead is None or self.chain.height < self._asked_up_to:
            return
        peer, height = ahead
        if not self.transport.send(peer, encode_message("status", {"height": self.chain.height})):
            del self._peer_heights[peer]  # gone: its next status brings it back
            return
        self._asked_up_to = min(height, self.chain.height + SYNC_BLOCKS_PER_ANSWER)

    def _proposed(self) -> bool:
        """A peer has moved on to the next height (proposed, voted or decided there)."""
        return any(height_of(e) == self.chain.height + 1 for e in self._held)

    # peers ------------------------------------------------------------------------------------
    async def _on_payload(self, peer: bytes, payload: bytes) -> None:
        try:
            if payload.startswith(_TXS_START) and payload.endswith(b"}"):
                # gossiped transactions go to intake as the list they are: the workers
                # parse them strictly, once
                await self.node.submit_batch_bytes(payload[len(_TXS_START):-1], 10_000,
                                                   gossip=False)
                return
            kind, body = decode_message(payload)
            await self._on_message(peer, kind, body)
        except (P2PError, LedgerError, KeyError, TypeError, ValueError) as e:
            log.info("dropped a message from %s: %s", peer.hex()[:12], e)  # BatchRefused too

    async def _on_message(self, peer: bytes, kind: str, body: dict[str, Any]) -> None:
        if kind == "vote":
            self._feed(VoteMsg(Vote.from_dict(body["vote"])))
        elif kind == "proposal":
            await self._on_proposal(peer, Proposal.from_dict(body["proposal"]), body["block"])
        elif kind == "get_txs":
            self._answer_get_txs(peer, body["ids"])
        elif kind == "tx_data":
            self.values.add_fetched([Transaction.from_dict(t) for t in body["txs"]])
        elif kind == "commit":
            cert = Certificate.from_dict(body["certificate"])
            block = await self._precheck(cert.height, body["block"])
            self._feed(CommitMsg(block, cert))
        elif kind == "txs":
            await self.node.submit_batch_bytes(encode(body["txs"]), 10_000, gossip=False)
        elif kind == "status":
            height = int(body["height"])
            self._peer_heights[peer] = height
            self._answer_status(peer, height)

    async def _on_proposal(self, peer: bytes, proposal: Proposal, block_dict: Any) -> None:
        """Feed a proposal once its block is complete here. A compact block never reaches
        the machine while it names transactions this node lacks: the machine would take
        "not here yet" for "invalid" for the rest of the height."""
        nxt = self.chain.height + 1
        if proposal.height > nxt + 1 or (proposal.height > nxt and
                                         proposal.round > MAX_PROPOSAL_ROUNDS_AHEAD):
            return  # the machine would not keep it (a commit will bring that height)
        if proposal.height > nxt:  # kept by the machine for later: give it the full block
            try:
                block = self.values.expand(block_dict)
            except Exception:  # incomplete or malformed: a commit will bring the height
                return
            self._feed(ProposalMsg(proposal, block.encode()))
            return
        if proposal.height == nxt and self.values.missing(block_dict):
            # fetch without holding up this peer's other messages (the answer among them)
            self._spawn(self._fetch_then_feed(peer, proposal, block_dict))
            return
        self._feed(ProposalMsg(proposal, await self._precheck(proposal.height, block_dict)))

    async def _fetch_then_feed(self, peer: bytes, proposal: Proposal, block_dict: Any) -> None:
        """Ask the proposer for the transactions a compact block names and this node lacks;
        wait (bounded) for them, then check the block and feed the proposal."""
        missing = self.values.missing(block_dict)
        self.transport.send(peer, encode_message("get_txs", {"ids": [m.hex() for m in missing]}))
        deadline = time.monotonic() + FETCH_TIMEOUT_S
        while self.values.missing(block_dict) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.values.missing(block_dict):
            log.info("proposal %d/%d: %d transactions could not be fetched", proposal.height,
                     proposal.round, len(self.values.missing(block_dict)))
            return
        if proposal.height == self.chain.height + 1:
            self._feed(ProposalMsg(proposal, await self._precheck(proposal.height, block_dict)))

    def _answer_get_txs(self, peer: bytes, ids: list[str]) -> None:
        found = []
        for value in ids[:MAX_FETCH]:
            tx = self.values.find(bytes.fromhex(value))
            if tx is not None:
                found.append(decode_trusted(tx.raw))
        if found:
            self.transport.send(peer, encode_message("tx_data", {"txs": found}))

    async def _precheck(self, height: int, block_dict: Any) -> bytes:
        """The block's canonical bytes; a block of the next height is checked (re-executed)
        in a thread first, from the dict already parsed strictly, so the machine's
        ``valid`` finds the verdict ready."""
        data = encode(block_dict)
        if height == self.chain.height + 1 and not self._busy:
            def check() -> None:
                try:
                    parsed = self.values.expand(block_dict)
                except Exception:  # malformed or incomplete: the machine's own check says so
                    return
                self.values.check(height, data, parsed)
            await asyncio.to_thread(check)
        return data

    def _answer_status(self, peer: bytes, height: int) -> None:
        """A peer behind us gets the commits it misses (a few per answer); one that is a
        single height behind only once it has had :data:`BEHIND_BY_ONE_S` to commit it."""
        behind = self.chain.height - height
        if behind <= 0 or (behind == 1 and
                           time.monotonic() - self._committed_at < BEHIND_BY_ONE_S):
            return
        last = min(self.chain.height, height + SYNC_BLOCKS_PER_ANSWER)
        for h in range(height + 1, last + 1):
            found = stored_commit(self.node.store, h)
            if found is None:
                return
            block, cert = found
            body = {"block": block.to_dict(), "certificate": cert.to_dict()}
            if not self.transport.send(peer, encode_message("commit", body)):
                return

    async def _status_loop(self) -> None:
        while not self._stopping:
            try:
                self.transport.broadcast(encode_message("status", {"height": self.chain.height}))
                if not self._busy:
                    for msg in self.machine.gossip():
                        self._broadcast(msg)
            except P2PError as e:
                log.warning("status broadcast failed: %s", e)
            await asyncio.sleep(STATUS_EVERY_S)

    def _gossip_txs(self, txs: list[Transaction]) -> None:
        """Send transactions clients gave this node to every peer: canonical JSON
        ``{"kind":"txs","txs":[...]}`` written from the transactions' own bytes."""
        if txs:
            self.transport.broadcast(_TXS_START + b"[" + b",".join(tx.raw for tx in txs) + b"]}")

    def _submit_evidence(self, found: Evidence) -> None:
        log.warning("validator %s signed two conflicting votes at height %d",
                    found.evidence.validator.hex()[:12], found.evidence.height)
        self.node.submit_evidence(found.evidence)


def stored_commit(store: Any, height: int) -> tuple[Block, Certificate] | None:
    """A committed block rebuilt from the store, with the certificate this node holds."""
    stored = store.get_block(height)
    if stored is None:
        return None
    from medledger.codec import decode
    from medledger.ledger import Header

    rows = store.get_block_txs(height)
    last = None if stored.last_commit is None else Certificate.from_dict(decode(stored.last_commit))
    block = Block(Header.from_dict(decode(stored.header)),
                  tuple(Transaction.decode(r.raw) for r in rows),
                  tuple(result_of(r) for r in rows), last)
    return block, Certificate.from_dict(decode(stored.certificate))


def _encode(msg: ProposalMsg | VoteMsg) -> bytes:
    if isinstance(msg, VoteMsg):
        return encode_message("vote", {"vote": msg.vote.to_dict()})
    return encode_message("proposal", {"block": decode_trusted(msg.block),
                                       "proposal": msg.proposal.to_dict()})
