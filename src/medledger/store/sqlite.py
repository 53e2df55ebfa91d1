"""The SQLite store: one database file per node, WAL journal, ``synchronous=FULL``.

One block commit is one SQLite transaction (one fsync per block, never per transaction).
Sparse Merkle tree nodes are addressed by integer ids and stored 64 to a row ("pages" of
fixed slots: a length byte, then the node's bytes), so that a block's thousands of new nodes
cost a few dozen row inserts; each block's nodes start on a fresh page, so a page is written
once and never changed. Transactions are found by id through an index on the first 8 bytes
of the id, and by sender through one on the first 8 bytes of the sender's key. Events are
numbered in commit order (``seq``) and indexed by type and by each attribute.

A store restored from a snapshot (:meth:`SQLiteStore.restoring`) keeps its base in ``meta``:
``base_height``, ``base_history`` (32-byte hashes, concatenated), ``base_validators``,
``base_txs`` and ``base_events``; the tables are the same as a full store's.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import zip_longest
from pathlib import Path

from medledger.store.base import (
    BlockRecord,
    EventQuery,
    Restoration,
    Store,
    StoreBase,
    StoredBlock,
    StoredEvent,
    StoredTx,
    StoreError,
    StoreMismatch,
)
from medledger.store.sqlite_rows import (
    _COUNT_EVENTS,
    _FETCH,
    _INDEX_ATTRS,
    _INDEX_BATCH,
    _INDEX_BEGIN,
    _INDEX_END,
    _INDEX_TXS,
    _PAGE_CACHE,
    _ROWS_PER_STATEMENT,
    _TX_COLUMNS,
    PAGE_NODES,
    SLOT,
    _attr_key,
    _blob,
    _insert_rows,
    _join,
    _pack_pages,
    _prefix,
    _sender_of_raw,
    _sender_prefix_of_raw,
    _split,
    _stored_tx,
    _unpack_page,
)

__all__ = ["SQLiteStore"]

SCHEMA_VERSION = b"4"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL, header BLOB NOT NULL,
    last_commit BLOB, certificate BLOB NOT NULL, state_root_id INTEGER NOT NULL,
    history BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS txs (
    height INTEGER NOT NULL, idx INTEGER NOT NULL, id_prefix INTEGER NOT NULL,
    tx_id BLOB NOT NULL, raw BLOB NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL,
    sender_prefix INTEGER, events BLOB,
    PRIMARY KEY (height, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS txs_by_id ON txs (id_prefix);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, height INTEGER NOT NULL, tx_index INTEGER,
    type TEXT NOT NULL, attrs BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, seq);
CREATE INDEX IF NOT EXISTS events_by_height ON events (height, seq);
CREATE TABLE IF NOT EXISTS block_events (
    height INTEGER PRIMARY KEY, begin_events BLOB, end_events BLOB);
CREATE TABLE IF NOT EXISTS event_attrs (
    attr TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (attr, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS smt_pages (page INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""
_SENDER_INDEX = "CREATE INDEX IF NOT EXISTS txs_by_sender ON txs (sender_prefix, height, idx)"

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
        elif version in (b"2", b"3"):
            if version == b"2":
                self._migrate_from_2()
            self._migrate_from_3()
        elif version != SCHEMA_VERSION:
            raise StoreMismatch(f"store {self.path} has schema {version!r}, expected {SCHEMA_VERSION!r}")
        self._conn().execute(_SENDER_INDEX)  # after any migration added its column
        self._next_node = self._query_next_node()
        self._pages: dict[int, bytes] = {}
        self._base = self._load_base()

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
                db.execute("UPDATE meta SET value = '3' WHERE name = 'schema'")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _migrate_from_3(self) -> None:
        """Schema 4 adds the sender and events of each transaction, and the event index.
        Blocks committed before it have no events; their senders are read from their
        bytes."""
        db = self._conn()
        with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                columns = {r[1] for r in db.execute("PRAGMA table_info(txs)")}
                for column, kind in (("sender_prefix", "INTEGER"), ("events", "BLOB")):
                    if column not in columns:
                        db.execute(f"ALTER TABLE txs ADD COLUMN {column} {kind}")
                rows = db.execute("SELECT height, idx, raw FROM txs").fetchall()
                db.executemany("UPDATE txs SET sender_prefix = ? WHERE height = ? AND idx = ?",
                               [(_sender_prefix_of_raw(_blob(r[2])), r[0], r[1]) for r in rows])
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

    def base(self) -> StoreBase | None:
        return self._base

    def _load_base(self) -> StoreBase | None:
        height = self.get_meta("base_height")
        if height is None:
            return None
        parts = {name: self.get_meta(f"base_{name}")
                 for name in ("history", "validators", "txs", "events")}
        missing = sorted(name for name, value in parts.items() if value is None)
        if missing:
            raise StoreError(f"store {self.path} starts at height {int(height)} but its meta "
                             f"lacks base_{', base_'.join(missing)}")
        return StoreBase(int(height), _split(parts["history"] or b""),
                         parts["validators"] or b"", int(parts["txs"] or b"0"),
                         int(parts["events"] or b"0"))

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
        rows = self._all(f"SELECT {_TX_COLUMNS} FROM txs WHERE height = ? ORDER BY idx",
                         (height,))
        return [_stored_tx(r) for r in rows]

    def get_block_events(self, height: int) -> tuple[bytes | None, bytes | None]:
        row = self._one("SELECT begin_events, end_events FROM block_events WHERE height = ?",
                        (height,))
        if row is None:
            return None, None
        return (None if row[0] is None else _blob(row[0]),
                None if row[1] is None else _blob(row[1]))

    def count_txs(self) -> int:
        row = self._one("SELECT COUNT(*) FROM txs")
        return (int(row[0]) if row else 0) + (self._base.txs if self._base else 0)

    def count_events(self, below: int) -> int:
        row = self._one(_COUNT_EVENTS, (below,))
        return (int(row[0]) if row else 0) + self._events_below_base()

    def get_tx(self, tx_id: bytes) -> StoredTx | None:
        rows = self._all(f"SELECT {_TX_COLUMNS} FROM txs WHERE id_prefix = ?",
                         (_prefix(tx_id),))
        for r in rows:
            if _blob(r[0]) == tx_id:
                return _stored_tx(r)
        return None

    def list_blocks(self, before: int | None, limit: int) -> list[StoredBlock]:
        top = self.latest_height() + 1 if before is None else before
        rows = self._all(
            "SELECT height, hash, header, last_commit, certificate, state_root_id "
            "FROM blocks WHERE height < ? ORDER BY height DESC LIMIT ?", (top, limit))
        return [StoredBlock(r[0], _blob(r[1]), _blob(r[2]),
                            None if r[3] is None else _blob(r[3]), _blob(r[4]), r[5])
                for r in rows]

    def txs_by_sender(self, sender: bytes, before: tuple[int, int] | None,
                      limit: int) -> list[StoredTx]:
        height, index = before if before is not None else (2**62, 0)
        found: list[StoredTx] = []
        # the index holds 8 bytes of the key: rows of another sender sharing them are skipped
        while len(found) < limit:
            rows = self._all(
                f"SELECT {_TX_COLUMNS} FROM txs WHERE sender_prefix = ? AND "
                "(height < ? OR (height = ? AND idx < ?)) ORDER BY height DESC, idx DESC "
                "LIMIT ?", (_prefix(sender), height, height, index, limit))
            if not rows:
                break
            found.extend(t for t in map(_stored_tx, rows) if _sender_of_raw(t.raw) == sender)
            height, index = rows[-1][1], rows[-1][2]
        return found[:limit]

    def list_events(self, query: EventQuery) -> list[StoredEvent]:
        self.index_events()
        where, args = ["e.seq > ?", "e.height >= ?"], [query.after, query.from_height]
        if query.type is not None:
            where.append("e.type = ?")
            args.append(query.type)
        for name, value in query.attrs:
            where.append("e.seq IN (SELECT seq FROM event_attrs WHERE attr = ?)")
            args.append(_attr_key(name, value))
        rows = self._all(
            f"SELECT e.seq, e.height, e.tx_index, e.type, e.attrs FROM events e "
            f"WHERE {' AND '.join(where)} ORDER BY e.seq LIMIT ?", (*args, query.limit))
        return [StoredEvent(r[0], r[1], r[2], str(r[3]), _blob(r[4])) for r in rows]

    def last_event_seq(self) -> int:
        self.index_events()
        row = self._one("SELECT MAX(seq) FROM events")
        return int(row[0]) if row and row[0] is not None else self._events_below_base()

    def _events_below_base(self) -> int:
        return self._base.events if self._base else 0

    def get_history(self, height: int | None = None) -> list[bytes]:
        if height is None:
            row = self._one("SELECT history FROM blocks ORDER BY height DESC LIMIT 1")
        else:
            row = self._one("SELECT history FROM blocks WHERE height = ?", (height,))
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

    def iter_prefix(self, prefix: str, after: str | None = None,
                    limit: int | None = None) -> Iterator[tuple[str, bytes]]:
        # a range of the primary key: every key that starts with prefix sorts in
        # [prefix, prefix + U+10FFFF)
        low, op = (prefix, ">=") if after is None or after < prefix else (after, ">")
        rows = self._all(f"SELECT key, value FROM state WHERE key {op} ? AND key < ? "
                         "ORDER BY key LIMIT ?",
                         (low, prefix + "\U0010ffff", -1 if limit is None else limit))
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

    def _save_block_events(self, db: sqlite3.Connection, record: BlockRecord) -> None:
        if not record.begin_events and not record.end_events:
            return
        lists = [b"[" + b",".join(events) + b"]" if events else None
                 for events in (record.begin_events, record.end_events)]
        db.execute("INSERT INTO block_events VALUES (?, ?, ?)", (record.height, *lists))

    def index_events(self) -> int:
        """Index the events of every committed block not indexed yet; return the height
        indexed up to. Readers of events call it first, so a node that nobody asks for
        events never spends the work, and one under load leaves it to its readers."""
        with self._lock:
            done = int(self.get_meta("events_indexed") or b"0")
            tip = self.latest_height()
            db = self._conn()
            while done < tip:
                last = min(tip, done + _INDEX_BATCH)
                try:
                    db.execute("BEGIN IMMEDIATE")
                    row = db.execute("SELECT MAX(seq) FROM events").fetchone()
                    seq = (row[0] or self._events_below_base()) + 1
                    for height in range(done + 1, last + 1):
                        for sql in (_INDEX_BEGIN, _INDEX_TXS, _INDEX_END):
                            seq += db.execute(sql, {"base": seq, "height": height}).rowcount
                        db.execute(_INDEX_ATTRS, {"height": height})
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('events_indexed', ?)",
                               (str(last).encode(),))
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                done = last
            return done

    # reading everything, for verification -------------------------------------------------
    schema_version = SCHEMA_VERSION

    def _rows(self, sql: str) -> Iterator[tuple]:  # type: ignore[type-arg]
        """The rows of ``sql``, fetched a batch at a time."""
        try:
            cursor = self._conn().execute(sql)
            rows = cursor.fetchmany(_FETCH)
            while rows:
                yield from rows
                rows = cursor.fetchmany(_FETCH)
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store {self.path}: {e}") from e

    def iter_meta(self) -> Iterator[tuple[str, bytes]]:
        for name, value in self._all("SELECT name, value FROM meta ORDER BY name"):
            yield str(name), _blob(value)

    def iter_nodes(self) -> Iterator[tuple[int, bytes]]:
        for number, data in self._rows("SELECT page, data FROM smt_pages ORDER BY page"):
            yield from _unpack_page(number, _blob(data))

    def iter_block_events(self) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        for height, begin, end in self._rows(
                "SELECT height, begin_events, end_events FROM block_events ORDER BY height"):
            yield (height, None if begin is None else _blob(begin),
                   None if end is None else _blob(end))

    def iter_indexed_events(self) -> Iterator[StoredEvent]:
        for r in self._rows("SELECT seq, height, tx_index, type, attrs FROM events "
                            "ORDER BY seq"):
            yield StoredEvent(r[0], r[1], r[2], str(r[3]), _blob(r[4]))

    def iter_event_attrs(self) -> Iterator[tuple[int, str]]:
        for seq, attr in self._rows("SELECT seq, attr FROM event_attrs ORDER BY seq, attr"):
            yield seq, str(attr)

    def tx_lookup_faults(self, height: int, txs: list[tuple[bytes, bytes]]) -> list[int]:
        rows = self._all("SELECT idx, id_prefix, sender_prefix FROM txs WHERE height = ? "
                         "ORDER BY idx", (height,))
        wanted = [(i, _prefix(tx_id), _prefix(sender)) for i, (tx_id, sender) in enumerate(txs)]
        return [i for i, (row, want) in enumerate(zip_longest(rows, wanted)) if row != want]

    def storage_faults(self) -> list[str]:
        try:
            rows = self._all("PRAGMA integrity_check")
        except StoreError as e:
            return [str(e)]
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    @contextmanager
    def pinned(self) -> Iterator[int]:
        db = self._conn()
        db.execute("BEGIN")  # deferred: the first read below takes the WAL read snapshot
        try:
            yield self.latest_height()
        finally:
            db.execute("ROLLBACK")  # nothing was written

    # writes -------------------------------------------------------------------------------
    def commit_block(self, record: BlockRecord) -> None:
        with self._lock:
            expected = self.latest_height() + 1
            if record.height != expected:
                raise StoreError(f"commit of height {record.height}, expected {expected}")
            db = self._conn()
            try:
                db.execute("BEGIN IMMEDIATE")
                self._write_record(db, record)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._advance_nodes(record.nodes)

    def _write_record(self, db: sqlite3.Connection, record: BlockRecord) -> None:
        _insert_rows(db, "INSERT INTO smt_pages", _pack_pages(record.nodes))
        writes = [(k, v) for k, v in record.state_writes.items() if v is not None]
        deletes = [(k,) for k, v in record.state_writes.items() if v is None]
        _insert_rows(db, "INSERT OR REPLACE INTO state", writes)
        db.executemany("DELETE FROM state WHERE key = ?", deletes)
        _insert_rows(db, "INSERT INTO txs",
                     [(record.height, i, _prefix(t[0]), t[0], t[1], t[2], t[3],
                       _prefix(t[4]), t[5] or None)
                      for i, t in enumerate(record.txs)])
        self._save_block_events(db, record)
        db.execute(
            "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.height, record.block_hash, record.header, record.last_commit,
             record.certificate, record.state_root_id, _join(record.history)))

    def _advance_nodes(self, nodes: list[tuple[int, bytes]]) -> None:
        """Start the next block's nodes on the page after the last of ``nodes``."""
        if nodes:
            last = max(n for n, _ in nodes)
            self._next_node = max(self._next_node, (last // PAGE_NODES + 1) * PAGE_NODES)

    @contextmanager
    def restoring(self) -> Iterator[Restoration]:
        with self._lock:
            if self.latest_height() or self._one("SELECT 1 FROM state LIMIT 1"):
                raise StoreError(f"store {self.path} is not empty: a snapshot is restored "
                                 "into an empty store only")
            db = self._conn()
            next_node = self._next_node
            try:
                db.execute("BEGIN IMMEDIATE")
                yield _SQLiteRestoration(self, db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._next_node = next_node
                self._pages.clear()  # pages read back before the rollback are gone
                raise
            self._base = self._load_base()


class _SQLiteRestoration(Restoration):
    """The writes of :meth:`SQLiteStore.restoring`, on the restoring thread's connection."""

    def __init__(self, store: SQLiteStore, db: sqlite3.Connection) -> None:
        self._store = store
        self._db = db

    def put_state(self, values: list[tuple[str, bytes]], nodes: list[tuple[int, bytes]]
                  ) -> None:
        _insert_rows(self._db, "INSERT INTO smt_pages", _pack_pages(nodes))
        _insert_rows(self._db, "INSERT INTO state", values)
        self._store._advance_nodes(nodes)

    def finish(self, record: BlockRecord, base: StoreBase) -> None:
        if record.height != base.height or record.nodes or record.state_writes:
            raise StoreError("a restored base block carries no state writes or nodes, and "
                             "is the base")
        self._store._write_record(self._db, record)
        meta = {"base_height": str(base.height).encode(), "base_history": _join(base.history),
                "base_validators": base.validators, "base_txs": str(base.txs).encode(),
                "base_events": str(base.events).encode(),
                "events_indexed": str(base.height - 1).encode()}
        _insert_rows(self._db, "INSERT OR REPLACE INTO meta", list(meta.items()))
