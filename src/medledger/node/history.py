"""The log of blocks, on the node's side: the leaves whose RFC 9162 root the chain keeps in
state (``chain/history``, :data:`medledger.ledger.engine.HISTORY_KEY`), and the audit path
of any block's leaf.

State holds only the log's frontier and root, so that one recent header's app hash proves
any block that carried transactions or changed state (its CometBFT block hash and results
hash). The leaves themselves are rebuilt here from the store: block ``h`` appended the leaf
:func:`~medledger.ledger.engine.history_leaf` ``(h, its CometBFT block hash, the results
hash of its transactions)`` exactly when its state root differs from block ``h - 1``'s (a
block with transactions or writes also writes the log; one without writes changes
nothing). The first call reads every block once; later calls read the new ones only.

A node that started from a state snapshot holds no block below its base, so it cannot
rebuild the leaves before it and proves no block by the log (:class:`LogUnavailable`).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

from medledger.codec import decode
from medledger.ledger import Header
from medledger.ledger.engine import history_leaf, results_hash
from medledger.merkle import log
from medledger.node.chain import engine_block_hash, result_of
from medledger.store import Store

__all__ = ["BlockLog", "LogEntry", "LogUnavailable"]


class LogUnavailable(LookupError):
    """This node cannot prove that block by the log (with the reason as its message)."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """Block ``height``'s leaf in the log: where it is, what it says, and its audit path in
    the log of the first ``size`` leaves."""

    height: int
    block_hash: bytes  # CometBFT's
    results_hash: bytes
    index: int
    size: int
    audit_path: tuple[bytes, ...]

    def to_dict(self) -> dict[str, object]:
        return {"height": self.height, "block_hash": self.block_hash.hex(),
                "results_hash": self.results_hash.hex(), "leaf_index": self.index,
                "tree_size": self.size, "audit_path": [h.hex() for h in self.audit_path]}


class BlockLog:
    """The leaves of the log of blocks, kept in step with ``store`` on demand."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tree = log.LogTree()
        self._heights: list[int] = []  # the height of each leaf, ascending
        self._leaves: list[tuple[bytes, bytes]] = []  # (block hash, results hash) per leaf
        self._synced = 0  # the last height read
        self._root: bytes | None = None  # block ``_synced``'s state root
        self._lock = threading.Lock()

    def entry(self, height: int, size: int) -> LogEntry:
        """Block ``height``'s leaf and its audit path in the log of ``size`` leaves (the
        size the state at some proven height records). Raises :class:`LogUnavailable`."""
        with self._lock:
            self._sync()
            found = bisect.bisect_left(self._heights, height)
            if found == len(self._heights) or self._heights[found] != height:
                raise LogUnavailable(f"block {height} is not in the log: it carried no "
                                     f"transaction and changed nothing"
                                     if height <= self._synced else
                                     f"no block at height {height} yet")
            if not found < size <= self._tree.size:
                raise LogUnavailable(f"block {height} is not in a log of {size} blocks")
            block_hash, results = self._leaves[found]
            path = self._tree.inclusion_proof(found, size)
        return LogEntry(height, block_hash, results, found, size, tuple(path))

    def _sync(self) -> None:
        store = self.store
        if store.base() is not None:
            raise LogUnavailable("this node started from a state snapshot and holds no block "
                                 "below it: ask a node that holds the whole chain")
        for height in range(self._synced + 1, store.latest_height() + 1):
            stored = store.get_block(height)
            if stored is None:
                raise LogUnavailable(f"block {height} is missing from this node's store")
            root = Header.from_dict(decode(stored.header)).state_root
            if root != self._root:
                self._append(height, stored.certificate, root)
            self._synced, self._root = height, root

    def _append(self, height: int, certificate: bytes | None, root: bytes) -> None:
        block_hash = engine_block_hash(decode(certificate)) if certificate else None
        if block_hash is None:
            raise LogUnavailable(f"block {height} names no CometBFT block hash")
        results = results_hash([result_of(t) for t in self.store.get_block_txs(height)])
        self._tree.append(log.leaf_hash(history_leaf(height, block_hash, results)))
        self._heights.append(height)
        self._leaves.append((block_hash, results))
