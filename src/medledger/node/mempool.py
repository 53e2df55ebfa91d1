"""The mempool: verified transactions waiting for a block, in arrival order.

Only transactions whose signature verified get in, so a block built from the mempool never
verifies a signature twice. It is bounded in count and bytes; a full mempool refuses with
``mempool_full``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from medledger.ledger import Transaction

__all__ = ["Mempool"]


class Mempool:
    """Pending transactions by id, in arrival order, with the highest pending nonce per sender."""

    def __init__(self, max_txs: int = 100_000, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self._txs: dict[bytes, Transaction] = {}
        self._nonces: dict[bytes, int] = {}
        self._counts: dict[bytes, int] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._txs

    def get(self, tx_id: bytes) -> Transaction | None:
        return self._txs.get(tx_id)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def full_for(self, tx: Transaction) -> bool:
        return len(self._txs) >= self.max_txs or self._bytes + len(tx.raw) > self.max_bytes

    def pending_nonce(self, sender: bytes) -> int:
        """The highest nonce of ``sender`` waiting here (0 when none)."""
        return self._nonces.get(sender, 0)

    def add(self, tx: Transaction) -> None:
        """Add a checked transaction (the caller checked room, nonce and duplicates)."""
        self._txs[tx.tx_id] = tx
        self._bytes += len(tx.raw)
        self._counts[tx.sender] = self._counts.get(tx.sender, 0) + 1
        if tx.nonce > self._nonces.get(tx.sender, 0):
            self._nonces[tx.sender] = tx.nonce

    def take(self, max_txs: int, max_bytes: int) -> list[Transaction]:
        """The oldest transactions that fit in a block (they stay until :meth:`remove`)."""
        out: list[Transaction] = []
        size = 0
        for tx in self._txs.values():
            if len(out) >= max_txs or size + len(tx.raw) > max_bytes:
                break
            out.append(tx)
            size += len(tx.raw)
        return out

    def remove(self, txs: Iterable[Transaction]) -> None:
        """Drop committed transactions; forget a sender's nonce once none of theirs waits."""
        for tx in txs:
            if self._txs.pop(tx.tx_id, None) is None:
                continue
            self._bytes -= len(tx.raw)
            left = self._counts[tx.sender] - 1
            if left:
                self._counts[tx.sender] = left
            else:
                del self._counts[tx.sender]
                del self._nonces[tx.sender]

    def drop_stale(self, senders: set[bytes], last_nonce: Callable[[bytes], int]
                   ) -> list[Transaction]:
        """Drop the waiting transactions of ``senders`` whose nonce is no longer above the
        sender's committed one (another node's block used it); return them."""
        stale = [tx for tx in self._txs.values()
                 if tx.sender in senders and tx.nonce <= last_nonce(tx.sender)]
        self.remove(stale)
        return stale
