"""The compiled state tree update (``medledger_native``) against the Python reference.

For every history of batches, on the in-memory and the SQLite node store, both give the
same root and the same rows: the same ids, the same bytes, in the same order. On a store
that lost or altered a node, both raise the same error about the same node, cold cache or
warm. ``make setup`` builds the extension, so these tests fail (never skip) without it.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

try:
    import medledger_native  # noqa: F401  (the check that the extension is built)
except ImportError as e:  # pragma: no cover - a broken build
    raise ImportError("medledger_native is not installed: `make setup` builds native/") from e

from medledger.codec import Tag, tagged_hash
from medledger.merkle.sparse import (
    EMPTY_ROOT,
    ZERO,
    MemoryNodeStore,
    MissingNode,
    NodeRef,
    NodeStore,
    SparseMerkleTree,
    TamperedNode,
    leaf_hash,
    node_hash,
)
from medledger.store.base import BlockRecord
from medledger.store.sqlite import SQLiteStore

Changes = dict[bytes, bytes | None]
History = list[tuple[Changes, bool]]  # each batch, and whether its rows are kept


# -- keys, values and histories ----------------------------------------------------------------


def _key(first: int, last: int) -> bytes:
    """Keys that share 240 bits: deep chains of internal nodes."""
    return bytes([first]) + bytes(30) + bytes([last])


def _value(n: int) -> bytes:
    return tagged_hash(Tag.STATE_VALUE, b"%d" % n)


KEYS = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.tuples(st.integers(0, 3), st.integers(0, 255)).map(lambda t: _key(*t)),
    st.integers(0, 7).map(lambda n: bytes(31) + bytes([n])),  # share 253 bits and more
    st.integers(0, 15).map(lambda n: bytes([n << 4]) + bytes(31)),
)
VALUES = st.sampled_from([_value(n) for n in range(3)]) | st.none()  # re-setting happens


@st.composite
def histories(draw: st.DrawFn, max_batches: int = 8) -> History:
    """Batches of inserts, updates, deletes (of present and absent keys), re-sets of the
    same value, empty batches, and now and then a batch that empties the tree or one that
    is never committed (the next batch then reuses its node ids)."""
    state: dict[bytes, bytes] = {}
    batches: History = []
    for _ in range(draw(st.integers(1, max_batches))):
        if state and draw(st.integers(0, 7)) == 0:
            changes: Changes = dict.fromkeys(state)
        else:
            keys = st.sampled_from(sorted(state)) | KEYS if state else KEYS
            changes = draw(st.dictionaries(keys, VALUES, max_size=24))
        kept = draw(st.integers(0, 5)) > 0
        batches.append((changes, kept))
        for key, value in changes.items() if kept else ():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    return batches


# -- stores that can take a batch's rows ------------------------------------------------------


class SQLiteNodes:
    """The node's SQLite store, committing each batch's rows as a block of its own."""

    def __init__(self, path: str) -> None:
        self.store = SQLiteStore(path)
        self.height = 0

    def get_node(self, node_id: int) -> bytes:
        return self.store.get_node(node_id)

    def next_node_id(self) -> int:
        return self.store.next_node_id()

    def put_nodes(self, rows: tuple[tuple[int, bytes], ...]) -> None:
        self.height += 1
        record = BlockRecord(self.height, bytes(32), b"header", None, b"cert", 0, [], {},
                             list(rows))
        self.store.commit_block(record)


@contextmanager
def memory_store() -> Iterator[MemoryNodeStore]:
    yield MemoryNodeStore()


@contextmanager
def sqlite_store() -> Iterator[SQLiteNodes]:
    with tempfile.TemporaryDirectory() as folder:
        nodes = SQLiteNodes(os.path.join(folder, "node.sqlite"))
        try:
            yield nodes
        finally:
            nodes.store.close()


STORES = {"memory": memory_store, "sqlite": sqlite_store}


class AlteredStore:
    """A node store whose bytes for some ids are replaced, or gone (``None``)."""

    def __init__(self, inner: NodeStore, altered: Mapping[int, bytes | None]) -> None:
        self.inner = inner
        self.altered = altered

    def get_node(self, node_id: int) -> bytes:
        if node_id not in self.altered:
            return self.inner.get_node(node_id)
        raw = self.altered[node_id]
        if raw is None:
            raise KeyError(node_id)
        return raw

    def next_node_id(self) -> int:
        return self.inner.next_node_id()


# -- comparing the two -------------------------------------------------------------------------


def outcome(tree: SparseMerkleTree, root: NodeRef, changes: Mapping[bytes, Any]) -> tuple[Any, ...]:
    """What an update gives: ``("ok", root, rows)``, or the error's type and facts."""
    try:
        result = tree.update(root, changes)
    except Exception as e:  # noqa: BLE001 - any error is an outcome to compare
        facts: tuple[Any, ...] = (str(e),)
        if isinstance(e, TamperedNode):
            facts += (e.node_id, e.expected, e.got, e.reason)
        elif isinstance(e, MissingNode):
            facts += (e.node_id, type(e.__cause__))
        return (type(e), *facts)
    return ("ok", result.root, result.rows)


def both(store: NodeStore, cache_size: int) -> tuple[SparseMerkleTree, SparseMerkleTree]:
    """A compiled and a reference tree over ``store``."""
    return (SparseMerkleTree(store, cache_size, native=True),
            SparseMerkleTree(store, cache_size, native=False))


def cache_entries(tree: SparseMerkleTree) -> list[tuple[int, bytes]]:
    """The ``(id, hash)`` pairs the update's cache holds, least recently used first."""
    if tree._native is not None:
        return list(tree._native.cache_entries())
    return [(node_id, hit[0]) for node_id, hit in tree._cache.items()]


def replay(store: Any, trees: tuple[SparseMerkleTree, ...], batches: History) -> NodeRef:
    """Apply ``batches`` with every tree, checking that they agree (their caches too), and
    store the rows of each kept batch once."""
    root = EMPTY_ROOT
    for changes, kept in batches:
        first, *others = (outcome(tree, root, changes) for tree in trees)
        assert all(other == first for other in others)
        assert first[0] == "ok", first
        assert all(cache_entries(tree) == cache_entries(trees[0]) for tree in trees)
        if kept:
            store.put_nodes(first[2])
            root = first[1]
    return root


# -- the same rows -----------------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", sorted(STORES))
@settings(max_examples=120, deadline=None)
@given(histories(), st.sampled_from([0, 1, 7, 100_000]))
def test_every_history_gives_the_same_roots_rows_and_cache(
    store_kind: str, batches: History, cache_size: int
) -> None:
    with STORES[store_kind]() as store:
        native, python = both(store, cache_size)
        root = replay(store, (native, python), batches)
        python.verify_tree(root)


def test_a_large_batch_into_a_large_tree_gives_the_same_rows() -> None:
    """Thousands of random keys: the top levels split in the batch, the rest walked alone."""
    rnd = random.Random(5)
    store = MemoryNodeStore()
    trees = both(store, 100_000)
    state = [rnd.randbytes(32) for _ in range(6_000)]
    first: Changes = {key: _value(n) for n, key in enumerate(state)}
    second: Changes = {rnd.randbytes(32): _value(n) for n in range(2_000)}
    second.update({key: None for key in state[:500]})
    second.update({key: _value(7) for key in state[500:1_000]})
    second.update({key: _value(n + 1_000) for n, key in enumerate(state[1_000:1_500])})
    root = replay(store, trees, [(first, True), (second, True), ({}, True)])
    assert trees[1].verify_tree(root) == 7_500


def test_emptying_the_tree_and_refilling_it() -> None:
    store = MemoryNodeStore()
    keys = [_key(1, n) for n in range(40)] + [bytes(31) + bytes([n]) for n in range(8)]
    fill: Changes = {key: _value(n) for n, key in enumerate(keys)}
    batches = [(fill, True), (dict.fromkeys(keys), True), (fill, True)]
    root = replay(store, both(store, 100_000), batches)
    assert root.node_id and SparseMerkleTree(store).count_leaves(root) == len(keys)


# -- the same errors ---------------------------------------------------------------------------


def _flip(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :]


def _zero_left_id(raw: bytes) -> bytes:
    return raw[:65] + bytes(8) + raw[73:] if raw[0] == 2 else _flip(raw, 40)


#: Ways a disk can lose or change a node, each applied to one stored node.
EDITS: dict[str, Callable[[bytes], bytes | None]] = {
    "missing": lambda raw: None,
    "a hash byte flipped": lambda raw: _flip(raw, 20),
    "the last byte flipped": lambda raw: _flip(raw, len(raw) - 1),
    "truncated": lambda raw: raw[:-1],
    "a byte too many": lambda raw: raw + b"\x00",
    "kind changed": lambda raw: bytes([3 - raw[0]]) + raw[1:],
    "empty": lambda raw: b"",
    "a child id zeroed": _zero_left_id,
    "a child hash zeroed": lambda raw: raw[:1] + bytes(32) + raw[33:],
    "child ids swapped": lambda raw: (
        raw[:65] + raw[73:] + raw[65:73] if raw[0] == 2 else raw[:1] + raw[33:] + raw[1:33]
    ),
}


def _store_with_history(batches: History) -> tuple[MemoryNodeStore, NodeRef]:
    store = MemoryNodeStore()
    root = replay(store, (SparseMerkleTree(store, 100_000, native=False),), batches)
    return store, root


@settings(max_examples=150, deadline=None)
@given(
    histories(max_batches=4),
    st.sampled_from(sorted(EDITS)),
    st.integers(0, 1 << 16),
    st.data(),
)
def test_a_lost_or_altered_node_raises_the_same_error(
    batches: History, edit: str, which: int, data: st.DataObject
) -> None:
    """Cold caches: both read the same nodes, and fail on the same one the same way."""
    store, root = _store_with_history(batches)
    if len(store) == 0:
        return
    node_id = 1 + which % (store.next_node_id() - 1)
    altered = AlteredStore(store, {node_id: EDITS[edit](store.get_node(node_id))})
    changes = data.draw(st.dictionaries(KEYS, VALUES, max_size=12))
    native, python = both(altered, data.draw(st.sampled_from([0, 3, 100_000])))
    assert outcome(native, root, changes) == outcome(python, root, changes)


@settings(max_examples=100, deadline=None)
@given(histories(max_batches=6), st.sampled_from(sorted(EDITS)), st.integers(0, 1 << 16),
       st.sampled_from([0, 2, 16, 100_000]))
def test_warm_caches_fail_alike(
    batches: History, edit: str, which: int, cache_size: int
) -> None:
    """Both caches keep the same nodes, so a node altered under running trees is caught
    (or served from the cache) alike, whatever the cache's bound."""
    store = MemoryNodeStore()
    altered: dict[int, bytes | None] = {}
    trees = both(AlteredStore(store, altered), cache_size)
    *history, (last, _) = batches
    root = replay(store, trees, history)
    if len(store):
        node_id = 1 + which % (store.next_node_id() - 1)
        altered[node_id] = EDITS[edit](store.get_node(node_id))
    assert outcome(trees[0], root, last) == outcome(trees[1], root, last)
    assert cache_entries(trees[0]) == cache_entries(trees[1])


def test_a_missing_node_raises_missing_node_from_a_key_error() -> None:
    store, root = _store_with_history([({_key(1, n): _value(n) for n in range(20)}, True)])
    leaf_id = next(i for i in range(1, store.next_node_id()) if store.get_node(i)[0] == 1)
    native, python = both(AlteredStore(store, {leaf_id: None}), 100_000)
    changes: Changes = {store.get_node(leaf_id)[1:33]: None}
    for tree in (native, python):
        with pytest.raises(MissingNode) as caught:
            tree.update(root, changes)
        assert caught.value.node_id == leaf_id
        assert isinstance(caught.value.__cause__, KeyError)


def test_a_tampered_node_raises_tampered_node_with_its_id() -> None:
    store, root = _store_with_history([({_key(1, n): _value(n) for n in range(20)}, True)])
    raw = store.get_node(root.node_id)
    bad = AlteredStore(store, {root.node_id: _zero_left_id(raw)})
    for tree in both(bad, 100_000):
        with pytest.raises(TamperedNode) as caught:
            tree.update(root, {_key(1, 3): None})
        assert caught.value.node_id == root.node_id
        assert caught.value.reason == "child id and hash disagree on emptiness"
        assert caught.value.expected == root.hash


class FailingStore(MemoryNodeStore):
    """A store whose reads fail for a reason of its own (a disk error, say)."""

    def get_node(self, node_id: int) -> bytes:
        raise OSError(f"cannot read node {node_id}")


def test_other_store_errors_pass_through_unchanged() -> None:
    _, root = _store_with_history([({_key(1, n): _value(n) for n in range(5)}, True)])
    failing = FailingStore()
    for tree in both(failing, 100_000):
        with pytest.raises(OSError, match=f"cannot read node {root.node_id}"):
            tree.update(root, {_key(2, 0): _value(0)})


class OtherBytes(bytes):
    """Bytes, but not exactly: the tree takes exactly ``bytes``."""


#: Arguments the update refuses before it reads anything, and the error both give.
BAD_ARGUMENTS: dict[str, tuple[tuple[Any, Any], Any]] = {
    "a short key": (EMPTY_ROOT, {b"short": _value(0)}),
    "a short value": (EMPTY_ROOT, {bytes(32): b"short"}),
    "a key of a bytes subclass": (EMPTY_ROOT, {OtherBytes(32): _value(0)}),
    "a value as bytearray": (EMPTY_ROOT, {bytes(32): bytearray(32)}),
    "a value as text": (EMPTY_ROOT, {bytes(32): "00" * 32}),
    "a key of another type": (EMPTY_ROOT, {7: _value(0)}),
    "a root id without a hash": ((5, ZERO), {}),
    "a negative root id": ((-1, b"\x01" * 32), {}),
    "a good key after a bad one": (EMPTY_ROOT, {b"x": _value(0), bytes(32): _value(1)}),
}


@pytest.mark.parametrize("name", sorted(BAD_ARGUMENTS))
def test_bad_arguments_raise_the_same_value_error(name: str) -> None:
    root, changes = BAD_ARGUMENTS[name]
    native, python = both(MemoryNodeStore(), 100)
    assert outcome(native, root, changes) == outcome(python, root, changes)
    assert outcome(native, root, changes)[0] is ValueError


def _chain(depth: int, bottom: bytes, bottom_id: int, first_id: int) -> list[tuple[int, bytes]]:
    """``depth`` internal nodes, each with only a left child, above node ``bottom``."""
    rows, child, child_id = [], bottom, bottom_id
    for node_id in range(first_id, first_id + depth):
        rows.append((node_id, struct.pack(">B32s32sQQ", 2, child, ZERO, child_id, 0)))
        child, child_id = node_hash(child, ZERO), node_id
    return rows


def test_a_tree_deeper_than_its_keys_fails_alike() -> None:
    """Hashes that check out around a shape the tree never makes: an internal node at
    depth 256 (two leaves below it). Both fail where the reference runs out of key bits."""
    a, b = bytes(32), bytes(31) + b"\x01"
    store = MemoryNodeStore()
    pair = node_hash(leaf_hash(a, _value(0)), leaf_hash(b, _value(1)))
    store.put_nodes([(1, b"\x01" + a + _value(0)), (2, b"\x01" + b + _value(1)),
                     (3, struct.pack(">B32s32sQQ", 2, leaf_hash(a, _value(0)),
                                     leaf_hash(b, _value(1)), 1, 2))])
    store.put_nodes(_chain(256, pair, 3, 4))
    top = store.next_node_id() - 1
    root = NodeRef(top, node_hash(struct.unpack(">B32s32sQQ", store.get_node(top))[1], ZERO))
    beside = bytes(31) + b"\x02"  # leaves the chain at depth 254, into an empty slot
    cases: list[tuple[Changes, object]] = [
        ({a: None}, IndexError),
        ({a: _value(7)}, IndexError),
        ({a: None, b: _value(5)}, IndexError),
        ({beside: _value(2)}, "ok"),
    ]
    for changes, expected in cases:
        native, python = both(store, 100_000)
        assert outcome(native, root, changes) == outcome(python, root, changes)
        assert outcome(native, root, changes)[0] == expected


def test_a_leaf_off_its_path_is_updated_alike() -> None:
    """A hash-consistent tree with a leaf where its key does not lead: whatever the
    reference makes of it, the compiled update makes the same."""
    key, other = b"\x01" * 32, b"\x80" + bytes(31)  # key's first bit is 0; it sits right
    store = MemoryNodeStore()
    leaf, sibling = leaf_hash(key, _value(1)), leaf_hash(other, _value(2))
    store.put_nodes([(1, b"\x01" + key + _value(1)), (2, b"\x01" + other + _value(2)),
                     (3, struct.pack(">B32s32sQQ", 2, sibling, leaf, 2, 1))])
    root = NodeRef(3, node_hash(sibling, leaf))
    for changes in ({key: None}, {key: _value(3), bytes(32): _value(4)},
                    {b"\xff" * 32: _value(5), b"\xfe" * 32: None}):
        native, python = both(store, 100_000)
        assert outcome(native, root, changes) == outcome(python, root, changes)


# -- the cache and the switch ------------------------------------------------------------------


@pytest.mark.parametrize("cache_size", [0, 1, 50, 100_000])
def test_the_cache_stays_bounded(cache_size: int) -> None:
    store = MemoryNodeStore()
    tree = SparseMerkleTree(store, cache_size, native=True)
    rnd = random.Random(9)
    root = EMPTY_ROOT
    for block in range(8):
        result = tree.update(root, {rnd.randbytes(32): _value(block * 100 + n) for n in range(100)})
        store.put_nodes(result.rows)
        root = result.root
        assert tree.cache_len <= cache_size
    if cache_size <= 50:
        assert tree.cache_len == cache_size  # the new internal nodes alone fill it
    else:
        assert 0 < tree.cache_len < cache_size


def test_native_is_the_default_unless_switched_off() -> None:
    code = "import medledger.merkle.sparse as s; print(s.NATIVE)"
    env = {k: v for k, v in os.environ.items() if k != "MEDLEDGER_NATIVE"}
    for setting, expected in ((None, "True"), ("1", "True"), ("0", "False")):
        run_env = env if setting is None else {**env, "MEDLEDGER_NATIVE": setting}
        done = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True,
                              text=True, check=True)
        assert done.stdout.strip() == expected, setting
