"""The rows of the SQLite store, apart from the store itself: how state-tree nodes pack into
pages, how a transaction row is keyed and read back, and the SQL that indexes a block's
events (:mod:`medledger.store.sqlite` uses them all).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from itertools import chain

from medledger.store.base import (
    StoredTx,
    StoreError,
)

PAGE_NODES = 64
SLOT = 82  # one length byte + up to 81 bytes of node
_PAGE_CACHE = 4096


_PAGE_BYTES = SLOT * PAGE_NODES


def _pack_pages(nodes: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Pack nodes with consecutive ids (starting on a page boundary) into page rows."""
    pages: dict[int, bytearray] = {}
    for node_id, data in nodes:
        size = len(data)
        if size >= SLOT:
            raise StoreError(f"state tree node {node_id} is {size} bytes; at most {SLOT - 1}")
        number, slot = divmod(node_id, PAGE_NODES)
        page = pages.get(number)
        if page is None:
            page = pages[number] = bytearray(_PAGE_BYTES)
        at = slot * SLOT
        if page[at]:
            raise StoreError(f"state tree node {node_id} written twice in one block")
        page[at] = size
        page[at + 1 : at + 1 + size] = data
    return [(number, bytes(page)) for number, page in sorted(pages.items())]


def _unpack_page(number: int, page: bytes) -> Iterator[tuple[int, bytes]]:
    """The nodes of one page row, by id; StoreError for a byte outside every node (a slot
    is its node's length, its bytes, then zeros; an empty slot is all zeros)."""
    if len(page) != _PAGE_BYTES:
        raise StoreError(f"state tree page {number} is {len(page)} bytes, not {_PAGE_BYTES}")
    first = number * PAGE_NODES
    for at in range(0, _PAGE_BYTES, SLOT):
        size = page[at]
        if size >= SLOT or page[at + 1 + size : at + SLOT] != _PADDING[size:]:
            raise StoreError(f"state tree page {number}, slot {at // SLOT}: bytes past its "
                             f"node (of {size} bytes) are not zero")
        if size:
            yield first + at // SLOT, page[at + 1 : at + 1 + size]


_PADDING = bytes(SLOT - 1)
_FETCH = 10_000  # rows fetched at a time by the readers of whole tables
_ROWS_PER_STATEMENT = 256


def _insert_rows(db: sqlite3.Connection, head: str, rows: list[tuple[object, ...]]) -> None:
    """``head VALUES (...), (...), ...`` for up to 256 rows per statement.

    One statement per row would hand the GIL back and forth with the node's other thread
    once per row; a few large statements cost about a third as much.
    """
    if not rows:
        return
    one = "(" + ", ".join("?" * len(rows[0])) + ")"
    full = f"{head} VALUES " + ", ".join([one] * _ROWS_PER_STATEMENT)
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        sql = full if len(chunk) == _ROWS_PER_STATEMENT else \
            f"{head} VALUES " + ", ".join([one] * len(chunk))
        db.execute(sql, list(chain.from_iterable(chunk)))


def _prefix(tx_id: bytes) -> int:
    return int.from_bytes(tx_id[:8], "big", signed=True)


def _sender_of_raw(raw: bytes) -> bytes | None:
    """The sender key in a stored transaction's canonical bytes (None if unreadable)."""
    try:
        sender = bytes.fromhex(json.loads(raw)["sender"])
    except (ValueError, KeyError, TypeError):
        return None
    return sender if len(sender) == 32 else None


def _sender_prefix_of_raw(raw: bytes) -> int | None:
    sender = _sender_of_raw(raw)
    return None if sender is None else _prefix(sender)


def _blob(value: object) -> bytes:
    """Column value as bytes: a tampered row may hold TEXT where BLOB belongs."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise StoreError(f"expected bytes in the store, found {type(value).__name__}")


def _join(hashes: list[bytes]) -> bytes:
    return b"".join(hashes)


def _split(blob: bytes) -> list[bytes]:
    return [blob[i : i + 32] for i in range(0, len(blob), 32)]


_TX_COLUMNS = "tx_id, height, idx, raw, code, message, events"


def _stored_tx(r: tuple) -> StoredTx:  # type: ignore[type-arg]
    return StoredTx(_blob(r[0]), r[1], r[2], _blob(r[3]), str(r[4]), str(r[5]),
                    b"" if r[6] is None else _blob(r[6]))


def _attr_key(name: str, value: str) -> str:
    """An event attribute's index key, ``name=value`` (names never hold ``=``)."""
    return f"{name}={value}"


# Indexing one block's events, by SQLite itself from the rows its commit wrote (the
# canonical JSON lists of txs.events and block_events): begin-block events, each
# transaction's in block order, end-block events, numbered on from :base.
def _index_from(source: str) -> str:
    return f"""
INSERT INTO events (seq, height, tx_index, type, attrs)
SELECT :base + ROW_NUMBER() OVER (ORDER BY {source[1]}) - 1, :height, {source[2]},
       json_extract(j.value, '$.type'), json_extract(j.value, '$.attrs')
FROM {source[0]}
"""


_INDEX_BEGIN = _index_from((
    "block_events b, json_each(b.begin_events) j WHERE b.height = :height",
    "CAST(j.key AS INTEGER)", "NULL"))
_INDEX_TXS = _index_from((
    "txs t, json_each(t.events) j WHERE t.height = :height AND t.events IS NOT NULL",
    "t.idx, CAST(j.key AS INTEGER)", "t.idx"))
_INDEX_END = _index_from((
    "block_events b, json_each(b.end_events) j WHERE b.height = :height",
    "CAST(j.key AS INTEGER)", "NULL"))
_INDEX_ATTRS = """
INSERT OR IGNORE INTO event_attrs (attr, seq)
SELECT a.key || '=' || a.value, e.seq FROM events e, json_each(e.attrs) a
WHERE e.height = :height
"""
_INDEX_BATCH = 256  # blocks indexed in one transaction

# How many events the blocks below a height hold: the lengths of the stored lists
_COUNT_EVENTS = """
SELECT (SELECT COALESCE(SUM(json_array_length(CAST(events AS TEXT))), 0) FROM txs
        WHERE height < ?1 AND events IS NOT NULL)
     + (SELECT COALESCE(SUM(COALESCE(json_array_length(CAST(begin_events AS TEXT)), 0)
                          + COALESCE(json_array_length(CAST(end_events AS TEXT)), 0)), 0)
        FROM block_events WHERE height < ?1)
"""
