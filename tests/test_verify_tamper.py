"""``verify_store`` against one changed byte in each table of a store.

Two stores of a chain decided by CometBFT (driven through the ABCI application, without
CometBFT): one that holds every block, and one restored from a snapshot of height 6 that
followed on to the tip. The chain changes its validator set by governance (height 5) and
records the engine's report of a misbehaviour (height 7), so older versions of the state
tree differ from the tip and block hooks leave events; the event index is built up to
height 7. Each scenario changes one byte of one row of a copy of a store, through SQLite or
by patching the file on disk, and names the height verification must report and words of
its message.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from medledger.apps import default_registry, governance
from medledger.codec import decode
from medledger.crypto import SigningKey
from medledger.ledger import Block, Header, IntegrityError, Transaction, Validator, ValidatorSet
from medledger.node import Genesis, verify_store
from medledger.node.abci import LedgerApplication, validator_address
from medledger.node.abci.snapshots import FORMAT, StateSync
from medledger.node.abci.wire import abci_types
from medledger.node.chain import Chain
from medledger.store import SQLiteStore, StoreMismatch

T = abci_types()
CHAIN = "tamper-chain"
V = [SigningKey.from_seed(bytes([0x30 + i]) * 32) for i in range(4)]
NEW = SigningKey.from_seed(b"\x40" * 32)
GENESIS = Genesis(CHAIN, 1_700_000_000_000,
                  ValidatorSet.of([Validator(k.public_key, 10, f"v{i}") for i, k in enumerate(V)]),
                  ({"admins": [k.public_key.hex() for k in V], "id": "local",
                    "name": "Local operator", "role": "regulator"},))
TIP, INDEXED, BASE = 8, 7, 6
EMPTY_HEIGHT, CHANGE_HEIGHT, OFFENCE_REPORTED = 4, 5, 7


# the chain ---------------------------------------------------------------------------------------
def _txs(height: int) -> list[bytes]:
    """Anchors from every validator; none at EMPTY_HEIGHT; at height 2 also a governance
    change (a new validator from CHANGE_HEIGHT)."""
    if height == EMPTY_HEIGHT:
        return []
    registry = default_registry()
    txs = []
    for i, key in enumerate(V):
        type_, body = registry.sample_tx(10 * height + i)
        txs.append(Transaction.create(key, CHAIN, type_, 10 * height, body).raw)
    if height == 2:
        propose = Transaction.create(V[0], CHAIN, governance.PROPOSE, 25, {
            "kind": "validator_add", "effective_height": CHANGE_HEIGHT,
            "change": {"public_key": NEW.public_key.hex(), "power": 7, "name": "v4"}})
        txs += [propose.raw] + [Transaction.create(k, CHAIN, governance.APPROVE, 25, {
            "proposal": propose.tx_id.hex()}).raw for k in V[1:3]]
    return txs


def _commit(app: LedgerApplication, height: int) -> None:
    request = T.RequestFinalizeBlock(txs=_txs(height), height=height, hash=bytes([height]) * 32,
                                     proposer_address=validator_address(V[0].public_key))
    request.time.seconds = 1_700_000_000 + height
    if height == OFFENCE_REPORTED:
        report = request.misbehavior.add(type=T.DUPLICATE_VOTE, height=height - 1,
                                         total_voting_power=47)
        report.validator.address = validator_address(V[3].public_key)
        report.validator.power = 10
    answer = app.finalize_block(request)
    assert all(r.code == 0 for r in answer.tx_results)
    app.commit(T.RequestCommit())


class _Node:
    def __init__(self, path: Path, interval: int = 0) -> None:
        path.mkdir(parents=True)
        self.db = path / "chain.db"
        self.store = SQLiteStore(self.db)
        chain = Chain(self.store, GENESIS, default_registry())
        self.sync = StateSync(chain, path / "snapshots", interval=interval, chunk_bytes=700)
        self.app = LedgerApplication(chain, state_sync=self.sync, on_commit=self._committed)

    def _committed(self, block: Block) -> None:
        self.sync.committed(block.header.height)
        self.sync.writer.wait(30)

    def follow(self, heights: range) -> None:
        """Commit ``heights``, the event index built before the last."""
        for height in heights:
            if height == TIP:
                self.store.index_events()
            _commit(self.app, height)

    def close(self) -> Path:
        self.sync.close()
        self.store.close()
        return self.db


def _restore(source: _Node, fresh: _Node) -> None:
    app = source.app
    offered = next(s for s in app.list_snapshots(T.RequestListSnapshots()).snapshots
                   if s.height == BASE)
    chunks = [app.load_snapshot_chunk(T.RequestLoadSnapshotChunk(
        height=BASE, format=FORMAT, chunk=i)).chunk for i in range(offered.chunks)]
    stored = source.store.get_block(BASE)
    assert stored is not None
    app_hash = Header.from_dict(decode(stored.header)).state_root
    fresh.app.offer_snapshot(T.RequestOfferSnapshot(snapshot=offered, app_hash=app_hash))
    for index, chunk in enumerate(chunks):
        fresh.app.apply_snapshot_chunk(T.RequestApplySnapshotChunk(index=index, chunk=chunk,
                                                                   sender="peer"))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``full``: every block from 1; ``restored``: from the snapshot of BASE on."""
    root = tmp_path_factory.mktemp("stores")
    source = _Node(root / "full", interval=3)
    source.follow(range(1, TIP + 1))
    fresh = _Node(root / "restored")
    _restore(source, fresh)
    fresh.follow(range(BASE + 1, TIP + 1))
    return {"full": source.close(), "restored": fresh.close()}


@pytest.fixture
def copies(stores: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    def copy(which: str) -> Path:
        path = tmp_path / f"{which}.db"
        shutil.copyfile(stores[which], path)
        return path
    return copy


# edits -------------------------------------------------------------------------------------------
Edit = Callable[[sqlite3.Connection], None]


def _flipped(value: object, at: int | bytes, mask: int) -> object:
    """``value`` with one byte XORed with ``mask``: byte ``at``, or the byte just after
    the first place ``at`` occurs."""
    if isinstance(value, int):
        return value ^ mask
    data = bytearray(value.encode() if isinstance(value, str) else bytes(value))  # type: ignore[attr-defined]
    index = at if isinstance(at, int) else data.index(at) + len(at)
    data[index] ^= mask
    return data.decode() if isinstance(value, str) else bytes(data)


def flip(table: str, column: str, where: str, at: int | bytes = 0, mask: int = 1) -> Edit:
    """Change one byte of ``column`` in the one row of ``table`` that ``where`` selects."""
    def edit(db: sqlite3.Connection) -> None:
        rows = db.execute(f"SELECT {column} FROM {table} WHERE {where}").fetchall()
        assert len(rows) == 1, (table, where, rows)
        db.execute(f"UPDATE {table} SET {column} = ? WHERE {where}",
                   (_flipped(rows[0][0], at, mask),))
    return edit


def run(sql: str) -> Edit:
    def edit(db: sqlite3.Connection) -> None:
        assert db.execute(sql).rowcount == 1
    return edit


def _root_id(db: sqlite3.Connection, height: int) -> int:
    return int(db.execute("SELECT state_root_id FROM blocks WHERE height = ?",
                          (height,)).fetchone()[0])


def flip_node(height: int, offset: int, mask: int = 1) -> Edit:
    """Change byte ``offset`` of the root node of ``height`` (in no later version) in its
    page (64 slots of a length byte and up to 81 bytes of node)."""
    def edit(db: sqlite3.Connection) -> None:
        node = _root_id(db, height)
        at = (node % 64) * 82 + 1 + offset
        flip("smt_pages", "data", f"page = {node // 64}", at, mask)(db)
    return edit


def flip_padding(height: int) -> Edit:
    """Change a byte after the last node of the page holding the root of ``height``."""
    def edit(db: sqlite3.Connection) -> None:
        node = _root_id(db, height)
        flip("smt_pages", "data", f"page = {node // 64}", (node % 64 + 1) * 82 - 1, 0x40)(db)
    return edit


def event_of(height: int) -> str:
    return f"seq = (SELECT MIN(seq) FROM events WHERE height = {height})"


def attr_of(height: int) -> str:
    return (f"seq = (SELECT MIN(seq) FROM events WHERE height = {height}) AND attr = "
            f"(SELECT MIN(attr) FROM event_attrs WHERE seq = (SELECT MIN(seq) FROM events "
            f"WHERE height = {height}))")


FIRST_TX = "height = 3 AND idx = 0"

# name: (store, edit, height verify names, words of its message)
SQL_EDITS: dict[str, tuple[str, Edit, int, str]] = {
    # meta
    "meta: the chain id": ("full", flip("meta", "value", "name = 'chain_id'"), TIP, "chain_id"),
    "meta: the height events are indexed to": (
        "full", flip("meta", "value", "name = 'events_indexed'"), TIP, "table events holds"),
    "meta: an entry's name": (
        "full", flip("meta", "name", "name = 'events_indexed'", at=-1), TIP, "no store writes"),
    "meta: the base frontier": (
        "restored", flip("meta", "value", "name = 'base_history'", at=5), BASE, "history root"),
    "meta: the base validator set": (
        "restored", flip("meta", "value", "name = 'base_validators'", at=b'"public_key":"'),
        BASE, "validator-set hash"),
    "meta: the events below the base": (
        "restored", flip("meta", "value", "name = 'base_events'", at=-1), BASE,
        "of the index (table events)"),
    "meta: the base height": (
        "restored", flip("meta", "value", "name = 'base_height'"), BASE + 1, "blocks below it"),
    # blocks
    "blocks: a header": ("full", flip("blocks", "header", "height = 3", at=b'"time":1'), 3,
                         "block hash does not match"),
    "blocks: a block hash": ("full", flip("blocks", "hash", "height = 3"), 3,
                             "block hash does not match"),
    "blocks: an old history frontier": ("full", flip("blocks", "history", "height = 3"), 3,
                                        "history frontier (table blocks)"),
    "blocks: the engine's block hash": (
        "full", flip("blocks", "certificate", "height = 3", at=b'0303'), 3, "log of blocks"),
    "blocks: a state root id": ("full", flip("blocks", "state_root_id", "height = 2"), 2,
                                "state tree node"),
    "blocks: a height": ("full", flip("blocks", "height", "height = 3", mask=8), 3,
                         "block is missing"),
    "blocks: a commit where the engine keeps it": (
        "full", run("UPDATE blocks SET last_commit = certificate WHERE height = 3"), 3,
        "carries a commit"),
    # txs
    "txs: a transaction's bytes": ("full", flip("txs", "raw", FIRST_TX, at=b'"signature":"'),
                                   3, "do not match its id"),
    "txs: a transaction id": ("full", flip("txs", "tx_id", FIRST_TX), 3, "do not match its id"),
    "txs: a result code": ("full", flip("txs", "code", FIRST_TX), 3, "results root"),
    "txs: a result's event": ("full", flip("txs", "events", FIRST_TX, at=b'"sender":"'), 3,
                              "results root"),
    "txs: the id lookup": ("full", flip("txs", "id_prefix", FIRST_TX), 3, "lookup columns"),
    "txs: the sender lookup": ("full", flip("txs", "sender_prefix", FIRST_TX), 3,
                               "lookup columns"),
    "txs: the number of the last": ("full", flip("txs", "idx", "height = 3 AND idx = 3",
                                                 mask=8), 3, "numbered"),
    "txs: the height of one": ("full", flip("txs", "height", "height = 3 AND idx = 1",
                                            mask=8), 3, "numbered"),
    # smt_pages
    "smt_pages: a hash in an older version's node": ("full", flip_node(2, 40), 2,
                                                     "does not hash"),
    "smt_pages: a child id in an older version's node": ("full", flip_node(3, 80), 3,
                                                         "state tree node"),
    "smt_pages: a byte past the nodes of a page": ("full", flip_padding(3), 3,
                                                    "table smt_pages"),
    "smt_pages: a page number": ("full", flip("smt_pages", "page", "page = 2", mask=16), 2,
                                 "missing from table smt_pages"),
    "smt_pages: a page no version holds": (
        "full", run("INSERT INTO smt_pages SELECT 40, data FROM smt_pages WHERE page = 3"),
        TIP, "in no version"),
    # state
    "state: a value": ("full", flip("state", "value", "key = (SELECT MIN(key) FROM state "
                                    "WHERE key LIKE 'anchor/%')", at=-3), TIP, "state value"),
    "state: a key": ("full", flip("state", "key", "key = (SELECT MIN(key) FROM state WHERE key "
                                  "LIKE 'anchor/%')", at=-1), TIP, "state value"),
    # block_events
    "block_events: an attribute of a hook's event": (
        "full", flip("block_events", "begin_events", f"height = {CHANGE_HEIGHT}",
                     at=b'"total_power":"4'), CHANGE_HEIGHT, "of the index (table events)"),
    "block_events: the type of a hook's event": (
        "full", flip("block_events", "begin_events", f"height = {CHANGE_HEIGHT}",
                     at=b'"type":"', mask=0x20), CHANGE_HEIGHT, "(table block_events)"),
    "block_events: a height": (
        "full", flip("block_events", "height", f"height = {OFFENCE_REPORTED}", mask=16),
        OFFENCE_REPORTED, "of the index (table events)"),
    # events
    "events: attributes": ("full", flip("events", "attrs", event_of(3), at=b'"sender":"'), 3,
                           "table events"),
    "events: a type": ("full", flip("events", "type", event_of(3)), 3, "table events"),
    "events: a height": ("full", flip("events", "height", event_of(3)), 3, "table events"),
    "events: a transaction's index": ("full", flip("events", "tx_index", event_of(3)), 3,
                                      "table events"),
    "events: a seq": ("full", flip("events", "seq", event_of(3), mask=64), 3, "table events"),
    "events: a row dropped": ("full", run(f"DELETE FROM events WHERE {event_of(3)}"), 3,
                              "table events"),
    # event_attrs
    "event_attrs: an attribute": ("full", flip("event_attrs", "attr", attr_of(3), at=-1), 3,
                                  "table event_attrs"),
    "event_attrs: a seq": ("full", flip("event_attrs", "seq", attr_of(3), mask=64), 3,
                           "table event_attrs"),
    "event_attrs: a row dropped": ("full", run(f"DELETE FROM event_attrs WHERE {attr_of(3)}"),
                                   3, "table event_attrs"),
    "event_attrs: a row added": (
        "full", run(f"INSERT INTO event_attrs VALUES ('label=x', ({event_of(3)[6:]}))"), 3,
        "table event_attrs"),
}


def _verify(path: Path) -> None:
    store = SQLiteStore(path)
    try:
        verify_store(store, GENESIS)
    finally:
        store.close()


@pytest.mark.parametrize("which", ["full", "restored"])
def test_an_untouched_copy_passes(copies: Callable[[str], Path], which: str) -> None:
    store = SQLiteStore(copies(which))
    report = verify_store(store, GENESIS)
    store.close()
    assert report.height == TIP and report.tree_nodes > 0


@pytest.mark.parametrize("name", SQL_EDITS)
def test_a_byte_changed_through_sqlite_is_caught(copies: Callable[[str], Path],
                                                 name: str) -> None:
    which, edit, height, words = SQL_EDITS[name]
    path = copies(which)
    db = sqlite3.connect(path)
    with db:
        edit(db)
    db.close()
    with pytest.raises(IntegrityError) as caught:
        _verify(path)
    assert (caught.value.height, words in str(caught.value)) == (height, True), caught.value


# on disk -----------------------------------------------------------------------------------------
def _nodes_from(store: SQLiteStore, root: int) -> Iterator[int]:
    stack = [root]
    while stack:
        node = stack.pop()
        if node:
            yield node
            raw = store.get_node(node)
            if raw[0] == 2:
                stack.extend(struct.unpack(">QQ", raw[65:81]))


def _old_node(path: Path, data: bytes) -> bytes:
    """The bytes of a node block 2 wrote that the tip no longer holds, found once in the
    file (a node may straddle two of SQLite's pages)."""
    store = SQLiteStore(path)
    try:
        roots = [store.get_block(h).state_root_id for h in (1, 2, TIP)]  # type: ignore[union-attr]
        tip = set(_nodes_from(store, roots[2]))
        written = {node for node, _ in store.iter_nodes() if roots[0] < node <= roots[1]}
        for node in sorted(written - tip):
            raw = store.get_node(node)
            if data.count(raw) == 1:
                return raw
    finally:
        store.close()
    raise AssertionError("no node of block 2 lies whole in one page of the file")


def _row(path: Path, sql: str) -> tuple:  # type: ignore[type-arg]
    db = sqlite3.connect(path)
    try:
        row = db.execute(sql).fetchone()
    finally:
        db.close()
    assert row is not None
    return row  # type: ignore[no-any-return]


def _event_attrs(path: Path, data: bytes) -> tuple[bytes, int]:
    """An event's attributes as table events holds them (not inside a list of txs or
    block_events, where ``"attrs":`` comes before them)."""
    attrs = _row(path, f"SELECT attrs FROM events WHERE {event_of(3)}")[0].encode()
    at = next(i for i in range(len(data)) if data.startswith(attrs, i)
              and not data[:i].endswith(b'"attrs":'))
    return attrs, at


def _needle(path: Path, what: str, data: bytes) -> tuple[bytes, int]:
    """(bytes found once in the file, or with where they start; the offset to flip in them)."""
    if what == "an older version's tree node":
        return _old_node(path, data), 40
    if what == "the height events are indexed to":
        return b"events_indexed" + str(INDEXED).encode(), len("events_indexed")
    if what == "an event's attributes":
        attrs, at = _event_attrs(path, data)
        return data[at : at + len(attrs)], attrs.index(b'"sender":"') + 10
    if what == "an attribute lookup":
        attr = _row(path, f"SELECT attr FROM event_attrs WHERE {attr_of(3)}")[0].encode()
        return attr, len(attr) - 1
    if what == "a transaction's bytes":
        raw = _row(path, f"SELECT raw FROM txs WHERE {FIRST_TX}")[0]
        return bytes(raw), bytes(raw).index(b'"signature":"') + 13
    if what == "a header":
        header = bytes(_row(path, "SELECT header FROM blocks WHERE height = 3")[0])
        return header, header.index(b'"time":') + 8
    if what == "a state value":
        key, value = _row(path, "SELECT key, value FROM state WHERE key LIKE 'anchor/%' "
                                "ORDER BY key LIMIT 1")
        return key.encode() + bytes(value), len(key) + len(value) - 3
    if what == "a hook's event":
        events = bytes(_row(path, "SELECT begin_events FROM block_events WHERE height = "
                                  f"{CHANGE_HEIGHT}")[0])
        return events, events.index(b'"total_power":"4') + 15
    raise KeyError(what)


# name: (height verify names, words of its message)
DISK_EDITS: dict[str, tuple[int, str]] = {
    "an older version's tree node": (2, "does not hash"),
    "the height events are indexed to": (TIP, "table events holds"),
    "an event's attributes": (3, "table events"),
    "an attribute lookup": (3, "table event_attrs"),
    "a transaction's bytes": (3, "do not match its id"),
    "a header": (3, "block hash does not match"),
    "a state value": (TIP, "state value"),
    "a hook's event": (CHANGE_HEIGHT, "of the index (table events)"),
}


@pytest.mark.parametrize("name", DISK_EDITS)
def test_a_byte_patched_in_the_file_is_caught(copies: Callable[[str], Path], name: str) -> None:
    path = copies("full")
    data = path.read_bytes()
    needle, offset = _needle(path, name, data)
    assert data.count(needle) == 1 or name == "an event's attributes"
    at = data.index(needle) if name != "an event's attributes" else _event_attrs(path, data)[1]
    patched = bytearray(data)
    patched[at + offset] ^= 1
    path.write_bytes(bytes(patched))
    height, words = DISK_EDITS[name]
    with pytest.raises(IntegrityError) as caught:
        _verify(path)
    assert (caught.value.height, words in str(caught.value)) == (height, True), caught.value


# a restore in batches ---------------------------------------------------------------------------
def test_the_nodes_a_restore_in_batches_replaced_are_in_no_version_and_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medledger.node.abci import snapshots

    monkeypatch.setattr(snapshots, "RESTORE_BATCH", 4)  # a tree update per 4 entries
    source = _Node(tmp_path / "full", interval=3)
    source.follow(range(1, TIP + 1))
    fresh = _Node(tmp_path / "restored")
    _restore(source, fresh)
    fresh.follow(range(BASE + 1, TIP + 1))
    source.close()
    store = SQLiteStore(fresh.close())
    report = verify_store(store, GENESIS)
    assert report.tree_nodes < sum(1 for _ in store.iter_nodes())
    store.close()


# refused before verification -------------------------------------------------------------------
def test_a_changed_genesis_hash_is_another_chain_s_store(copies: Callable[[str], Path]) -> None:
    path = copies("full")
    db = sqlite3.connect(path)
    with db:
        flip("meta", "value", "name = 'genesis_hash'")(db)
    db.close()
    with pytest.raises(StoreMismatch, match="another genesis"):
        _verify(path)


def test_a_changed_schema_is_refused_when_the_store_opens(copies: Callable[[str], Path]) -> None:
    path = copies("full")
    db = sqlite3.connect(path)
    with db:
        flip("meta", "value", "name = 'schema'")(db)
    db.close()
    with pytest.raises(StoreMismatch, match="schema"):
        SQLiteStore(path)
