"""Blocks as consensus values: what the consensus machine proposes, hashes and validates.

The machine sees a block only as bytes with a hash. This adapter builds the proposer's block
from the mempool, checks a proposed block by re-executing it on committed state
(:meth:`Chain.check_block`), and remembers each checked block with the record that would
commit it, so that deciding a block never executes it again.

A proposal carries its block **compact**: the header, the carried certificate, the results
and the transaction *ids* (:func:`compact`). Every validator already holds the transactions,
gossiped when they were submitted, so they are not sent, parsed and verified a second
time; a validator that misses some fetches them from the proposer first
(:meth:`BlockValues.missing`, :meth:`BlockValues.add_fetched`). Both forms begin with the
header, and a block's hash is its header's, so the value is the same block either way.
"""

from __future__ import annotations

import json
import logging
import threading

from medledger.codec import CodecError, decode, encode
from medledger.ledger import Block, Certificate, Header, LedgerError, Transaction, TxResult
from medledger.ledger.errors import MalformedError
from medledger.ledger.fields import read_bytes
from medledger.node.chain import Chain
from medledger.node.mempool import Mempool
from medledger.store import BlockRecord

__all__ = ["BlockValues", "compact"]

log = logging.getLogger("medledger.node")
MAX_CHECKED = 64
MAX_FETCHED = 50_000
_HEADER_START = b'{"header":'
_DECODER = json.JSONDecoder()


def compact(block: Block) -> bytes:
    """A block as a proposal carries it: canonical JSON with transaction ids, not bodies."""
    return encode({
        "header": block.header.to_dict(),
        "last_commit": block.last_commit.to_dict() if block.last_commit else None,
        "results": [r.to_dict() for r in block.results],
        "tx_ids": [t.tx_id.hex() for t in block.txs],
    })


class _Missing(Exception):
    """A compact block names transactions this node does not hold."""


class BlockValues:
    """The consensus value source over a chain and its mempool."""

    def __init__(self, chain: Chain, mempool: Mempool, proposer: bytes, *, max_txs: int,
                 max_bytes: int, mempool_lock: threading.Lock | None = None,
                 chain_lock: threading.Lock | None = None) -> None:
        self.chain = chain
        self.mempool = mempool
        self.proposer = proposer
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self._lock = mempool_lock or threading.Lock()
        # the chain is read here from more than one thread, and committed in another
        self._chain_lock = chain_lock or threading.Lock()
        self._checked: dict[bytes, tuple[Block, BlockRecord] | None] = {}
        self._fetched: dict[bytes, Transaction] = {}
        self._height = chain.height

    def _forget_old(self) -> None:
        if self._height != self.chain.height or len(self._checked) >= MAX_CHECKED:
            self._checked.clear()
            self._height = self.chain.height

    # the machine's three calls ----------------------------------------------------------
    def propose(self, height: int, round_: int) -> bytes:
        """A new block of the oldest mempool transactions, for the next height."""
        with self._chain_lock:
            self._forget_old()
            with self._lock:
                txs = self.mempool.take(self.max_txs, self.max_bytes)
            block, record = self.chain.build_block(txs, self.proposer)
        self._checked[record.block_hash] = (block, record)
        return compact(block)

    @staticmethod
    def block_hash(data: bytes) -> bytes:
        """The block hash of a proposal's bytes (a hash that no header has, if malformed).

        Only the header is parsed: canonical block bytes begin ``{"header":{...}``. Whether
        the rest of the block is valid is :meth:`valid`'s question.
        """
        try:
            if not data.startswith(_HEADER_START):
                raise ValueError("not a block")
            header, _ = _DECODER.raw_decode(data.decode("utf-8"), len(_HEADER_START))
            return Header.from_dict(header).hash()
        except (LedgerError, ValueError):
            return b"\x00" * 32

    def valid(self, height: int, data: bytes) -> bool:
        """True when ``data`` is the block the rules give for ``height`` on this chain."""
        return self.check(height, data) is not None

    # the node's own use -------------------------------------------------------------------
    def check(self, height: int, data: bytes, parsed: Block | None = None
              ) -> tuple[Block, BlockRecord] | None:
        """The checked block and its record, or None when it is not valid (remembered).

        ``parsed``: the block already parsed strictly from ``data`` (saves a second parse).
        """
        with self._chain_lock:
            return self._check(height, data, parsed)

    def _check(self, height: int, data: bytes, parsed: Block | None
               ) -> tuple[Block, BlockRecord] | None:
        self._forget_old()
        if height != self.chain.height + 1:
            return None
        try:
            block = parsed if parsed is not None else self.expand(_decode(data))
        except _Missing:
            return None  # not known invalid: the caller may fetch and ask again
        except LedgerError as e:
            log.info("proposal at height %d is malformed: %s", height, e)
            return None
        block_hash = block.header.hash()
        if block_hash in self._checked:
            return self._checked[block_hash]
        result = None
        try:
            if self._signatures_valid(block.txs):
                result = self.chain.check_block(block)
        except LedgerError as e:
            log.info("proposal %s at height %d refused: %s", block_hash.hex()[:12], height, e)
        self._checked[block_hash] = result
        return result

    # compact blocks --------------------------------------------------------------------------
    def find(self, tx_id: bytes) -> Transaction | None:
        """A transaction this node holds (mempool or fetched), by id."""
        with self._lock:
            tx = self.mempool.get(tx_id)
        return tx if tx is not None else self._fetched.get(tx_id)

    def missing(self, block: dict[str, object]) -> list[bytes]:
        """The ids a compact block names that this node does not hold (none for a full
        block or a malformed one)."""
        ids = block.get("tx_ids") if isinstance(block, dict) else None
        if not isinstance(ids, list):
            return []
        out = []
        for value in ids:
            try:
                tx_id = read_bytes({"id": value}, "id", 32)
            except LedgerError:
                return []
            if self.find(tx_id) is None:
                out.append(tx_id)
        return out

    def add_fetched(self, txs: list[Transaction]) -> None:
        """Transactions fetched for a compact block (their signatures are checked with it)."""
        if len(self._fetched) + len(txs) > MAX_FETCHED:
            self._fetched.clear()
        for tx in txs:
            self._fetched[tx.tx_id] = tx

    def expand(self, block: object) -> Block:
        """A block from its parsed form, compact or full; raise MalformedError, or
        _Missing when a compact block names a transaction this node does not hold."""
        if not isinstance(block, dict) or "tx_ids" not in block:
            return Block.from_dict(block)
        if set(block) != {"header", "last_commit", "results", "tx_ids"}:
            raise MalformedError("block", "a compact block has header, last_commit, "
                                          "results and tx_ids")
        ids, results = block["tx_ids"], block["results"]
        if type(ids) is not list or type(results) is not list:
            raise MalformedError("block", "tx_ids and results must be lists")
        txs = []
        for value in ids:
            tx = self.find(read_bytes({"id": value}, "id", 32))
            if tx is None:
                raise _Missing()
            txs.append(tx)
        last = block["last_commit"]
        expanded = Block(Header.from_dict(block["header"]), tuple(txs),
                         tuple(TxResult.from_dict(r) for r in results),
                         None if last is None else Certificate.from_dict(last))
        expanded.check_roots()
        return expanded

    def _signatures_valid(self, txs: tuple[Transaction, ...]) -> bool:
        """Transactions in the mempool verified on admission; verify only the others."""
        with self._lock:
            unknown = [tx for tx in txs if tx.tx_id not in self.mempool]
        bad = next((tx for tx in unknown if not tx.signature_valid()), None)
        if bad is not None:
            log.info("proposal holds transaction %s with a bad signature", bad.tx_id.hex()[:12])
            return False
        return True

    def checked(self, block_hash: bytes) -> tuple[Block, BlockRecord] | None:
        """A block this node built or checked, by hash (None if it never saw it valid)."""
        return self._checked.get(block_hash)


def _decode(data: bytes) -> object:
    try:
        return decode(data)
    except CodecError as e:
        raise MalformedError("block", str(e)) from e
