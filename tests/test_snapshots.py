"""State sync snapshots without CometBFT: the format (deterministic bytes, chunk hashes,
the head), a restore through the ABCI methods, what it refuses, and that it is atomic."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from medledger.api import create_app
from medledger.apps import default_registry, governance
from medledger.codec import decode, encode
from medledger.crypto import SigningKey
from medledger.ledger import Block, Header, Transaction, Validator, ValidatorSet
from medledger.node import Genesis, verify_store
from medledger.node.abci import LedgerApplication, validator_address
from medledger.node.abci.snapshots import (
    FORMAT,
    Head,
    Snapshot,
    SnapshotError,
    StateSync,
    chunk_hash,
    export_chunks,
)
from medledger.node.abci.wire import abci_types
from medledger.node.chain import Chain
from medledger.store import EventQuery, SQLiteStore

T = abci_types()
OFFER = T.ResponseOfferSnapshot
APPLY = T.ResponseApplySnapshotChunk
CHAIN = "snap-chain"
V = [SigningKey.from_seed(bytes([0x60 + i]) * 32) for i in range(4)]
NEW = SigningKey.from_seed(b"\x70" * 32)
GENESIS = Genesis(CHAIN, 1_700_000_000_000,
                  ValidatorSet.of([Validator(k.public_key, 10, f"v{i}") for i, k in enumerate(V)]),
                  ({"admins": [k.public_key.hex() for k in V], "id": "local",
                    "name": "Local operator", "role": "regulator"},))
SMALL_CHUNKS = 700  # bytes: several chunks from a small state
SNAPSHOT_HEIGHT = 6


def _anchor(key: SigningKey, nonce: int, index: int) -> bytes:
    type_, body = default_registry().sample_tx(index)
    return Transaction.create(key, CHAIN, type_, nonce, body).raw


def _block_txs(height: int) -> list[bytes]:
    """The transactions of each height: anchors from every validator, and at height 2 a
    governance change (a new validator from height 5), so that the snapshot's validator
    set is not the genesis one."""
    txs = [_anchor(k, 10 * height, 10 * height + i) for i, k in enumerate(V)]
    if height == 2:
        propose = Transaction.create(V[0], CHAIN, governance.PROPOSE, 25, {
            "kind": "validator_add", "effective_height": 5,
            "change": {"public_key": NEW.public_key.hex(), "power": 7, "name": "v4"}})
        txs += [propose.raw] + [Transaction.create(k, CHAIN, governance.APPROVE, 25, {
            "proposal": propose.tx_id.hex()}).raw for k in V[1:3]]
    return txs


def _commit(app: LedgerApplication, height: int) -> bytes:
    request = T.RequestFinalizeBlock(txs=_block_txs(height), height=height,
                                     hash=bytes([height]) * 32,
                                     proposer_address=validator_address(V[0].public_key))
    request.time.seconds = 1_700_000_000 + height
    answer = app.finalize_block(request)
    assert all(r.code == 0 for r in answer.tx_results)
    app.commit(T.RequestCommit())
    return bytes(answer.app_hash)


class Node:
    """A store, its chain and its application, with state sync over ``dir/snapshots``."""

    def __init__(self, path: Path, interval: int = 0) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.store = SQLiteStore(path / "chain.db")
        self.chain = Chain(self.store, GENESIS, default_registry())
        self.sync = StateSync(self.chain, path / "snapshots", interval=interval, keep=2,
                              chunk_bytes=SMALL_CHUNKS)
        self.app = LedgerApplication(self.chain, state_sync=self.sync,
                                     on_commit=self._committed)

    def _committed(self, block: Block) -> None:
        self.sync.committed(block.header.height)
        self.sync.writer.wait(30)  # each snapshot on disk before the next height

    def close(self) -> None:
        self.sync.close()
        self.store.close()


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Node]:
    """A node at height SNAPSHOT_HEIGHT + 1 that wrote snapshots every 3 heights."""
    node = Node(tmp_path / "source", interval=3)
    for height in range(1, SNAPSHOT_HEIGHT + 2):
        _commit(node.app, height)
    yield node
    node.close()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Node]:
    """A node with an empty store, of the same genesis."""
    node = Node(tmp_path / "fresh")
    yield node
    node.close()


def _snapshot(node: Node, height: int = SNAPSHOT_HEIGHT) -> tuple[object, list[bytes]]:
    """The ABCI snapshot of ``height`` that ``node`` lists, and its chunks as it serves them."""
    listed = node.app.list_snapshots(T.RequestListSnapshots()).snapshots
    offered = next(s for s in listed if s.height == height)
    chunks = [node.app.load_snapshot_chunk(T.RequestLoadSnapshotChunk(
        height=height, format=FORMAT, chunk=i)).chunk for i in range(offered.chunks)]
    return offered, chunks


def _header(node: Node, height: int) -> Header:
    stored = node.store.get_block(height)
    assert stored is not None
    return Header.from_dict(decode(stored.header))


def _restore(node: Node, offered: object, chunks: list[bytes], app_hash: bytes) -> list[int]:
    """Offer and apply every chunk; return the results of the chunks."""
    answer = node.app.offer_snapshot(T.RequestOfferSnapshot(snapshot=offered, app_hash=app_hash))
    assert answer.result == OFFER.ACCEPT
    return [node.app.apply_snapshot_chunk(T.RequestApplySnapshotChunk(
        index=i, chunk=c, sender="peer")).result for i, c in enumerate(chunks)]


def _empty(store: SQLiteStore) -> bool:
    rows = store._conn().execute("SELECT (SELECT COUNT(*) FROM state) + "
                                 "(SELECT COUNT(*) FROM smt_pages) + "
                                 "(SELECT COUNT(*) FROM blocks)").fetchone()
    return store.latest_height() == 0 and rows[0] == 0 and store.base() is None


# the format -------------------------------------------------------------------------------------
def test_the_same_state_gives_the_same_bytes_on_every_node(source: Node, tmp_path: Path) -> None:
    other = Node(tmp_path / "other", interval=3)
    try:
        for height in range(1, SNAPSHOT_HEIGHT + 2):
            _commit(other.app, height)
        ours, our_chunks = _snapshot(source)
        theirs, their_chunks = _snapshot(other)
        assert ours == theirs and our_chunks == their_chunks
        assert len(our_chunks) > 2  # the head, the block's transactions, the state
        assert tuple(map(chunk_hash, our_chunks)) == Snapshot.from_abci(ours).chunk_hashes
        exports = []
        for _ in range(2):  # the tip, read twice: the same bytes
            with source.store.pinned() as tip:
                exports.append(list(export_chunks(source.store, CHAIN, tip, SMALL_CHUNKS)))
        assert exports[0] == exports[1] and Head.decode(exports[0][0]).height == tip
    finally:
        other.close()


def _listed(node: Node) -> list[int]:
    return [s.height for s in node.app.list_snapshots(T.RequestListSnapshots()).snapshots]


def test_only_the_most_recent_snapshots_are_kept(source: Node) -> None:
    assert _listed(source) == [6, 3]
    for height in (8, 9):
        _commit(source.app, height)
    assert _listed(source) == [9, 6]
    assert sorted(p.name for p in source.sync.files.directory.iterdir()) == ["6", "9"]


def test_the_head_holds_the_block_and_what_lies_below_it(source: Node) -> None:
    _, chunks = _snapshot(source)
    head = Head.decode(chunks[0])
    assert head.height == SNAPSHOT_HEIGHT and head.chain_id == CHAIN
    assert head.header == _header(source, SNAPSHOT_HEIGHT)
    assert head.txs_before == sum(len(_block_txs(h)) for h in range(1, SNAPSHOT_HEIGHT))
    assert head.events_before == source.store.count_events(SNAPSHOT_HEIGHT) > 0
    assert Head.decode(head.encode()) == head


@pytest.mark.parametrize(("case", "mutate"), [
    ("not JSON", lambda d: b"{"),
    ("a field too many", lambda d: encode({**d, "extra": 1})),
    ("a negative count", lambda d: encode({**d, "txs_before": -1})),
    ("a history that is not the header's", lambda d: encode({**d, "history_before": []})),
    ("a block not decided by CometBFT", lambda d: encode({**d, "certificate": {}})),
])
def test_a_malformed_head_is_refused(source: Node, case: str, mutate) -> None:  # type: ignore[no-untyped-def]
    _, chunks = _snapshot(source)
    with pytest.raises(SnapshotError):
        Head.decode(mutate(decode(chunks[0])))


# offers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("case", "change", "expected"), [
    ("our snapshot", {}, OFFER.ACCEPT),
    ("an unknown format", {"format": 2}, OFFER.REJECT_FORMAT),
    ("chunk hashes cut short", {"metadata": b"\x00" * 31}, OFFER.REJECT),
    ("a hash not over its chunk hashes", {"hash": b"\x00" * 32}, OFFER.REJECT),
    ("no chunks", {"chunks": 0, "metadata": b""}, OFFER.REJECT),
])
def test_offers(source: Node, fresh: Node, case: str, change: dict, expected: int) -> None:
    offered, _ = _snapshot(source)
    snapshot = T.Snapshot()
    snapshot.CopyFrom(offered)
    for name, value in change.items():
        setattr(snapshot, name, value)
    answer = fresh.app.offer_snapshot(T.RequestOfferSnapshot(
        snapshot=snapshot, app_hash=_header(source, SNAPSHOT_HEIGHT).state_root))
    assert answer.result == expected


def test_a_store_that_holds_blocks_aborts_state_sync(source: Node) -> None:
    offered, _ = _snapshot(source)
    answer = source.app.offer_snapshot(T.RequestOfferSnapshot(
        snapshot=offered, app_hash=_header(source, SNAPSHOT_HEIGHT).state_root))
    assert answer.result == OFFER.ABORT


# restoring --------------------------------------------------------------------------------------
def test_a_restored_node_continues_the_chain_as_its_source_does(source: Node,
                                                                fresh: Node) -> None:
    offered, chunks = _snapshot(source)
    app_hash = _header(source, SNAPSHOT_HEIGHT).state_root
    assert _restore(fresh, offered, chunks, app_hash) == [APPLY.ACCEPT] * len(chunks)
    info = fresh.app.info(T.RequestInfo())
    assert (info.last_block_height, info.last_block_app_hash) == (SNAPSHOT_HEIGHT, app_hash)
    base = fresh.store.base()
    assert base is not None and base.height == SNAPSHOT_HEIGHT
    assert fresh.store.get_block(1) is None and fresh.store.get_block(SNAPSHOT_HEIGHT)
    assert fresh.chain.tip_validators.power_of(NEW.public_key) == 7
    assert fresh.chain.total_txs == source.store.count_txs() - len(_block_txs(7))
    verify_store(fresh.store, GENESIS)
    # the next height: the same block, root and event numbers as the source's
    assert _commit(fresh.app, SNAPSHOT_HEIGHT + 1) == _header(source, 7).state_root
    assert fresh.store.get_block(7).block_hash == source.store.get_block(7).block_hash
    after = EventQuery(from_height=SNAPSHOT_HEIGHT + 1)
    assert fresh.store.list_events(after) == source.store.list_events(after)
    report = verify_store(fresh.store, GENESIS)
    assert report.height == 7 and report.transactions == len(_block_txs(6)) + len(_block_txs(7))


def test_a_corrupted_chunk_is_fetched_again_from_another_peer(source: Node,
                                                              fresh: Node) -> None:
    offered, chunks = _snapshot(source)
    fresh.app.offer_snapshot(T.RequestOfferSnapshot(
        snapshot=offered, app_hash=_header(source, SNAPSHOT_HEIGHT).state_root))
    assert fresh.app.apply_snapshot_chunk(T.RequestApplySnapshotChunk(
        index=0, chunk=chunks[0])).result == APPLY.ACCEPT
    bad = bytes([chunks[1][0] ^ 1]) + chunks[1][1:]
    answer = fresh.app.apply_snapshot_chunk(T.RequestApplySnapshotChunk(
        index=1, chunk=bad, sender="liar"))
    assert answer.result == APPLY.RETRY
    assert list(answer.refetch_chunks) == [1] and list(answer.reject_senders) == ["liar"]
    for index, chunk in enumerate(chunks[1:], start=1):
        assert fresh.app.apply_snapshot_chunk(T.RequestApplySnapshotChunk(
            index=index, chunk=chunk)).result == APPLY.ACCEPT
    assert fresh.chain.height == SNAPSHOT_HEIGHT


def test_a_snapshot_for_another_app_hash_is_rejected_at_its_head(source: Node,
                                                                 fresh: Node) -> None:
    offered, chunks = _snapshot(source)
    results = _restore(fresh, offered, chunks[:1], b"\x11" * 32)
    assert results == [APPLY.REJECT_SNAPSHOT]
    assert _empty(fresh.store)


def _with_altered_value(chunks: list[bytes]) -> tuple[object, list[bytes]]:
    """The snapshot with one state value changed in its last chunk and its chunk hashes
    made again: every chunk matches the metadata, but the state is not the app hash's."""
    from medledger.node.abci.snapshot_format import item, read_items

    items = list(read_items(chunks[-1]))
    kind, (key, _value) = items[-1]
    assert kind == b"S"
    items[-1] = (kind, [key, b'"altered"'])
    last = b"".join(item(k, *fields) for k, fields in items)
    altered = [*chunks[:-1], last]
    snapshot = Snapshot(SNAPSHOT_HEIGHT, tuple(chunk_hash(c) for c in altered))
    return snapshot.to_abci(T), altered


def test_a_snapshot_whose_state_is_not_the_app_hash_is_rejected(source: Node,
                                                                fresh: Node) -> None:
    _, chunks = _snapshot(source)
    offered, altered = _with_altered_value(chunks)
    results = _restore(fresh, offered, altered, _header(source, SNAPSHOT_HEIGHT).state_root)
    assert results == [APPLY.ACCEPT] * (len(altered) - 1) + [APPLY.REJECT_SNAPSHOT]
    assert _empty(fresh.store) and fresh.chain.height == 0
    offered, chunks = _snapshot(source)  # the honest snapshot restores afterwards
    app_hash = _header(source, SNAPSHOT_HEIGHT).state_root
    assert _restore(fresh, offered, chunks, app_hash)[-1] == APPLY.ACCEPT


_CRASH = """
import os, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from medledger.store import sqlite
from tests.test_snapshots import Node, T, _restore
from medledger.node.abci import snapshots

snapshots.RESTORE_BATCH = 5
calls = []
original = sqlite._SQLiteRestoration.put_state
def put_state(self, values, nodes):
    original(self, values, nodes)
    calls.append(1)
    if len(calls) == 2:
        os._exit(3)  # die mid-restore, the transaction open
sqlite._SQLiteRestoration.put_state = put_state
offered = T.Snapshot.FromString(Path(sys.argv[1]).read_bytes())
chunks = [Path(sys.argv[1] + f".{{i}}").read_bytes() for i in range(offered.chunks)]
_restore(Node(Path(sys.argv[2])), offered, chunks, bytes.fromhex(sys.argv[3]))
"""


def test_a_crash_mid_restore_leaves_an_empty_store(source: Node, tmp_path: Path) -> None:
    offered, chunks = _snapshot(source)
    saved = tmp_path / "offered"
    saved.write_bytes(offered.SerializeToString())
    for index, chunk in enumerate(chunks):
        Path(f"{saved}.{index}").write_bytes(chunk)
    app_hash = _header(source, SNAPSHOT_HEIGHT).state_root
    script = _CRASH.format(root=str(Path(__file__).resolve().parents[1]))
    crashed = subprocess.run([sys.executable, "-c", script, str(saved), str(tmp_path / "b"),
                              app_hash.hex()], capture_output=True, timeout=120,
                             check=False)
    assert crashed.returncode == 3, crashed.stderr.decode()[-2000:]
    node = Node(tmp_path / "b")  # opened again after the crash
    try:
        assert _empty(node.store)
        assert _restore(node, offered, chunks, app_hash)[-1] == APPLY.ACCEPT
        verify_store(node.store, GENESIS)
    finally:
        node.close()


def test_verification_from_the_base_catches_a_tampered_base_record(source: Node,
                                                                   fresh: Node) -> None:
    from medledger.ledger import IntegrityError

    offered, chunks = _snapshot(source)
    _restore(fresh, offered, chunks, _header(source, SNAPSHOT_HEIGHT).state_root)
    fresh.store.put_meta("base_validators", encode(GENESIS.validators.to_list()))
    fresh.store._base = fresh.store._load_base()
    with pytest.raises(IntegrityError, match="validator-set hash"):
        verify_store(fresh.store, GENESIS)


@pytest.mark.anyio
async def test_the_api_answers_pruned_below_the_base(source: Node, fresh: Node) -> None:
    from medledger.node.config import NodeConfig
    from medledger.node.node import Node as ApiNode

    offered, chunks = _snapshot(source)
    _restore(fresh, offered, chunks, _header(source, SNAPSHOT_HEIGHT).state_root)
    node = ApiNode(fresh.store, GENESIS, NEW, NodeConfig())
    transport = httpx.ASGITransport(app=create_app(node, run_node=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://node.test") as client:
        pruned = await client.get("/v1/blocks/2")
        assert pruned.status_code == 404 and pruned.json()["code"] == "pruned"
        assert f"snapshot at height {SNAPSHOT_HEIGHT}" in pruned.json()["message"]
        base = await client.get(f"/v1/blocks/{SNAPSHOT_HEIGHT}")  # held, but unproven here:
        assert (base.status_code, base.json()["code"]) == (503, "unavailable")  # no engine
        listed = (await client.get("/v1/blocks", params={"limit": 1})).json()
        assert [b["height"] for b in listed["blocks"]] == [SNAPSHOT_HEIGHT]
        assert listed["next"] is None
        status = (await client.get("/v1/status")).json()
        assert status["height"] == SNAPSHOT_HEIGHT
        assert status["total_txs"] == source.store.count_txs() - len(_block_txs(7))
    node.verifier.close()
