"""The Store interface: everything a node keeps on disk.

A store holds blocks (header, carried certificate, this height's own certificate),
transactions by id with their results, the current state values, the sparse Merkle tree's
nodes (addressed by integer id, see :mod:`medledger.merkle.sparse`) and a few named meta
values. :meth:`Store.commit_block` writes one block and everything it changed as one atomic
transaction: after a crash the store is at the previous height or at this one, never between.

A store usually holds every block from 1. One made from a state snapshot
(:meth:`Store.restoring`) starts at the snapshot's height instead, its *base*: it holds that
block, the state after it and every later block, and a :class:`StoreBase` record of what it
needs to know about the blocks below (their history frontier, transaction and event counts,
and the validator set of the base block).

Errors::

    StoreError             the store cannot be opened or read
    └── StoreMismatch      the store belongs to another chain or has an unknown layout
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

__all__ = ["BlockRecord", "EventQuery", "Restoration", "StoreBase", "StoreError",
           "StoreMismatch", "Store", "StoredBlock", "StoredEvent", "StoredTx"]


class StoreError(Exception):
    """The store cannot be opened or read."""


class StoreMismatch(StoreError):
    """The store belongs to another chain or was written by an incompatible version."""


@dataclass(frozen=True, slots=True)
class StoredTx:
    """A committed transaction as stored: where it sits, its bytes and its result."""

    tx_id: bytes
    height: int
    index: int
    raw: bytes
    code: str
    message: str
    events: bytes = b""  # canonical JSON list of the result's events; b"" when none


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An indexed event: ``seq`` numbers every event of the chain from 1, in commit order
    (the same on every node); ``tx_index`` is None for a block hook's event."""

    seq: int
    height: int
    tx_index: int | None
    type: str
    attrs: bytes  # canonical JSON object of string attributes


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Which events to list: after event ``after`` (a seq), of ``type`` (or any), with
    every attribute of ``attrs`` equal, from block ``from_height`` on."""

    after: int = 0
    type: str | None = None
    attrs: tuple[tuple[str, str], ...] = ()
    from_height: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A committed block's stored parts (bytes as written, not re-encoded)."""

    height: int
    block_hash: bytes
    header: bytes
    last_commit: bytes | None
    certificate: bytes
    state_root_id: int


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """Everything one block commit writes, in one atomic transaction."""

    height: int
    block_hash: bytes
    header: bytes
    last_commit: bytes | None
    certificate: bytes
    state_root_id: int
    # (tx_id, raw, code, message, sender, events bytes), block order
    txs: list[tuple[bytes, bytes, str, str, bytes, bytes]]
    state_writes: dict[str, bytes | None]  # key -> canonical value bytes, None deletes
    nodes: list[tuple[int, bytes]]  # new sparse Merkle tree nodes
    history: list[bytes] = field(default_factory=list)  # log-tree frontier after this block
    # the events of the block's begin- and end-block hooks, each its canonical bytes; the
    # transactions' own events are in ``txs`` (the store indexes both, in that order:
    # begin, each transaction's, end)
    begin_events: list[bytes] = field(default_factory=list)
    end_events: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoreBase:
    """What a store that started from a snapshot at ``height`` keeps of the blocks below it."""

    height: int  # the first block the store holds
    history: list[bytes]  # the log-tree frontier over the hashes of blocks 1..height - 1
    validators: bytes  # canonical JSON list of the validator set of block ``height``
    txs: int  # transactions in blocks 1..height - 1
    events: int  # events in blocks 1..height - 1 (the seq of the last of them)


class Restoration(ABC):
    """Writes into an empty store, inside the one transaction of :meth:`Store.restoring`."""

    @abstractmethod
    def put_state(self, values: list[tuple[str, bytes]], nodes: list[tuple[int, bytes]]
                  ) -> None:
        """Add state entries and the state-tree nodes made for them (their ids from the
        store's :meth:`Store.next_node_id`, which moves past them)."""

    @abstractmethod
    def finish(self, record: BlockRecord, base: StoreBase) -> None:
        """Write the base block (``record`` with no state writes or nodes) and ``base``."""


class Store(ABC):
    """What a node keeps. Implementations: :class:`medledger.store.sqlite.SQLiteStore`."""

    @abstractmethod
    def close(self) -> None: ...

    # meta -----------------------------------------------------------------------------
    @abstractmethod
    def get_meta(self, name: str) -> bytes | None: ...

    @abstractmethod
    def put_meta(self, name: str, value: bytes) -> None: ...

    @abstractmethod
    def base(self) -> StoreBase | None:
        """The base of a store that started from a snapshot; None for one that holds every
        block from 1."""

    # blocks and transactions ------------------------------------------------------------
    @abstractmethod
    def latest_height(self) -> int:
        """The height of the last committed block, 0 when there is none."""

    @abstractmethod
    def get_block(self, height: int) -> StoredBlock | None: ...

    @abstractmethod
    def get_block_txs(self, height: int) -> list[StoredTx]: ...

    @abstractmethod
    def get_block_events(self, height: int) -> tuple[bytes | None, bytes | None]:
        """The canonical JSON lists of block ``height``'s begin- and end-block events (None
        for none)."""

    @abstractmethod
    def count_txs(self) -> int:
        """How many transactions all committed blocks hold (those below a base included)."""

    @abstractmethod
    def count_events(self, below: int) -> int:
        """How many events the blocks below height ``below`` hold (whether indexed or not)."""

    @abstractmethod
    def get_tx(self, tx_id: bytes) -> StoredTx | None: ...

    @abstractmethod
    def list_blocks(self, before: int | None, limit: int) -> list[StoredBlock]:
        """Up to ``limit`` blocks below height ``before`` (the tip's and down when None),
        newest first."""

    @abstractmethod
    def txs_by_sender(self, sender: bytes, before: tuple[int, int] | None,
                      limit: int) -> list[StoredTx]:
        """Up to ``limit`` of ``sender``'s committed transactions before position
        ``(height, index)`` (from the newest when None), newest first."""

    @abstractmethod
    def list_events(self, query: EventQuery) -> list[StoredEvent]:
        """Events matching ``query``, in commit order."""

    @abstractmethod
    def last_event_seq(self) -> int:
        """The seq of the last committed event (0 when there is none)."""

    @abstractmethod
    def index_events(self) -> int:
        """Index the events of the committed blocks not indexed yet (the index is derived
        from what each commit wrote, so it is built when first read); return the height
        it reaches."""

    @abstractmethod
    def get_history(self, height: int | None = None) -> list[bytes]:
        """The log-tree frontier over the hashes of blocks 1..``height`` (the latest when
        None; ``[]`` when the store holds no such block)."""

    # state ------------------------------------------------------------------------------
    @abstractmethod
    def get_value(self, key: str) -> bytes | None: ...

    def get_values(self, keys: list[str]) -> dict[str, bytes]:
        """The present ones among ``keys`` (a store may answer them in one query)."""
        found = {}
        for key in keys:
            value = self.get_value(key)
            if value is not None:
                found[key] = value
        return found

    @abstractmethod
    def iter_values(self) -> Iterator[tuple[str, bytes]]:
        """Every current state entry, in key order."""

    def iter_prefix(self, prefix: str, after: str | None = None,
                    limit: int | None = None) -> Iterator[tuple[str, bytes]]:
        """The current state entries whose key starts with ``prefix``, in key order; only
        those after the key ``after``, and at most ``limit`` of them, when given."""
        found = 0
        for key, value in self.iter_values():
            if key.startswith(prefix) and (after is None or key > after):
                if limit is not None and found >= limit:
                    return
                found += 1
                yield key, value

    @abstractmethod
    def get_node(self, node_id: int) -> bytes:
        """A sparse Merkle tree node's bytes; KeyError when absent."""

    @abstractmethod
    def next_node_id(self) -> int: ...

    @abstractmethod
    def pinned(self) -> AbstractContextManager[int]:
        """Hold the store still for this thread: until the block exits, every read the
        calling thread makes sees the store as it was on entry, whatever other threads
        commit meanwhile. Yields the latest height then."""

    # reading everything, for verification ------------------------------------------------
    #: the layout version this implementation writes under the meta entry ``schema``
    schema_version: bytes = b""

    @abstractmethod
    def iter_meta(self) -> Iterator[tuple[str, bytes]]:
        """Every meta entry, by name."""

    @abstractmethod
    def iter_nodes(self) -> Iterator[tuple[int, bytes]]:
        """Every stored state-tree node, by id. Raises StoreError where the nodes' storage
        holds bytes that belong to no node (what a reader of :meth:`get_node` never sees)."""

    @abstractmethod
    def iter_block_events(self) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        """Every stored ``(height, begin-block events, end-block events)``, by height (as
        :meth:`get_block_events` answers for one height)."""

    @abstractmethod
    def iter_indexed_events(self) -> Iterator[StoredEvent]:
        """Every event of the event index as it stands, in seq order (without indexing
        more: see :meth:`index_events`)."""

    @abstractmethod
    def iter_event_attrs(self) -> Iterator[tuple[int, str]]:
        """Every ``(seq, "name=value")`` of the event index's attribute lookup (an event's
        attribute ``name`` holds ``value``), by seq, then by ``name=value``."""

    def tx_lookup_faults(self, height: int, txs: list[tuple[bytes, bytes]]) -> list[int]:
        """The indexes of block ``height``'s transactions (``txs``: each one's id and sender,
        in block order) that :meth:`get_tx` or :meth:`txs_by_sender` would not find where
        they are; ``[]`` when all are found."""
        faults = []
        for index, (tx_id, sender) in enumerate(txs):
            by_id = self.get_tx(tx_id)
            by_sender = self.txs_by_sender(sender, (height, index + 1), 1)
            if (by_id is None or (by_id.height, by_id.index) != (height, index)
                    or [(t.height, t.index) for t in by_sender] != [(height, index)]):
                faults.append(index)
        return faults

    def storage_faults(self) -> list[str]:
        """What the storage engine's own consistency check finds (its pages, its indexes
        against its tables); ``[]`` when sound."""
        return []

    # writes -------------------------------------------------------------------------------
    @abstractmethod
    def commit_block(self, record: BlockRecord) -> None:
        """Write ``record`` atomically and durably; it must be at ``latest_height() + 1``."""

    @abstractmethod
    def restoring(self) -> AbstractContextManager[Restoration]:
        """Fill an empty store from a snapshot, as one transaction: committed when the block
        exits normally, rolled back (the store left empty) when it raises or the process
        dies. Raises StoreError when the store is not empty."""
