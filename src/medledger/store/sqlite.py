"""The SQLite store: one database file per node, WAL journal, ``synchronous=FULL``.

One block commit is one SQLite transaction (one fsync per block, never per transaction).
Sparse Merkle tree nodes are addressed by integer ids and stored 64 to a row ("pages" of
fixed slots: a length byte, then the node's bytes), so that a block's thousands of new nodes
cost a few dozen row inserts; each block's nodes start on a fresh page, so a page is written
once and never changed. Transactions are found by id through an index on the first 8 bytes
of the id.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from medledger.store.base import (
    BlockRecord,
    Store,
    StoredBlock,
    StoredTx,
    StoreError,
    StoreMismatch,
)

__all__ = ["SQLiteStore"]

SCHEMA_VERSION = b"3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL, header BLOB NOT NULL,
    last_commit BLOB, certificate BLOB NOT NULL, state_root_id INTEGER NOT NULL,
    history BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS txs (
    height INTEGER NOT NULL, idx INTEGER NOT NULL, id_prefix INTEGER NOT NULL,
    tx_id BLOB NOT NULL, raw BLOB NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (height, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS txs_by_id ON txs (id_prefix);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS smt_pages (page INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""


PAGE_NODES = 64
SLOT = 82  # one length byte + up to 81 bytes of node
_PAGE_CACHE = 4096


_EMPTY_SLOT = bytes(SLOT)


def _pack_pages(nodes: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Pack nodes with consecutive ids (starting on a page boundary) into page rows."""
    pages: dict[int, list[bytes]] = {}
    for node_id, data in nodes:
        size = len(data)
        if size >= SLOT:
            raise StoreError(f"state tree node {node_id} is {size} bytes; at most {SLOT - 1}")
        number, slot = divmod(node_id, PAGE_NODES)
        page = pages.get(number)
        if page is None:
            page = pages[number] = [_EMPTY_SLOT] * PAGE_NODES
        if page[slot] is not _EMPTY_SLOT:
            raise StoreError(f"state tree node {node_id} written twice in one block")
        page[slot] = b"%c%b%b" % (size, data, bytes(SLOT - 1 - size))
    return [(number, b"".join(slots)) for number, slots in sorted(pages.items())]


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
        db.execute(sql, [value for row in chunk for value in row])


def _prefix(tx_id: bytes) -> int:
    return int.from_bytes(tx_id[:8], "big", signed=True)


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


class SQLiteStore(Store):
    """A :class:`Store` in one SQLite file, safe to share between threads: each thread reads
    through its own connection (WAL readers never wait for the writer); writes take a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        try:
            self._conn().executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open store {self.path}: {e}") from e
        version = self.get_meta("schema")
        if version is None:
            self.put_meta("schema", SCHEMA_VERSION)
        elif version == b"2":
            self._migrate_from_2()
        elif version != SCHEMA_VERSION:
            raise StoreMismatch(f"store {self.path} has schema {version!r}, expected {SCHEMA_VERSION!r}")
        self._next_node = self._query_next_node()
        self._pages: dict[int, bytes] = {}

    def _migrate_from_2(self) -> None:
        """Schema 2 kept ``state`` in a rowid table (two B-trees per key); 3 keys it by
        ``key`` alone. Same rows, one atomic rewrite."""
        db = self._conn()
        with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("CREATE TABLE state_3 (key TEXT PRIMARY KEY, value BLOB NOT NULL) "
                           "WITHOUT ROWID")
                db.execute("INSERT INTO state_3 SELECT key, value FROM state")
                db.execute("DROP TABLE state")
                db.execute("ALTER TABLE state_3 RENAME TO state")
                db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (SCHEMA_VERSION,))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                     timeout=30)
                # A tampered row may hold TEXT that is not UTF-8: read it back byte for byte.
                db.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA cache_size=-65536")
            except sqlite3.DatabaseError as e:
                raise StoreError(f"cannot open store {self.path}: {e}") from e
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
            self._local = threading.local()

    def _one(self, sql: str, args: tuple[object, ...] = ()) -> tuple | None:  # type: ignore[type-arg]
        try:
            return self._conn().execute(sql, args).fetchone()  # type: ignore[no-any-return]
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store {self.path}: {e}") from e

    def _all(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:  # type: ignore[type-arg]
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store {self.path}: {e}") from e

    def _query_next_node(self) -> int:
        row = self._one("SELECT MAX(page) FROM smt_pages")
        last = row[0] if row and row[0] is not None else 0
        return (last + 1) * PAGE_NODES

    # meta -------------------------------------------------------------------------------
    def get_meta(self, name: str) -> bytes | None:
        row = self._one("SELECT value FROM meta WHERE name = ?", (name,))
        return _blob(row[0]) if row else None

    def put_meta(self, name: str, value: bytes) -> None:
        with self._lock:
            self._conn().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    # blocks -----------------------------------------------------------------------------
    def latest_height(self) -> int:
        row = self._one("SELECT MAX(height) FROM blocks")
        return row[0] or 0 if row else 0

    def get_block(self, height: int) -> StoredBlock | None:
        row = self._one(
            "SELECT height, hash, header, last_commit, certificate, state_root_id "
            "FROM blocks WHERE height = ?", (height,))
        if row is None:
            return None
        return StoredBlock(row[0], _blob(row[1]), _blob(row[2]),
                           None if row[3] is None else _blob(row[3]), _blob(row[4]), row[5])

    def get_block_txs(self, height: int) -> list[StoredTx]:
        rows = self._all(
            "SELECT tx_id, height, idx, raw, code, message FROM txs WHERE height = ? ORDER BY idx",
            (height,))
        return [StoredTx(_blob(r[0]), r[1], r[2], _blob(r[3]), str(r[4]), str(r[5])) for r in rows]

    def count_txs(self) -> int:
        row = self._one("SELECT COUNT(*) FROM txs")
        return int(row[0]) if row else 0

    def get_tx(self, tx_id: bytes) -> StoredTx | None:
        rows = self._all(
            "SELECT tx_id, height, idx, raw, code, message FROM txs WHERE id_prefix = ?",
            (_prefix(tx_id),))
        for r in rows:
            if _blob(r[0]) == tx_id:
                return StoredTx(_blob(r[0]), r[1], r[2], _blob(r[3]), str(r[4]), str(r[5]))
        return None

    def get_history(self) -> list[bytes]:
        row = self._one("SELECT history FROM blocks ORDER BY height DESC LIMIT 1")
        return _split(_blob(row[0])) if row else []

    # state ------------------------------------------------------------------------------
    def get_value(self, key: str) -> bytes | None:
        row = self._one("SELECT value FROM state WHERE key = ?", (key,))
        return _blob(row[0]) if row else None

    def get_values(self, keys: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), _ROWS_PER_STATEMENT):
            chunk = keys[start : start + _ROWS_PER_STATEMENT]
            marks = ", ".join("?" * len(chunk))
            for key, value in self._all(f"SELECT key, value FROM state WHERE key IN ({marks})",
                                        tuple(chunk)):
                found[key] = _blob(value)
        return found

    def iter_values(self) -> Iterator[tuple[str, bytes]]:
        cursor = self._conn().execute("SELECT key, value FROM state ORDER BY key")
        rows = cursor.fetchmany(10_000)
        while rows:
            for key, value in rows:
                yield key, _blob(value)
            rows = cursor.fetchmany(10_000)

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        # a range of the primary key: every key that starts with prefix sorts in
        # [prefix, prefix + U+10FFFF)
        rows = self._all("SELECT key, value FROM state WHERE key >= ? AND key < ? ORDER BY key",
                         (prefix, prefix + "\U0010ffff"))
        for key, value in rows:
            yield key, _blob(value)

    def get_node(self, node_id: int) -> bytes:
        number = node_id // PAGE_NODES
        page = self._pages.get(number)
        if page is None:
            row = self._one("SELECT data FROM smt_pages WHERE page = ?", (number,))
            if row is None:
                raise KeyError(node_id)
            page = _blob(row[0])
            if len(self._pages) >= _PAGE_CACHE:
                self._pages.clear()
            self._pages[number] = page
        offset = (node_id % PAGE_NODES) * SLOT
        size = page[offset] if offset < len(page) else 0
        if not size:
            raise KeyError(node_id)
        return page[offset + 1 : offset + 1 + size]

    def next_node_id(self) -> int:
        return self._next_node

    # the one write ------------------------------------------------------------------------
    def commit_block(self, record: BlockRecord) -> None:
        with self._lock:
            expected = self.latest_height() + 1
            if record.height != expected:
                raise StoreError(f"commit of height {record.height}, expected {expected}")
            db = self._conn()
            try:
                db.execute("BEGIN IMMEDIATE")
                _insert_rows(db, "INSERT INTO smt_pages", _pack_pages(record.nodes))
                writes = [(k, v) for k, v in record.state_writes.items() if v is not None]
                deletes = [(k,) for k, v in record.state_writes.items() if v is None]
                _insert_rows(db, "INSERT OR REPLACE INTO state", writes)
                db.executemany("DELETE FROM state WHERE key = ?", deletes)
                _insert_rows(db, "INSERT INTO txs",
                             [(record.height, i, _prefix(t[0]), t[0], t[1], t[2], t[3])
                              for i, t in enumerate(record.txs)])
                db.execute(
                    "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (record.height, record.block_hash, record.header, record.last_commit,
                     record.certificate, record.state_root_id, _join(record.history)))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if record.nodes:
                last = max(n for n, _ in record.nodes)
                self._next_node = max(self._next_node, (last // PAGE_NODES + 1) * PAGE_NODES)
