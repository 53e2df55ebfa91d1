"""State sync: snapshots of the committed state, served to new nodes and restored by them.

**Writing.** With ``snapshot_interval`` N > 0, after the Commit of every height that is a
multiple of N, a worker thread writes the snapshot of that height to
``HOME/data/snapshots/<height>/`` and keeps the ``snapshot_keep`` most recent. The Commit
waits only until the worker holds a read transaction on the store (SQLite WAL: the worker
sees the store as of that height whatever is committed after); the chunks are written while
blocks go on. A height that comes while the previous snapshot is still being written is
skipped.

**Format 1**: :mod:`medledger.node.abci.snapshot_format` (``docs/snapshots.md``).

**Restoring** (a node with an empty store): ``OfferSnapshot`` accepts a well-formed snapshot
of format 1; ``ApplySnapshotChunk`` checks each chunk's hash against the metadata (a
mismatch is refetched from another peer), checks the head against the app hash CometBFT's
light client verified, and stages the chunks on disk; the last one rebuilds the store in one
transaction (:meth:`Store.restoring`): the state entries and their tree, whose root must be
the app hash, the block and its roots, the base record. A crash leaves the store empty.

Errors::

    SnapshotError    a snapshot, its head or an item is malformed, or does not match what
                     commits to it (the header, the app hash)
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medledger.codec import CodecError, encode
from medledger.ledger import (
    LedgerError,
    Transaction,
    results_root,
    tx_root,
)
from medledger.merkle.log import Frontier
from medledger.merkle.sparse import EMPTY_ROOT, NodeRef
from medledger.node.abci.snapshot_format import (
    CHUNK_BYTES,
    ENTRY_ITEM,
    FORMAT,
    TX_ITEM,
    Head,
    Snapshot,
    SnapshotError,
    SnapshotFiles,
    chunk_hash,
    export_chunks,
    read_items,
)
from medledger.node.abci.wire import abci_types
from medledger.node.chain import Chain, result_of
from medledger.state import ReadOnly, StateTree
from medledger.store import BlockRecord, Restoration, Store, StoreBase, StoredTx

__all__ = ["CHUNK_BYTES", "FORMAT", "Head", "NoStateSync", "Restorer", "Snapshot",
           "SnapshotError", "SnapshotFiles", "SnapshotWriter", "StateSync", "chunk_hash",
           "export_chunks"]

RESTORE_BATCH = 100_000  # state entries per tree update while restoring
PIN_WAIT = 5.0  # seconds Commit waits for the writer to hold the committed state

log = logging.getLogger("medledger.statesync")

class SnapshotWriter:
    """Writes a snapshot every ``interval`` heights, in a worker thread of its own."""

    def __init__(self, store: Store, files: SnapshotFiles, chain_id: str, *, interval: int,
                 keep: int, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.store, self.files, self.chain_id = store, files, chain_id
        self.interval, self.keep, self.chunk_bytes = interval, keep, chunk_bytes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
        self._writing: Future[None] | None = None
        self._cancelled = threading.Event()

    def committed(self, height: int) -> None:
        """After the Commit of ``height`` (in the ABCI thread): start its snapshot when it
        is due, and return once the worker holds the store at that height."""
        if not self.interval or height % self.interval or self._cancelled.is_set():
            return
        if self._writing is not None and not self._writing.done():
            log.warning("skipping the snapshot of height %d: the previous one is still being "
                        "written", height)
            return
        pinned = threading.Event()
        self._writing = self._executor.submit(self._write, height, pinned)
        if not pinned.wait(PIN_WAIT):
            log.warning("the snapshot writer did not start within %.0f s", PIN_WAIT)

    def _write(self, height: int, pinned: threading.Event) -> None:
        try:
            with self.store.pinned() as tip:
                pinned.set()
                if tip != height:
                    log.warning("skipping the snapshot of height %d: the store is at %d",
                                height, tip)
                    return
                chunks = export_chunks(self.store, self.chain_id, height, self.chunk_bytes)
                snapshot = self.files.save(height, chunks, self._cancelled)
            self.files.prune(self.keep)
            log.info("snapshot of height %d written: %d chunks", height,
                     len(snapshot.chunk_hashes))
        except InterruptedError as e:  # close() while it was being written
            log.info("%s", e)
        except Exception:  # noqa: BLE001 - a failed snapshot must not stop the node
            log.exception("the snapshot of height %d failed", height)
        finally:
            pinned.set()

    def wait(self, timeout: float) -> None:
        """Wait until the snapshot being written, if any, is on disk (or has failed)."""
        writing = self._writing
        if writing is not None:
            writing.exception(timeout)

    def close(self) -> None:
        """Stop a snapshot being written (it leaves nothing) and the worker thread."""
        self._cancelled.set()
        self._executor.shutdown(wait=True, cancel_futures=True)


# restoring --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Restore:
    """A snapshot being restored: what was offered, and its head once chunk 0 is applied."""

    snapshot: Snapshot
    app_hash: bytes
    head: Head | None = None
    done: bool = False  # the store holds it (restored, or found so at the offer)


class Restorer:
    """``OfferSnapshot`` and ``ApplySnapshotChunk``: an empty store rebuilt from a snapshot's
    chunks, staged in ``staging`` until the last one arrives."""

    def __init__(self, chain: Chain, staging: Path, types: Any) -> None:
        self.chain, self.staging, self.types = chain, staging, types
        shutil.rmtree(staging, ignore_errors=True)  # what a crash left of a restore
        self._restore: _Restore | None = None

    def offer_snapshot(self, request: Any) -> Any:
        return self.types.ResponseOfferSnapshot(
            result=self._offer(request.snapshot, bytes(request.app_hash)))

    def _offer(self, offered: Any, app_hash: bytes) -> int:
        answer, chain = self.types.ResponseOfferSnapshot, self.chain
        if offered.format != FORMAT:
            return answer.REJECT_FORMAT
        try:
            snapshot = Snapshot.from_abci(offered)
        except SnapshotError as e:
            log.warning("refusing an offered snapshot: %s", e)
            return answer.REJECT
        if chain.height:
            if (chain.height, chain.state_root.hash) == (snapshot.height, app_hash):
                self._restore = _Restore(snapshot, app_hash, done=True)  # restored already
                return answer.ACCEPT
            log.error("state sync offers height %d, but the store already holds blocks up to "
                      "%d: a snapshot is restored into an empty store only (to start over, "
                      "remove HOME/data/chain.db* and run `cometbft unsafe-reset-all --home "
                      "HOME/cometbft`)", snapshot.height, chain.height)
            return answer.ABORT
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self._restore = _Restore(snapshot, app_hash)
        log.info("restoring the snapshot of height %d: %d chunks", snapshot.height,
                 len(snapshot.chunk_hashes))
        return answer.ACCEPT

    def apply_snapshot_chunk(self, request: Any) -> Any:
        answer, restore = self.types.ResponseApplySnapshotChunk, self._restore
        if restore is None:
            log.error("a snapshot chunk arrived with no snapshot accepted")
            return answer(result=answer.ABORT)
        index, chunk = request.index, bytes(request.chunk)
        hashes = restore.snapshot.chunk_hashes
        if index >= len(hashes):
            log.error("snapshot chunk %d applied, the snapshot has %d", index, len(hashes))
            return answer(result=answer.REJECT_SNAPSHOT)
        if chunk_hash(chunk) != hashes[index]:
            log.warning("snapshot chunk %d from peer %s does not match the snapshot's hashes: "
                        "fetching it again from another", index, request.sender)
            return answer(result=answer.RETRY, refetch_chunks=[index],
                          reject_senders=[request.sender])
        try:
            if not restore.done:
                self._stage(restore, index, chunk)
        except SnapshotError as e:
            log.warning("rejecting the snapshot of height %d: %s", restore.snapshot.height, e)
            self._restore = None
            return answer(result=answer.REJECT_SNAPSHOT, reject_senders=[request.sender])
        return answer(result=answer.ACCEPT)

    def _stage(self, restore: _Restore, index: int, chunk: bytes) -> None:
        if index == 0:
            restore.head = self._checked_head(Head.decode(chunk), restore)
        else:
            for _ in read_items(chunk):  # a malformed chunk is refused now, not at the end
                pass
            (self.staging / str(index)).write_bytes(chunk)
        if index == len(restore.snapshot.chunk_hashes) - 1:
            self._rebuild(restore)

    def _checked_head(self, head: Head, restore: _Restore) -> Head:
        chain_id = self.chain.chain_id
        if head.height != restore.snapshot.height:
            raise SnapshotError(f"the head is of height {head.height}, the snapshot of "
                                f"{restore.snapshot.height}")
        if head.chain_id != chain_id or head.header.chain_id != chain_id:
            raise SnapshotError(f"the snapshot is of chain {head.chain_id!r}, this node's is "
                                f"{chain_id!r}")
        if head.header.state_root != restore.app_hash:
            raise SnapshotError(f"the snapshot's block has state root "
                                f"{head.header.state_root.hex()}, the app hash CometBFT "
                                f"verified is {restore.app_hash.hex()}")
        return head

    def _rebuild(self, restore: _Restore) -> None:
        """The store from the staged chunks, in one transaction (see the module docstring)."""
        head = restore.head
        if head is None:
            raise SnapshotError("the snapshot's head (chunk 0) was not applied")
        items = self._staged_items(len(restore.snapshot.chunk_hashes))
        txs = _block_txs(head, items)
        store = self.chain.store
        with store.restoring() as restoration:
            root = _restore_state(store, restoration, items)
            if root.hash != restore.app_hash:
                raise SnapshotError(f"the restored state has root {root.hash.hex()}, the app "
                                    f"hash CometBFT verified is {restore.app_hash.hex()}")
            restoration.finish(_base_record(head, txs, root), self._base(head))
        self.chain.reload()  # the chain reads its tip from the restored store
        shutil.rmtree(self.staging, ignore_errors=True)
        restore.done = True
        log.warning("restored the state at height %d from a snapshot (app hash %s): blocks "
                    "below it are not kept here", head.height, restore.app_hash.hex())

    def _staged_items(self, chunks: int) -> Iterator[tuple[bytes, list[bytes]]]:
        for index in range(1, chunks):
            yield from read_items((self.staging / str(index)).read_bytes())

    def _base(self, head: Head) -> StoreBase:
        """The base record, with the validator set of the snapshot's block read from the
        restored state (inside the restoring transaction) and checked against its header."""
        view = ReadOnly(self.chain.store.get_value)
        try:
            validators = self.chain.registry.validators.validators_at(view, head.height)
        except (LedgerError, CodecError) as e:
            raise SnapshotError(f"the restored state holds no valid validator set: {e}") from e
        if validators.hash() != head.header.validators_hash:
            raise SnapshotError("the restored state's validator set is not the one the "
                                "snapshot's block names")
        return StoreBase(head.height, list(head.history_before), encode(validators.to_list()),
                         head.txs_before, head.events_before)


_TxRow = tuple[bytes, bytes, str, str, bytes, bytes]


def _block_txs(head: Head, items: Iterator[tuple[bytes, list[bytes]]]) -> list[_TxRow]:
    """The first ``tx_count`` items, the block's transactions, checked against its roots."""
    rows, results = [], []
    for index in range(head.header.tx_count):
        kind, fields = next(items, (b"", []))
        if kind != TX_ITEM:
            raise SnapshotError(f"the snapshot holds {index} of its block's "
                                f"{head.header.tx_count} transactions")
        raw, code, message, events = fields
        try:
            tx = Transaction.decode(raw)
            stored = StoredTx(tx.tx_id, head.height, index, raw, code.decode(),
                              message.decode(), events)
            results.append(result_of(stored))
        except (LedgerError, CodecError, UnicodeDecodeError) as e:
            raise SnapshotError(f"transaction {index} of the snapshot's block: {e}") from e
        if tx.raw != raw:
            raise SnapshotError(f"transaction {index} of the snapshot's block is not in its "
                                "canonical bytes")
        rows.append((tx.tx_id, raw, stored.code, stored.message, tx.sender, events))
    if (tx_root([r[0] for r in rows]) != head.header.tx_root
            or results_root(results) != head.header.results_root):
        raise SnapshotError("the snapshot's transactions or results do not match its block's "
                            "roots")
    return rows


def _state_batches(items: Iterator[tuple[bytes, list[bytes]]]
                   ) -> Iterator[list[tuple[str, bytes]]]:
    """The state entries, in batches of up to :data:`RESTORE_BATCH`; keys must ascend."""
    batch: list[tuple[str, bytes]] = []
    last: str | None = None
    for kind, fields in items:
        if kind != ENTRY_ITEM:
            raise SnapshotError("a transaction item among the state entries")
        try:
            key = fields[0].decode()
        except UnicodeDecodeError as e:
            raise SnapshotError(f"a state key is not UTF-8: {e}") from e
        if last is not None and key <= last:
            raise SnapshotError(f"state key {key!r} is not after {last!r}")
        last = key
        batch.append((key, fields[1]))
        if len(batch) >= RESTORE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _restore_state(store: Store, restoration: Restoration,
                   items: Iterator[tuple[bytes, list[bytes]]]) -> NodeRef:
    """Write the state entries and build their tree; return its root."""
    tree = StateTree(store)
    root = EMPTY_ROOT
    for batch in _state_batches(items):
        root, nodes = tree.update(root, dict(batch))
        restoration.put_state(batch, nodes)
    return root


def _base_record(head: Head, txs: list[_TxRow], root: NodeRef) -> BlockRecord:
    history = Frontier.from_list(head.height - 1, head.history_before)
    block_hash = head.header.hash()
    history.append(block_hash)
    return BlockRecord(height=head.height, block_hash=block_hash, header=head.header.encode(),
                       last_commit=None, certificate=encode(head.certificate),
                       state_root_id=root.node_id, txs=txs, state_writes={}, nodes=[],
                       history=history.to_list(), begin_events=list(head.begin_events),
                       end_events=list(head.end_events))


# the ABCI face ----------------------------------------------------------------------------------------
class StateSync:
    """The four snapshot methods of the ABCI application, and the snapshot writer, over the
    snapshots in ``directory`` (``HOME/data/snapshots``)."""

    def __init__(self, chain: Chain, directory: Path, *, interval: int = 0, keep: int = 2,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.types = abci_types()
        self.files = SnapshotFiles(directory)
        self.writer = SnapshotWriter(chain.store, self.files, chain.chain_id,
                                     interval=interval, keep=keep, chunk_bytes=chunk_bytes)
        self.restorer = Restorer(chain, directory / "restoring", self.types)

    def committed(self, height: int) -> None:
        """After the Commit of ``height``: write its snapshot when one is due."""
        self.writer.committed(height)

    def close(self) -> None:
        self.writer.close()

    def list_snapshots(self, request: Any) -> Any:
        return self.types.ResponseListSnapshots(
            snapshots=[s.to_abci(self.types) for s in self.files.list()])

    def load_snapshot_chunk(self, request: Any) -> Any:
        chunk = (self.files.load_chunk(request.height, request.chunk)
                 if request.format == FORMAT else b"")
        return self.types.ResponseLoadSnapshotChunk(chunk=chunk)

    def offer_snapshot(self, request: Any) -> Any:
        return self.restorer.offer_snapshot(request)

    def apply_snapshot_chunk(self, request: Any) -> Any:
        return self.restorer.apply_snapshot_chunk(request)


class NoStateSync:
    """The snapshot methods of an application made without a snapshot directory: it keeps
    no snapshots and restores none."""

    def __init__(self) -> None:
        self.types = abci_types()

    def list_snapshots(self, request: Any) -> Any:
        return self.types.ResponseListSnapshots()

    def load_snapshot_chunk(self, request: Any) -> Any:
        return self.types.ResponseLoadSnapshotChunk()

    def offer_snapshot(self, request: Any) -> Any:
        log.error("a snapshot was offered, but this application restores none")
        return self.types.ResponseOfferSnapshot(result=self.types.ResponseOfferSnapshot.ABORT)

    def apply_snapshot_chunk(self, request: Any) -> Any:
        answer = self.types.ResponseApplySnapshotChunk
        return answer(result=answer.ABORT)
