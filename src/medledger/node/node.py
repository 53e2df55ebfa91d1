"""A node: the chain over its store, what the API waits on (a transaction committed, a new
block), and its status. Blocks come from the consensus engine: see
:mod:`medledger.node.engine_node` for a node on CometBFT.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from medledger.apps import AppRegistry, default_registry
from medledger.crypto import SigningKey
from medledger.ledger import Block, MalformedError, Transaction
from medledger.node.blobs import BlobPeers, BlobStore
from medledger.node.chain import Chain
from medledger.node.config import NodeConfig
from medledger.node.genesis import Genesis
from medledger.node.verifier import BatchRefused, SignatureVerifier
from medledger.store import Store, StoredTx

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


class Node:
    """A node over a store: the chain, the waiters for commits, the status. Blocks and
    submissions are the engine's: :class:`~medledger.node.engine_node.EngineNode` runs
    CometBFT beside the app (:func:`~medledger.node.engine_node.open_node` opens one
    from its home). A bare ``Node`` serves a store as it is (it refuses submissions and
    commits nothing)."""

    #: how often :meth:`light_headers` looks again for the next block's header, in seconds
    header_poll_s = 0.1

    def __init__(
        self,
        store: Store,
        genesis: Genesis,
        key: SigningKey,
        config: NodeConfig,
        registry: AppRegistry | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.key = key
        self.chain = Chain(store, genesis, registry or default_registry())
        self._waiters: dict[bytes, list[asyncio.Future[StoredTx]]] = {}
        self._stopping = False
        # commit notification: an event (with its loop) that the next commit or stop sets
        # and replaces; wait_new_block() waits on it
        self._new_block: tuple[asyncio.Event, asyncio.AbstractEventLoop] | None = None
        self.verifier = SignatureVerifier()
        #: the engine's signed headers (:class:`~medledger.node.headers.SignedHeaders`),
        #: which also prove the chain's answers (``chain.prover``); None without an engine
        self.headers: Any = None
        #: encrypted content by digest (:mod:`medledger.node.blobs`), and the member nodes
        #: it is replicated to; None where the node keeps none (the API answers 503)
        self.blobs: BlobStore | None = None
        self.blob_peers: BlobPeers | None = None
        validators = self.chain.validators
        power = validators.power_of(key.public_key)
        if power:
            log.info("this node's key holds %d of %d voting power", power,
                     validators.total_power)
        else:  # a full node: one joining, or one that governance removed from the set
            log.info("this node's key is not a validator of the next height: the node "
                     "follows the chain without voting")

    # admission --------------------------------------------------------------------------
    def submit_dict(self, data: Any, *, checked: bool = False) -> Submitted:
        """Admit a transaction given as a decoded dict (``checked``: it came from our
        strict decoder)."""
        try:
            tx = Transaction.from_dict(data, checked=checked)
        except MalformedError as e:
            return Submitted(None, "malformed", str(e))
        return self.submit(tx)

    def submit(self, tx: Transaction, signature_ok: bool | None = None,
               stateless: tuple[str, str] | bool | None = None) -> Submitted:
        """Admit a decoded transaction (``signature_ok`` and ``stateless``: checks a worker
        did already). A bare node admits nothing."""
        return Submitted(tx.tx_id, "unavailable", "this node runs no consensus engine")

    async def submit_async(self, data: Any, *, checked: bool = False) -> Submitted:
        """:meth:`submit_dict` for the API."""
        return self.submit_dict(data, checked=checked)

    async def submit_batch_bytes(self, body: bytes, max_items: int) -> list[Submitted]:
        """Admit a JSON list of transactions; raises :class:`BatchRefused` for a list that
        is not one. A bare node admits none."""
        prepared = await self.verifier.prepare(body, max_items)
        return [Submitted(None, "malformed", str(verdict)) if tx is None else self.submit(tx)
                for tx, verdict, _stateless in prepared]

    # blocks -----------------------------------------------------------------------------
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

    async def light_headers(self, height: int, timeout: float) -> list[dict[str, Any]] | None:
        """The signed headers that prove block ``height`` and its results (``height`` and
        ``height + 1``), waiting up to ``timeout`` seconds for the next block; None without
        them (a node with no engine has none)."""
        headers = self.headers
        if headers is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await asyncio.to_thread(headers.pair, height)
            if found is not None or loop.time() >= deadline or self._stopping:
                return found
            await asyncio.sleep(self.header_poll_s)

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
        """Run until stopped (a bare node has no engine to follow)."""
        while not self._stopping:
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        self._stopping = True
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
            "mempool_size": None,
            "total_txs": chain.total_txs,
            "node_key": self.key.public_key.hex(),
        }


