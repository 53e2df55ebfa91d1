"""The snapshot format (format 1, ``docs/snapshots.md``): the same bytes on every node for
the same height.

- chunk 0, the *head* (:class:`Head`): canonical JSON of the block at the snapshot's height
  (header, carried and own certificate, begin- and end-block events), the history frontier
  of the blocks below it, and how many transactions and events those blocks hold;
- chunks 1..: *items*, each a kind byte and its fields, each field a 4-byte big-endian length
  and its bytes: ``T`` (raw, code, message, events) for each transaction of the block, in
  block order, then ``S`` (key, value) for every state entry, in key order. A chunk ends
  before the item that would take it past :data:`CHUNK_BYTES`;
- chunk hash ``SHA-256("medledger:snapshot-chunk\\x00" || chunk)``; the snapshot's
  ``metadata`` is the chunk hashes concatenated, its ``hash`` is
  ``SHA-256("medledger:snapshot\\x00" || metadata)``.

:func:`export_chunks` cuts a store's state at a height into chunks; :class:`SnapshotFiles`
keeps snapshots on disk. Writing and restoring them is :mod:`medledger.node.abci.snapshots`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import shutil
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medledger.codec import CodecError, decode, encode
from medledger.ledger import (
    ZERO_HASH,
    Event,
    Header,
    LedgerError,
)
from medledger.merkle.log import Frontier
from medledger.node.chain import engine_block_hash
from medledger.store import Store

__all__ = ["CHUNK_BYTES", "ENTRY_ITEM", "FORMAT", "TX_ITEM", "Head", "Snapshot", "SnapshotError",
           "SnapshotFiles", "chunk_hash", "export_chunks", "item", "read_items"]

log = logging.getLogger("medledger.statesync")

FORMAT = 1
CHUNK_BYTES = 4 * 1024 * 1024  # part of the format: every node must cut chunks alike
_CHUNK_PREFIX = b"medledger:snapshot-chunk\x00"
_SNAPSHOT_PREFIX = b"medledger:snapshot\x00"
TX_ITEM, ENTRY_ITEM = b"T", b"S"
_FIELDS = {TX_ITEM: 4, ENTRY_ITEM: 2}
_HEAD_KEYS = {"begin_events", "certificate", "chain_id", "end_events", "events_before",
              "header", "history_before", "last_commit", "txs_before"}


class SnapshotError(ValueError):
    """A snapshot, its head or an item is malformed, or does not match what commits to it."""


def chunk_hash(chunk: bytes) -> bytes:
    """The hash of one chunk, as the snapshot's metadata lists it."""
    return hashlib.sha256(_CHUNK_PREFIX + chunk).digest()


# the snapshot ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot as CometBFT sees it: its height and the hashes of its chunks."""

    height: int
    chunk_hashes: tuple[bytes, ...]

    @property
    def metadata(self) -> bytes:
        return b"".join(self.chunk_hashes)

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(_SNAPSHOT_PREFIX + self.metadata).digest()

    def to_abci(self, types: Any) -> Any:
        return types.Snapshot(height=self.height, format=FORMAT, chunks=len(self.chunk_hashes),
                              hash=self.hash, metadata=self.metadata)

    @classmethod
    def from_abci(cls, message: Any) -> Snapshot:
        """A snapshot of format 1 offered by CometBFT; SnapshotError when it is malformed."""
        metadata = bytes(message.metadata)
        if message.height < 1 or message.chunks < 1 or len(metadata) != 32 * message.chunks:
            raise SnapshotError(f"snapshot at height {message.height}: {message.chunks} chunks "
                                f"need {32 * message.chunks} bytes of chunk hashes, the "
                                f"metadata holds {len(metadata)}")
        snapshot = cls(message.height, tuple(metadata[i:i + 32]
                                             for i in range(0, len(metadata), 32)))
        if snapshot.hash != message.hash:
            raise SnapshotError(f"snapshot at height {message.height}: its hash is not the "
                                "hash of its chunk hashes")
        return snapshot

    def to_dict(self) -> dict[str, Any]:
        return {"chunks": [h.hex() for h in self.chunk_hashes], "format": FORMAT,
                "height": self.height}

    @classmethod
    def from_dict(cls, data: Any) -> Snapshot:
        return cls(data["height"], tuple(bytes.fromhex(h) for h in data["chunks"]))


# chunk 0: the head -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Head:
    """Chunk 0: the block at the snapshot's height and what the chain needs of those below."""

    chain_id: str
    header: Header
    last_commit: Any  # the carried certificate as JSON, None for a block CometBFT decided
    certificate: Any  # the block's own certificate as JSON (CometBFT's block hash)
    history_before: tuple[bytes, ...]  # frontier over the hashes of blocks 1..height - 1
    begin_events: tuple[bytes, ...]  # the block hooks' events, each its canonical bytes
    end_events: tuple[bytes, ...]
    txs_before: int  # transactions in blocks 1..height - 1
    events_before: int  # events in blocks 1..height - 1

    @property
    def height(self) -> int:
        return self.header.height

    def encode(self) -> bytes:
        return encode({
            "begin_events": [decode(e) for e in self.begin_events],
            "certificate": self.certificate, "chain_id": self.chain_id,
            "end_events": [decode(e) for e in self.end_events],
            "events_before": self.events_before, "header": self.header.to_dict(),
            "history_before": [h.hex() for h in self.history_before],
            "last_commit": self.last_commit, "txs_before": self.txs_before})

    @classmethod
    def decode(cls, chunk: bytes) -> Head:
        """Parse and check chunk 0 on its own; SnapshotError when it is malformed."""
        try:
            data = decode(chunk)
            if type(data) is not dict or set(data) != _HEAD_KEYS:
                raise SnapshotError(f"the head must hold exactly {sorted(_HEAD_KEYS)}")
            head = cls(data["chain_id"], Header.from_dict(data["header"]), data["last_commit"],
                       data["certificate"], tuple(bytes.fromhex(h)
                                                  for h in data["history_before"]),
                       _events(data["begin_events"]), _events(data["end_events"]),
                       _count(data["txs_before"]), _count(data["events_before"]))
            history = Frontier.from_list(head.height - 1, head.history_before)
        except (CodecError, LedgerError, ValueError, TypeError) as e:
            if isinstance(e, SnapshotError):
                raise
            raise SnapshotError(f"the snapshot's head is malformed: {e}") from e
        head._check(history)
        return head

    def _check(self, history: Frontier) -> None:
        if history.root() != self.header.history_root:
            raise SnapshotError("the head's history frontier is not the header's history root")
        if (self.last_commit is not None or self.header.last_commit_hash != ZERO_HASH
                or engine_block_hash(self.certificate) is None):
            raise SnapshotError("the snapshot's block was not decided by CometBFT")


def _events(data: Any) -> tuple[bytes, ...]:
    """A block hook's events from the head, checked, each as its canonical bytes."""
    if type(data) is not list:
        raise SnapshotError("block events must be a list")
    return tuple(Event.from_dict(item).encoded for item in data)


def _stored_events(raw: bytes | None) -> tuple[bytes, ...]:
    """A block hook's events as the store keeps them (a canonical JSON list, or None), each
    as its canonical bytes."""
    return () if raw is None else tuple(encode(event) for event in decode(raw))


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise SnapshotError(f"a count must be an integer, 0 or more, not {value!r}")
    return value


# chunks 1..: items ---------------------------------------------------------------------------------
def item(kind: bytes, *fields: bytes) -> bytes:
    """One item: its kind byte, then each field as a 4-byte big-endian length and its bytes."""
    return kind + b"".join(len(f).to_bytes(4, "big") + f for f in fields)


def read_items(chunk: bytes) -> Iterator[tuple[bytes, list[bytes]]]:
    """The items of one chunk as (kind, fields); SnapshotError for a malformed one."""
    at, end = 0, len(chunk)
    while at < end:
        kind = chunk[at:at + 1]
        if kind not in _FIELDS:
            raise SnapshotError(f"unknown item kind {kind!r} at byte {at}")
        at += 1
        fields = []
        for _ in range(_FIELDS[kind]):
            size = int.from_bytes(chunk[at:at + 4], "big")
            if at + 4 + size > end:
                raise SnapshotError(f"an item field runs past the chunk's end at byte {at}")
            fields.append(chunk[at + 4:at + 4 + size])
            at += 4 + size
        yield kind, fields


def _pack(items: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """Items cut into chunks of at most ``limit`` bytes (an item larger than that alone)."""
    chunk = bytearray()
    for item in items:
        if chunk and len(chunk) + len(item) > limit:
            yield bytes(chunk)
            chunk = bytearray()
        chunk += item
    if chunk:
        yield bytes(chunk)


def export_chunks(store: Store, chain_id: str, height: int,
                  chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The chunks of the snapshot of ``store`` at ``height``, its tip: call it inside
    ``store.pinned()``, so that every read sees that height."""
    stored = store.get_block(height)
    if stored is None:
        raise SnapshotError(f"the store holds no block at height {height}")
    txs = store.get_block_txs(height)
    base = store.base()
    history = (base.history if base is not None and base.height == height
               else store.get_history(height - 1))
    begin, end = store.get_block_events(height)
    head = Head(chain_id, Header.from_dict(decode(stored.header)),
                None if stored.last_commit is None else decode(stored.last_commit),
                decode(stored.certificate), tuple(history), _stored_events(begin),
                _stored_events(end),
                store.count_txs() - len(txs), store.count_events(height))
    yield head.encode()
    tx_items = (item(TX_ITEM, t.raw, t.code.encode(), t.message.encode(), t.events) for t in txs)
    entries = (item(ENTRY_ITEM, key.encode(), value) for key, value in store.iter_values())
    yield from _pack(itertools.chain(tx_items, entries), chunk_bytes)


# on disk ---------------------------------------------------------------------------------------------
class SnapshotFiles:
    """The snapshots in a directory: ``<height>/snapshot.json`` (the chunk hashes) and
    ``<height>/<index>`` (the chunks), each written in ``.writing-<height>`` and renamed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob(".writing-*"):  # a write a crash interrupted
            shutil.rmtree(leftover, ignore_errors=True)
        self._listed = self._scan()

    def _scan(self) -> list[Snapshot]:
        found = []
        for path in self.directory.glob("*/snapshot.json"):
            try:
                data = decode(path.read_bytes())
                if data["format"] == FORMAT and str(data["height"]) == path.parent.name:
                    found.append(Snapshot.from_dict(data))
            except (OSError, CodecError, KeyError, TypeError, ValueError) as e:
                log.warning("ignoring snapshot %s: %s", path.parent, e)
        return sorted(found, key=lambda snapshot: snapshot.height, reverse=True)

    def list(self) -> list[Snapshot]:
        """The snapshots kept, newest first."""
        return list(self._listed)

    def load_chunk(self, height: int, index: int) -> bytes:
        """Chunk ``index`` of the snapshot at ``height``; ``b""`` when there is none."""
        try:
            return (self.directory / str(height) / str(index)).read_bytes()
        except OSError:
            return b""

    def save(self, height: int, chunks: Iterable[bytes], cancelled: threading.Event
             ) -> Snapshot:
        """Write the snapshot of ``height`` from ``chunks``, stopping (and leaving nothing)
        when ``cancelled`` is set."""
        temp = self.directory / f".writing-{height}"
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        try:
            hashes = []
            for index, chunk in enumerate(chunks):
                if cancelled.is_set():
                    raise InterruptedError(f"the snapshot of height {height} was cancelled")
                (temp / str(index)).write_bytes(chunk)
                hashes.append(chunk_hash(chunk))
            snapshot = Snapshot(height, tuple(hashes))
            (temp / "snapshot.json").write_bytes(encode(snapshot.to_dict()) + b"\n")
            final = self.directory / str(height)
            shutil.rmtree(final, ignore_errors=True)
            temp.rename(final)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self._listed = self._scan()
        return snapshot

    def prune(self, keep: int) -> None:
        """Remove all but the ``keep`` most recent snapshots."""
        for old in self._listed[keep:]:
            shutil.rmtree(self.directory / str(old.height), ignore_errors=True)
        self._listed = self._listed[:keep]
