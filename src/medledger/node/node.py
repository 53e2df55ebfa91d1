"""A running node: mempool admission, block production on a timer, commit notifications.

One validator for now: the node proposes, signs the commit certificate with its own key and
commits. All work runs on one asyncio loop (the API's), so there are no locks; the wall
clock is read here, at the edge, and handed to the chain as the time the validator signs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medledger.apps import AppRegistry, Rejected, default_registry
from medledger.crypto import SigningKey
from medledger.ledger import Block, MalformedError, Transaction
from medledger.node.chain import Chain, CommittedBlock, nonce_key
from medledger.node.config import ConfigError, NodeConfig
from medledger.node.genesis import Genesis
from medledger.node.home import Home
from medledger.node.mempool import Mempool
from medledger.node.verifier import BatchRefused, SignatureVerifier
from medledger.node.verify import verify_store
from medledger.store import SQLiteStore, Store, StoredTx

__all__ = ["BatchRefused", "Node", "Submitted"]

log = logging.getLogger("medledger.node")


@dataclass(frozen=True, slots=True)
class Submitted:
    """The answer to one submitted transaction: its id, or why it was refused."""

    tx_id: bytes | None
    code: str
    message: str

    @property
    def accepted(self) -> bool:
        return self.code == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"tx_id": self.tx_id.hex() if self.tx_id else None, "code": self.code,
                "message": self.message}


def _driver(node: Node, home: Home) -> Any:
    """The consensus driver of a node of a multi-validator chain (members' certificates
    from ``HOME/members.json`` if there is one, and from ``validator_add`` changes; the
    signer's state in ``HOME/data/privval.json``)."""
    from medledger.codec import decode
    from medledger.node.driver import ConsensusDriver
    from medledger.node.privval import FileSigner

    path = home.path / "members.json"

    def certificates() -> dict[bytes, bytes]:
        """Node certificates by key, from members.json (re-read when the set changes); none
        when there is no such file (those that ``validator_add`` changes carried serve)."""
        if not path.exists():
            return {}
        try:
            found = decode(path.read_bytes())
            return {bytes.fromhex(k): bytes.fromhex(v) for k, v in found.items()}
        except (ValueError, TypeError, AttributeError) as e:  # CodecError is a ValueError
            raise ConfigError(f"{path}: not a JSON object of key hex -> certificate hex "
                              f"({e})") from e

    certificates()  # a malformed file stops the start, with the reason
    # always a signer: a key that gains power by governance votes from then on (others
    # ignore the votes of a key without power)
    signer = FileSigner(node.key, node.chain.chain_id, home.path / "data" / "privval.json")
    from medledger.consensus import TimeoutConfig

    config = node.config
    timeouts = TimeoutConfig(propose_ms=config.timeout_propose_ms,
                             prevote_ms=config.timeout_vote_ms,
                             precommit_ms=config.timeout_vote_ms,
                             delta_ms=config.timeout_delta_ms)
    return ConsensusDriver(node, signer, certificates, home.path / "data" / "tls", timeouts)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Node:
    """One validator node over a store."""

    def __init__(
        self,
        store: Store,
        genesis: Genesis,
        key: SigningKey,
        config: NodeConfig,
        registry: AppRegistry | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.config = config
        self.key = key
        self.clock = clock
        self.chain = Chain(store, genesis, registry or default_registry())
        self.mempool = Mempool(config.mempool_max_txs)
        self._waiters: dict[bytes, list[asyncio.Future[StoredTx]]] = {}
        self._wake: asyncio.Event | None = None
        self._stopping = False
        # commit notification: an event (with its loop) that the next commit or stop sets
        # and replaces; wait_new_block() waits on it
        self._new_block: tuple[asyncio.Event, asyncio.AbstractEventLoop] | None = None
        self.verifier = SignatureVerifier()
        self._mempool_lock = threading.Lock()
        self._produce_lock = threading.Lock()
        self.last_block_time = 0.0
        #: called with the transactions clients submitted here, once admitted (the
        #: consensus driver sends them to the peers); never with those from peers
        self.gossip: Callable[[list[Transaction]], None] | None = None
        #: the consensus driver of a multi-validator chain (None: this node commits alone)
        self.driver: Any = None
        self._home: Home | None = None  # set by open(): where a driver finds its files
        # the set of the next height: the genesis set, or the one governance made since
        validators = self.chain.validators
        power = validators.power_of(key.public_key)
        #: True when this node's own signature is a commit certificate (>2/3 of the power
        #: of the next height's set)
        self.commits_alone = self._alone()
        if power == 0:
            log.warning("this node's key is not a validator: it cannot commit blocks")
        elif not self.commits_alone:
            log.info("this validator holds %d of %d voting power: blocks need the "
                     "consensus of its peers", power, validators.total_power)

    def _alone(self) -> bool:
        validators = self.chain.validators
        return 3 * validators.power_of(self.key.public_key) > 2 * validators.total_power

    @classmethod
    def open(cls, home: Home, api: str | None = None, verify: bool | None = None) -> Node:
        """Open the node in ``home``; verify the store first unless told not to."""
        config = home.config().with_api(api)
        genesis = home.genesis()
        store = SQLiteStore(home.store_path)
        if config.verify_on_start if verify is None else verify:
            verify_store(store, genesis, signatures=False)
        from medledger.node.engine import EngineHome

        engine = EngineHome(home.path)
        if engine.exists():
            from medledger.node.engine_node import EngineNode

            return EngineNode(store, genesis, home.validator_key(), config, engine)
        node = cls(store, genesis, home.validator_key(), config)
        node._home = home
        if not node.commits_alone:
            node.driver = _driver(node, home)
        return node

    # admission --------------------------------------------------------------------------
    def submit_dict(self, data: Any, *, checked: bool = False) -> Submitted:
        """Admit a transaction given as a decoded dict (``checked``: it came from our
        strict decoder)."""
        try:
            tx = Transaction.from_dict(data, checked=checked)
        except MalformedError as e:
            return Submitted(None, "malformed", str(e))
        return self.submit(tx)

    async def submit_async(self, data: Any, *, checked: bool = False) -> Submitted:
        """:meth:`submit_dict` for the API (a node on an engine submits asynchronously)."""
        return self.submit_dict(data, checked=checked)

    def submit(self, tx: Transaction, signature_ok: bool | None = None,
               stateless: tuple[str, str] | bool | None = None) -> Submitted:
        """Admit a decoded transaction to the mempool after every check.

        ``signature_ok`` and ``stateless`` pass on checks already done by a worker (see
        :meth:`submit_batch_bytes`): the verdict, and False or the ``(code, message)``
        refusal of the app's stateless check.
        """
        result = self._submit(tx, signature_ok, stateless)
        if result.accepted and self.gossip is not None:
            self.gossip([tx])
        return result

    def _submit(self, tx: Transaction, signature_ok: bool | None = None,
                stateless: tuple[str, str] | bool | None = None) -> Submitted:
        try:
            self._admit(tx, signature_ok, stateless)
        except Rejected as e:
            return Submitted(tx.tx_id, e.code, e.message)
        if self._wake is not None:
            self._wake.set()
        return Submitted(tx.tx_id, "ok", "")

    async def submit_batch_bytes(self, body: bytes, max_items: int, *, gossip: bool = True
                                 ) -> list[Submitted]:
        """Admit a JSON list of transactions. Decoding, shape checks and signatures run in a
        worker process; admission checks then run here, in order. Raises BatchRefused.

        ``gossip=False`` for transactions that came from a peer (every peer has them)."""
        out = []
        prepared = await self.verifier.prepare(body, max_items)
        self._prefetch([tx for tx, verdict, stateless in prepared
                        if tx is not None and verdict is True and stateless is None])
        admitted = []
        for tx, verdict, stateless in prepared:
            if tx is None:
                out.append(Submitted(None, "malformed", str(verdict)))
                continue
            result = self._submit(tx, bool(verdict), stateless or False)
            out.append(result)
            if result.accepted:
                admitted.append(tx)
        if gossip and admitted and self.gossip is not None:
            self.gossip(admitted)
        return out

    def submit_evidence(self, evidence: Any) -> Submitted:
        """Sign an ``evidence.submit`` with this node's key and admit it (the driver calls
        this when it sees a validator sign two conflicting votes)."""
        nonce = max(self.chain.last_nonce(self.key.public_key),
                    self.mempool.pending_nonce(self.key.public_key)) + 1
        tx = Transaction.create(self.key, self.chain.chain_id, "evidence.submit", nonce,
                                {"evidence": evidence.to_dict()})
        return self.submit(tx, True)

    def _prefetch(self, txs: list[Transaction]) -> None:
        """Fetch the state the admission checks of ``txs`` will read, in one query."""
        registry = self.chain.registry
        keys = [nonce_key(tx.sender) for tx in txs]
        for tx in txs:
            keys.extend(registry.reads(tx))
        self.chain.prefetch(keys)

    def _admit(self, tx: Transaction, signature_ok: bool | None = None,
               stateless: tuple[str, str] | bool | None = None) -> None:
        if tx.chain_id != self.chain.chain_id:
            raise Rejected("chain_id", f"signed for chain {tx.chain_id!r}, "
                                       f"this is {self.chain.chain_id!r}")
        if tx.tx_id in self.mempool:
            raise Rejected("duplicate", "this transaction is already waiting in the mempool")
        if self.mempool.full_for(tx):
            raise Rejected("mempool_full", "the mempool is full; retry later")
        if not (tx.signature_valid() if signature_ok is None else signature_ok):
            raise Rejected("signature", "the signature does not verify for the sender key")
        if isinstance(stateless, tuple):
            raise Rejected(*stateless)
        with self._mempool_lock:  # the block producer runs in another thread
            if tx.tx_id in self.mempool:
                raise Rejected("duplicate", "this transaction is already waiting in the mempool")
            self.chain.check(tx, self.mempool.pending_nonce(tx.sender),
                             stateless_done=stateless is False)
            self.mempool.add(tx)

    # blocks -----------------------------------------------------------------------------
    def produce_block(self) -> CommittedBlock | None:
        """Commit the next block from the mempool (None when it is empty)."""
        committed = self._produce()
        if committed is not None:
            self._notify(committed)
        return committed

    def _produce(self) -> CommittedBlock | None:
        """Build and commit a block; safe to run in a thread beside admission."""
        with self._produce_lock:
            with self._mempool_lock:
                txs = self.mempool.take(self.config.max_block_txs, self.config.max_block_bytes)
            if not txs:
                return None
            # blocks start an interval apart: one that took longer is followed at once
            self.last_block_time = time.monotonic()
            committed = self.chain.commit_next(txs, self.key, self.clock())
            with self._mempool_lock:
                self.mempool.remove(txs)
            return committed

    def _notify(self, committed: CommittedBlock) -> None:
        self._notify_block(committed.block)

    def _notify_block(self, block: Block) -> None:
        """Wake who waits for a new block, and answer who waits for one of its txs."""
        self._wake_block_waiters()
        if not self._waiters:
            return
        height = block.header.height
        for index, (tx, result) in enumerate(zip(block.txs, block.results, strict=True)):
            for future in self._waiters.pop(tx.tx_id, ()):
                if not future.done():
                    future.set_result(StoredTx(tx.tx_id, height, index, tx.raw, result.code,
                                               result.message, result.events_bytes))

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (streams that follow commits end then)."""
        return self._stopping

    def _wake_block_waiters(self) -> None:
        """Wake whoever waits in :meth:`wait_new_block` (from any thread)."""
        pending, self._new_block = self._new_block, None
        if pending is None:
            return
        event, loop = pending
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def wait_new_block(self, after_height: int, timeout: float) -> int:
        """Wait until a block above ``after_height`` is committed, the node stops, or
        ``timeout`` seconds pass; return the chain's height then. Wakes on the commit itself
        (no polling): callers re-read the store, and may call again with the new height."""
        height = self.chain.height
        if height > after_height or self._stopping or timeout <= 0:
            return height
        loop = asyncio.get_running_loop()
        if self._new_block is None or self._new_block[1] is not loop:
            self._wake_block_waiters()  # one loop at a time; a waiter of another just re-checks
            self._new_block = (asyncio.Event(), loop)
        event = self._new_block[0]
        if self.chain.height > after_height:  # committed while the event was being made
            return self.chain.height
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        return self.chain.height

    async def wait_committed(self, tx_id: bytes, timeout: float) -> StoredTx | None:
        """Wait until ``tx_id`` is committed (None on timeout)."""
        stored = self.store.get_tx(tx_id)
        if stored is not None:
            return stored
        future: asyncio.Future[StoredTx] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_id, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(tx_id)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[tx_id]

    async def run(self) -> None:
        """Produce a block once the block interval has passed since the last one began, or
        at once when a full block is waiting; sleep while the mempool is empty."""
        self._wake = asyncio.Event()
        if not self.commits_alone:
            return  # blocks come from consensus with the peers, not from this loop
        interval = self.config.block_interval_ms / 1000
        full = self.config.max_block_txs
        while not self._stopping:
            if not len(self.mempool):
                await self._wake.wait()
                self._wake.clear()
                continue
            deadline = self.last_block_time + interval
            while not self._stopping and len(self.mempool) < full:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await asyncio.sleep(min(left, 0.01))
            if not self._stopping:
                # in a thread: intake, which mostly waits on worker processes, goes on
                committed = await asyncio.to_thread(self._produce)
                if committed is not None:
                    self._notify(committed)
                    if not self._alone():
                        await self._join_consensus()
                        return
            await asyncio.sleep(0)

    async def _join_consensus(self) -> None:
        """Governance gave the chain more validators: from the next height blocks need
        their consensus. A node opened from its home starts its consensus driver now."""
        self.commits_alone = False
        size = len(self.chain.validators.validators)
        if self._home is None or self._stopping:
            log.warning("from height %d blocks need the consensus of %d validators; restart "
                        "this node from its home to take part", self.chain.height + 1, size)
            return
        log.warning("from height %d blocks need the consensus of %d validators: joining "
                    "them (p2p %s)", self.chain.height + 1, size, self.config.p2p)
        try:
            driver = _driver(self, self._home)
        except ConfigError as e:
            log.error("cannot join consensus: %s; fix it and restart this node", e)
            return
        self.driver = driver
        await driver.start()

    def stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        self._wake_block_waiters()

    def close(self) -> None:
        self.stop()
        self.verifier.close()
        self.store.close()

    def status(self) -> dict[str, Any]:
        chain = self.chain
        return {
            "chain_id": chain.chain_id,
            "height": chain.height,
            "latest_block_hash": chain.tip_hash.hex(),
            "latest_block_time": chain.tip_header.time if chain.tip_header else None,
            "state_root": chain.state_root.hash.hex(),
            "validators_hash": chain.validators.hash().hex(),
            "mempool_size": len(self.mempool),
            "total_txs": chain.total_txs,
            "node_key": self.key.public_key.hex(),
            **(self.driver.status() if self.driver is not None else {}),
        }


