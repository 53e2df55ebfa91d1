"""The sparse Merkle state tree: shape, hashes, batches, proofs, storage and tampering."""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import medledger.merkle as merkle
from medledger.codec import Tag, tagged_hash
from medledger.merkle import sparse
from medledger.merkle.sparse import (
    EMPTY_ROOT,
    ZERO,
    MalformedTree,
    MemoryNodeStore,
    MissingNode,
    NodeRef,
    ProofFormatError,
    ProofLeaf,
    SparseMerkleTree,
    SparseProof,
    TamperedNode,
    leaf_hash,
    node_hash,
    verify_proof,
)

# -- an independent model of the tree's hash ---------------------------------------------


def _bit(key: bytes, depth: int) -> int:
    return (key[depth // 8] >> (7 - depth % 8)) & 1


def model_root(items: Mapping[bytes, bytes], depth: int = 0) -> bytes:
    """The root hash by the definition: one leaf stands alone, two or more split by bit."""
    if not items:
        return ZERO
    if len(items) == 1:
        [(key, value)] = items.items()
        return tagged_hash(Tag.SMT_LEAF, key + value)
    left = {k: v for k, v in items.items() if not _bit(k, depth)}
    right = {k: v for k, v in items.items() if _bit(k, depth)}
    return tagged_hash(Tag.SMT_NODE, model_root(left, depth + 1) + model_root(right, depth + 1))


# -- helpers -----------------------------------------------------------------------------


class TamperingStore:
    """A NodeStore whose bytes for some ids are replaced (a disk an attacker edited)."""

    def __init__(self, inner: MemoryNodeStore, replaced: dict[int, bytes]) -> None:
        self.inner = inner
        self.replaced = replaced

    def get_node(self, node_id: int) -> bytes:
        if node_id in self.replaced:
            return self.replaced[node_id]
        return self.inner.get_node(node_id)

    def next_node_id(self) -> int:
        return self.inner.next_node_id()


class Ledger:
    """A tree with its store, committing each update like the state layer would.

    The tree reads through a :class:`TamperingStore`: put bytes in ``replaced`` to play
    an attacker who edits the disk under a running node.
    """

    def __init__(self, cache_size: int = 100_000) -> None:
        self.store = MemoryNodeStore()
        self.replaced: dict[int, bytes] = {}
        self.tree = SparseMerkleTree(TamperingStore(self.store, self.replaced), cache_size)
        self.root = EMPTY_ROOT

    def apply(self, changes: Mapping[bytes, bytes | None]) -> NodeRef:
        result = self.tree.update(self.root, changes)
        self.store.put_nodes(result.rows)
        self.root = result.root
        return self.root


def _key(first: int, last: int) -> bytes:
    """Keys that share 240 bits: deep chains of internal nodes."""
    return bytes([first]) + bytes(30) + bytes([last])


def _value(n: int) -> bytes:
    return tagged_hash(Tag.STATE_VALUE, b"%d" % n)


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


KEYS = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.tuples(st.integers(0, 3), st.integers(0, 255)).map(lambda t: _key(*t)),
    st.integers(0, 15).map(lambda n: bytes([n << 4]) + bytes(31)),
)
VALUES = st.binary(min_size=32, max_size=32)
STATES = st.dictionaries(KEYS, VALUES, max_size=40)


# -- hashes and bytes ----------------------------------------------------------------


def test_hashes_are_the_tagged_ones() -> None:
    k, v = b"k" * 32, b"v" * 32
    assert leaf_hash(k, v) == tagged_hash(Tag.SMT_LEAF, k + v)
    assert node_hash(k, v) == tagged_hash(Tag.SMT_NODE, k + v)


def test_empty_tree() -> None:
    ledger = Ledger()
    assert ledger.tree.get(EMPTY_ROOT, b"\x00" * 32) is None
    assert ledger.tree.verify_tree(EMPTY_ROOT) == 0
    proof = ledger.tree.prove(EMPTY_ROOT, b"\x01" * 32)
    assert proof == SparseProof(depth=0, bitmap=b"", siblings=(), leaf=None)
    assert verify_proof(ZERO, b"\x01" * 32, None, proof)
    assert not verify_proof(ZERO, b"\x01" * 32, b"\x02" * 32, proof)


def test_a_lone_leaf_is_the_root_and_its_bytes_are_kind_key_value() -> None:
    ledger = Ledger()
    first_id = ledger.store.next_node_id()
    key, value = _key(1, 1), _value(1)
    result = ledger.tree.update(EMPTY_ROOT, {key: value})
    assert result.rows == ((first_id, b"\x01" + key + value),)
    assert result.root == NodeRef(first_id, leaf_hash(key, value))


def test_two_leaves_stand_where_their_keys_first_differ() -> None:
    a = bytes([0b1010_0000]) + bytes(31)
    b = bytes([0b1011_0000]) + bytes(31)  # differs from a at bit 3
    va, vb = _value(1), _value(2)
    ledger = Ledger()
    result = ledger.tree.update(EMPTY_ROOT, {a: va, b: vb})
    depth3 = node_hash(leaf_hash(a, va), leaf_hash(b, vb))
    depth2 = node_hash(ZERO, depth3)  # bit 2 of both keys is 1
    depth1 = node_hash(depth2, ZERO)  # bit 1 is 0
    depth0 = node_hash(ZERO, depth1)  # bit 0 is 1
    assert result.root.hash == depth0
    ids = [row[0] for row in result.rows]
    assert ids == list(range(1, 7))  # two leaves, four internal nodes
    assert result.root.node_id == ids[-1]  # children before parents
    rows = dict(result.rows)
    assert rows[ids[-1]] == b"\x02" + ZERO + depth1 + struct.pack(">QQ", 0, ids[-2])
    assert rows[ids[-2]] == b"\x02" + depth2 + ZERO + struct.pack(">QQ", ids[-3], 0)
    assert rows[ids[0]] == b"\x01" + a + va and rows[ids[1]] == b"\x01" + b + vb


@settings(max_examples=60, deadline=None)
@given(STATES)
def test_root_matches_the_model(state: dict[bytes, bytes]) -> None:
    ledger = Ledger()
    root = ledger.apply(state)
    assert root.hash == model_root(state)
    assert ledger.tree.verify_tree(root) == len(state)
    assert list(ledger.tree.iter_leaves(root)) == sorted(state.items())
    assert ledger.tree.count_leaves(root) == len(state)
    for key, value in state.items():
        assert ledger.tree.get(root, key) == value


@settings(max_examples=60, deadline=None)
@given(STATES, st.randoms(use_true_random=False), st.integers(1, 6))
def test_root_is_independent_of_order_and_batching(
    state: dict[bytes, bytes], rnd: random.Random, batches: int
) -> None:
    items = list(state.items())
    rnd.shuffle(items)
    ledger = Ledger()
    for n in range(batches):
        ledger.apply(dict(items[n::batches]))
    assert ledger.root.hash == model_root(state)
    assert ledger.tree.verify_tree(ledger.root) == len(state)


@settings(max_examples=60, deadline=None)
@given(STATES, STATES, st.booleans())
def test_insert_then_delete_returns_to_the_previous_root(
    base: dict[bytes, bytes], extra: dict[bytes, bytes], one_batch: bool
) -> None:
    extra = {k: v for k, v in extra.items() if k not in base}
    ledger = Ledger()
    before = ledger.apply(base)
    ledger.apply(extra)
    if one_batch:
        ledger.apply(dict.fromkeys(extra))
    else:
        for key in extra:
            ledger.apply({key: None})
    assert ledger.root.hash == before.hash
    assert ledger.tree.verify_tree(ledger.root) == len(base)


@settings(max_examples=60, deadline=None)
@given(STATES, st.data())
def test_mixed_batches_match_the_model(state: dict[bytes, bytes], data: st.DataObject) -> None:
    ledger = Ledger()
    ledger.apply(state)
    keys = st.sampled_from(sorted(state)) | KEYS if state else KEYS
    changes = data.draw(st.dictionaries(keys, VALUES | st.none()))
    ledger.apply(changes)
    for key, value in changes.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    assert ledger.root.hash == model_root(state)
    assert ledger.tree.verify_tree(ledger.root) == len(state)


def test_no_op_changes_write_nothing() -> None:
    ledger = Ledger()
    state = {_key(1, n): _value(n) for n in range(20)}
    root = ledger.apply(state)
    nothing: dict[bytes, bytes | None] = {}
    absent: dict[bytes, bytes | None] = {_key(2, 0): None, _key(1, 99): None}
    same: dict[bytes, bytes | None] = {_key(1, 3): _value(3), _key(1, 19): _value(19)}
    for changes in (nothing, absent, same):
        result = ledger.tree.update(root, changes)
        assert result.root == root
        assert result.rows == ()


@pytest.mark.parametrize(
    ("root", "changes"),
    [
        (EMPTY_ROOT, {b"short": b"\x00" * 32}),
        (EMPTY_ROOT, {b"\x00" * 32: b"short"}),
        ((0, b"\x01" * 32), {}),
        ((5, ZERO), {}),
        ((-1, b"\x01" * 32), {}),
    ],
)
def test_bad_arguments_raise_value_error(root: tuple[int, bytes], changes: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError):
        SparseMerkleTree(MemoryNodeStore()).update(root, changes)


# -- proofs ----------------------------------------------------------------------------


def _both_kinds_of_absence() -> tuple[Ledger, bytes, bytes]:
    """A tree, a key whose path ends at an empty slot, and one whose path ends at a leaf."""
    ledger = Ledger()
    ledger.apply({_key(0, 0): _value(0), _key(0, 1): _value(1), _key(0x80, 0): _value(2)})
    empty_slot = _key(0, 2)  # shares 254 bits with the first two, whose parent has it empty
    other_leaf = _key(0x81, 0)  # runs into the lone leaf _key(0x80, 0) at depth 1
    return ledger, empty_slot, other_leaf


def test_non_membership_of_both_kinds() -> None:
    ledger, empty_slot, other_leaf = _both_kinds_of_absence()
    root = ledger.root
    at_empty = ledger.tree.prove(root, empty_slot)
    assert at_empty.leaf is None and at_empty.depth == 255
    assert verify_proof(root.hash, empty_slot, None, at_empty)
    at_leaf = ledger.tree.prove(root, other_leaf)
    assert at_leaf.leaf == ProofLeaf(_key(0x80, 0), _value(2)) and at_leaf.depth == 1
    assert verify_proof(root.hash, other_leaf, None, at_leaf)
    # the same proofs say nothing about values, nor about other keys
    assert not verify_proof(root.hash, empty_slot, _value(0), at_empty)
    assert not verify_proof(root.hash, _key(0x80, 0), None, at_leaf)
    assert not verify_proof(root.hash, _key(0, 0), None, at_empty)
    # only non-empty siblings are listed: 255 levels, 2 siblings
    assert len(at_empty.siblings) == 2 and len(at_empty.bitmap) == 32


def test_membership_proof_lists_only_non_empty_siblings() -> None:
    ledger, _, _ = _both_kinds_of_absence()
    proof = ledger.tree.prove(ledger.root, _key(0, 1))
    assert proof.depth == 256 and proof.leaf == ProofLeaf(_key(0, 1), _value(1))
    assert proof.siblings == (leaf_hash(_key(0, 0), _value(0)), leaf_hash(_key(0x80, 0), _value(2)))
    assert verify_proof(ledger.root.hash, _key(0, 1), _value(1), proof)


@settings(max_examples=50, deadline=None)
@given(STATES.filter(bool), st.lists(KEYS, max_size=8))
def test_every_present_and_absent_key_proves(
    state: dict[bytes, bytes], probes: list[bytes]
) -> None:
    ledger = Ledger()
    root = ledger.apply(state)
    for key, value in state.items():
        proof = ledger.tree.prove(root, key)
        assert verify_proof(root.hash, key, value, proof)
        assert not verify_proof(root.hash, key, None, proof)
        assert not verify_proof(root.hash, key, _flip(value, 0), proof)
        assert SparseProof.from_dict(json.loads(json.dumps(proof.to_dict()))) == proof
    for key in probes:
        if key in state:
            continue
        proof = ledger.tree.prove(root, key)
        assert verify_proof(root.hash, key, None, proof)
        assert not verify_proof(root.hash, key, _value(0), proof)


def _alter(proof: SparseProof, how: str, n: int) -> SparseProof | None:
    """``proof`` changed in one way, or None when that way does not apply."""
    d = proof.to_dict()
    if how == "sibling" and proof.siblings:
        siblings = list(proof.siblings)
        siblings[n % len(siblings)] = _flip(siblings[n % len(siblings)], n)
        return SparseProof(proof.depth, proof.bitmap, tuple(siblings), proof.leaf)
    if how == "depth":
        return SparseProof(
            proof.depth + (1 if n % 2 else -1), proof.bitmap, proof.siblings, proof.leaf
        )
    if how == "bitmap" and proof.depth:
        return SparseProof(
            proof.depth, _flip(proof.bitmap, n % proof.depth ^ 7), proof.siblings, proof.leaf
        )
    if how == "leaf key" and proof.leaf:
        return SparseProof(
            proof.depth,
            proof.bitmap,
            proof.siblings,
            ProofLeaf(_flip(proof.leaf.key, n), proof.leaf.value_hash),
        )
    if how == "leaf value" and proof.leaf:
        leaf = ProofLeaf(proof.leaf.key, _flip(proof.leaf.value_hash, n))
        return SparseProof(proof.depth, proof.bitmap, proof.siblings, leaf)
    if how == "drop leaf" and proof.leaf:
        return SparseProof(proof.depth, proof.bitmap, proof.siblings, None)
    if how == "extra sibling":
        return SparseProof(proof.depth, proof.bitmap, (*proof.siblings, _value(n)), proof.leaf)
    if how == "dict":
        d["depth"] = str(d["depth"])
        return d  # type: ignore[return-value]
    return None


@settings(max_examples=200, deadline=None)
@given(
    STATES.filter(bool),
    KEYS,
    st.sampled_from(
        [
            "sibling",
            "depth",
            "bitmap",
            "leaf key",
            "leaf value",
            "drop leaf",
            "extra sibling",
            "dict",
            "root",
            "claim key",
            "claim value",
        ]
    ),
    st.integers(0, 1 << 16),
    st.booleans(),
)
def test_any_altered_proof_fails(
    state: dict[bytes, bytes], probe: bytes, how: str, n: int, present: bool
) -> None:
    ledger = Ledger()
    root = ledger.apply(state)
    key = sorted(state)[n % len(state)] if present else probe
    value = state.get(key)
    proof = ledger.tree.prove(root, key)
    assert verify_proof(root.hash, key, value, proof)
    if how == "root":
        assert not verify_proof(_flip(root.hash, n), key, value, proof)
    elif how == "claim key":
        other = _flip(key, n)
        assert not verify_proof(root.hash, other, value, proof) or (
            value is None and state.get(other) is None and _same_path(proof, key, other)
        )
    elif how == "claim value":
        claimed = _value(n) if value is None else (None if n % 3 == 0 else _flip(value, n))
        assert not verify_proof(root.hash, key, claimed, proof)
    else:
        altered = _alter(proof, how, n)
        if altered is not None:
            assert not verify_proof(root.hash, key, value, altered)


def _same_path(proof: SparseProof, key: bytes, other: bytes) -> bool:
    """Absence proofs serve every key that shares the path to where they end."""
    return all(_bit(key, d) == _bit(other, d) for d in range(proof.depth))


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("missing field", lambda d: d.pop("leaf")),
        ("extra field", lambda d: d.update(kind="member")),
        ("upper-case hex", lambda d: d["leaf"].update(value_hash=d["leaf"]["value_hash"].upper())),
        ("odd hex", lambda d: d.update(bitmap=d["bitmap"] + "0")),
        ("bitmap too long", lambda d: d.update(bitmap=d["bitmap"] + "00")),
        ("depth as text", lambda d: d.update(depth="3")),
        ("depth too deep", lambda d: d.update(depth=257)),
        ("siblings not a list", lambda d: d.update(siblings="00")),
        ("short sibling", lambda d: d["siblings"].append("00")),
        ("zero sibling", lambda d: d["siblings"].append("00" * 32)),
        ("leaf without value", lambda d: d.update(leaf={"key": "00" * 32})),
        ("leaf short key", lambda d: d.update(leaf={"key": "00", "value_hash": "00" * 32})),
    ],
)
def test_from_dict_refuses_malformed_proofs(name: str, change: object) -> None:
    ledger = Ledger()
    ledger.apply({_key(0, n): _value(n) for n in range(5)})
    d = ledger.tree.prove(ledger.root, _key(0, 3)).to_dict()
    SparseProof.from_dict(d)
    change(d)  # type: ignore[operator]
    with pytest.raises(ProofFormatError):
        SparseProof.from_dict(d)


def test_proof_dict_is_json_and_bitmap_is_short() -> None:
    ledger = Ledger()
    keys = [bytes([n]) + bytes(31) for n in range(0, 256, 16)]
    ledger.apply({k: _value(i) for i, k in enumerate(keys)})
    d = ledger.tree.prove(ledger.root, keys[5]).to_dict()
    assert d == {
        "depth": 4,
        "bitmap": "f0",
        "siblings": d["siblings"],
        "leaf": {"key": keys[5].hex(), "value_hash": _value(5).hex()},
    }
    assert len(d["siblings"]) == 4
    assert verify_proof(ledger.root.hash, keys[5], _value(5), SparseProof.from_dict(d))


@pytest.mark.parametrize(
    "args",
    [
        (b"short", b"\x00" * 32, None),
        (ZERO, b"short", None),
        (ZERO, b"\x00" * 32, b"short"),
        (ZERO, b"\x00" * 32, None, "not a proof"),
    ],
)
def test_verify_proof_never_raises(args: tuple) -> None:  # type: ignore[type-arg]
    proof = args[3] if len(args) == 4 else SparseProof(0, b"", (), None)
    assert verify_proof(args[0], args[1], args[2], proof) is False


# -- versions, storage, cache ------------------------------------------------------------


def test_old_roots_stay_readable_and_provable() -> None:
    ledger = Ledger()
    rnd = random.Random(7)
    history: list[tuple[NodeRef, dict[bytes, bytes]]] = []
    state: dict[bytes, bytes] = {}
    for block in range(12):
        changes: dict[bytes, bytes | None] = {
            rnd.randbytes(32): _value(block * 100 + i) for i in range(30)
        }
        for key in rnd.sample(sorted(state), min(5, len(state))):
            changes[key] = None
        ledger.apply(changes)
        for key, value in changes.items():
            if value is None:
                del state[key]
            else:
                state[key] = value
        history.append((ledger.root, dict(state)))
    fresh = SparseMerkleTree(ledger.store)  # a cold cache reads everything from the store
    for root, snapshot in history:
        assert fresh.verify_tree(root) == len(snapshot)
        assert dict(fresh.iter_leaves(root)) == snapshot
        for key, value in list(snapshot.items())[:5]:
            assert fresh.get(root, key) == value
            assert verify_proof(root.hash, key, value, fresh.prove(root, key))


def _tampered_ledger() -> tuple[Ledger, int, bytes]:
    ledger = Ledger()
    ledger.apply({random.Random(n).randbytes(32): _value(n) for n in range(64)})
    leaf_id = next(
        i for i in range(1, ledger.store.next_node_id()) if ledger.store.get_node(i)[0] == 1
    )
    return ledger, leaf_id, ledger.store.get_node(leaf_id)


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("value byte flipped", lambda raw: raw[:40] + bytes([raw[40] ^ 1]) + raw[41:]),
        ("key byte flipped", lambda raw: raw[:1] + bytes([raw[1] ^ 0x80]) + raw[2:]),
        ("truncated", lambda raw: raw[:-1]),
        ("kind changed", lambda raw: b"\x02" + raw[1:]),
    ],
)
def test_a_tampered_leaf_is_caught_on_read_and_by_verify_tree(name: str, edit: object) -> None:
    ledger, leaf_id, raw = _tampered_ledger()
    warm = ledger.tree  # its cache holds verified copies; verify_tree must still read the store
    ledger.replaced[leaf_id] = edit(raw)  # type: ignore[operator]
    store = TamperingStore(ledger.store, ledger.replaced)
    with pytest.raises(TamperedNode) as caught:
        warm.verify_tree(ledger.root)
    assert caught.value.node_id == leaf_id
    assert caught.value.expected == leaf_hash(raw[1:33], raw[33:])
    cold = SparseMerkleTree(store)
    with pytest.raises(TamperedNode):
        for key in dict(SparseMerkleTree(ledger.store).iter_leaves(ledger.root)):
            cold.get(ledger.root, key)
    with pytest.raises(TamperedNode):
        SparseMerkleTree(store).update(ledger.root, {raw[1:33]: None})


def test_a_swapped_child_id_is_caught() -> None:
    ledger, _, _ = _tampered_ledger()
    root_id = ledger.root.node_id
    raw = ledger.store.get_node(root_id)
    kind, left, right, left_id, right_id = struct.unpack(">B32s32sQQ", raw)
    swapped = struct.pack(">B32s32sQQ", kind, left, right, right_id, left_id)
    store = TamperingStore(ledger.store, {root_id: swapped})  # the root's hash is unchanged
    with pytest.raises(TamperedNode) as caught:
        SparseMerkleTree(store).verify_tree(ledger.root)
    assert caught.value.node_id in (left_id, right_id)
    assert caught.value.got is not None and caught.value.got != caught.value.expected


def test_a_missing_node_is_reported() -> None:
    ledger, leaf_id, _ = _tampered_ledger()

    class Forgetful(TamperingStore):
        def get_node(self, node_id: int) -> bytes:
            if node_id == leaf_id:
                raise KeyError(node_id)
            return self.inner.get_node(node_id)

    with pytest.raises(MissingNode) as caught:
        SparseMerkleTree(Forgetful(ledger.store, {})).verify_tree(ledger.root)
    assert caught.value.node_id == leaf_id


def test_verify_tree_refuses_a_lone_leaf_beside_an_empty_subtree() -> None:
    store = MemoryNodeStore()
    key, value = bytes(32), _value(1)
    leaf = leaf_hash(key, value)
    store.put_nodes(
        [(1, b"\x01" + key + value), (2, struct.pack(">B32s32sQQ", 2, leaf, ZERO, 1, 0))]
    )
    root = NodeRef(2, node_hash(leaf, ZERO))
    with pytest.raises(MalformedTree):
        SparseMerkleTree(store).verify_tree(root)
    off_path = NodeRef(3, node_hash(ZERO, node_hash(leaf, leaf_hash(b"\x01" * 32, value))))
    store.put_nodes(
        [
            (4, b"\x01" + b"\x01" * 32 + value),
            (5, struct.pack(">B32s32sQQ", 2, leaf, leaf_hash(b"\x01" * 32, value), 1, 4)),
            (
                3,
                struct.pack(
                    ">B32s32sQQ", 2, ZERO, node_hash(leaf, leaf_hash(b"\x01" * 32, value)), 0, 5
                ),
            ),
        ]
    )
    with pytest.raises(MalformedTree):
        SparseMerkleTree(store).verify_tree(off_path)


def test_cache_stays_bounded() -> None:
    ledger = Ledger(cache_size=50)
    rnd = random.Random(3)
    for block in range(10):
        ledger.apply({rnd.randbytes(32): _value(block * 1000 + i) for i in range(100)})
        assert ledger.tree.cache_len <= 50
    for key, _ in ledger.tree.iter_leaves(ledger.root):
        ledger.tree.get(ledger.root, key)
    assert ledger.tree.cache_len == 50
    assert ledger.tree.verify_tree(ledger.root) == 1000


def test_uncommitted_rows_do_not_poison_the_cache() -> None:
    """A block that is never committed leaves cached nodes under ids the next one reuses."""
    ledger = Ledger()
    ledger.apply({_key(1, n): _value(n) for n in range(50)})
    abandoned = ledger.tree.update(ledger.root, {_key(2, n): _value(n) for n in range(50)})
    other = SparseMerkleTree(ledger.store)  # e.g. the instance that applies synced blocks
    kept = other.update(ledger.root, {_key(3, n): _value(n + 1) for n in range(50)})
    assert abandoned.rows[0][0] == kept.rows[0][0]  # the same ids, other bytes
    ledger.store.put_nodes(kept.rows)
    assert ledger.tree.get(kept.root, _key(3, 7)) == _value(8)
    assert dict(ledger.tree.iter_leaves(kept.root))[_key(3, 49)] == _value(50)
    assert ledger.tree.verify_tree(kept.root) == 100


def test_a_batch_touches_each_node_once() -> None:
    rnd = random.Random(11)
    ledger = Ledger()
    ledger.apply({rnd.randbytes(32): _value(n) for n in range(20_000)})
    base = ledger.root
    batch = {rnd.randbytes(32): _value(n) for n in range(2_000)}
    result = ledger.tree.update(base, batch)
    ledger.store.put_nodes(result.rows)
    assert ledger.tree.verify_tree(result.root) == 22_000
    one_at_a_time = 0
    root = base
    for key, value in list(batch.items())[:200]:
        step = ledger.tree.update(root, {key: value})
        ledger.store.put_nodes(step.rows)
        root = step.root
        one_at_a_time += len(step.rows)
    assert 2_000 < len(result.rows) < 2_000 * 20
    # ~16 levels in 20k random keys; the top ~11 are shared by a batch of 2k
    assert len(result.rows) < 2_000 * 8
    assert one_at_a_time > 200 * 14  # each lone insert rewrites its whole path


def test_public_names() -> None:
    assert set(sparse.__all__) >= {"SparseMerkleTree", "MemoryNodeStore", "verify_proof"}
    for name in sparse.__all__:
        assert hasattr(sparse, name)
    for name in merkle.__all__:
        assert hasattr(merkle, name)


def test_a_proof_through_a_shape_the_tree_never_has_is_refused() -> None:
    """A leaf beside an empty sibling would have moved up: its proof is refused even when
    the hashes chain up to the root (here, of a hand-made malformed tree)."""
    key, value = bytes(32), _value(1)
    root_hash = node_hash(leaf_hash(key, value), ZERO)
    proof = SparseProof(depth=1, bitmap=b"\x00", siblings=(), leaf=ProofLeaf(key, value))
    assert not verify_proof(root_hash, key, value, proof)
    absent = SparseProof(depth=1, bitmap=b"\x00", siblings=(), leaf=None)
    assert not verify_proof(node_hash(ZERO, ZERO), key, None, absent)


def test_rewriting_a_leaf_with_its_own_value_reuses_it() -> None:
    ledger = Ledger()
    lone = bytes([0x80]) + bytes(31)
    ledger.apply({lone: _value(1), _key(0, 1): _value(2), _key(0, 2): _value(3)})
    result = ledger.tree.update(
        ledger.root, {lone: _value(1), bytes([0xC0]) + bytes(31): _value(4)}
    )
    leaves = [raw for _, raw in result.rows if raw[0] == 1]
    assert leaves == [b"\x01" + bytes([0xC0]) + bytes(31) + _value(4)]
    assert len(result.rows) == 3  # the new leaf, their parent at depth 1, the root
