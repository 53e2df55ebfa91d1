"""A sparse Merkle tree over 256-bit keys, with leaves placed where they first stand alone.

The tree is the binary trie of the keys' bits (most significant bit of byte 0 first) with
the Diem/Aptos compression: a subtree that holds one leaf *is* that leaf, wherever it
stands; an empty subtree is the 32 zero bytes :data:`ZERO`; every other subtree is an
internal node. An internal node never has one leaf child and one empty child (the leaf
moves up), so a key set has exactly one root, whatever the order of inserts and deletes.

- leaf hash ``tagged_hash(SMT_LEAF, key || value_hash)``;
- internal node hash ``tagged_hash(SMT_NODE, left || right)``, an empty child as ``ZERO``.

Storage. Nodes have integer ids allocated by the tree and live in a :class:`NodeStore` as
bytes: a kind byte, then for a leaf ``key(32) || value_hash(32)`` (65 bytes), for an internal
node ``left_hash(32) || right_hash(32) || left_id(8) || right_id(8)``, ids big-endian, 0 for
an empty child (81 bytes). A version of the tree is a :class:`NodeRef` ``(node_id, hash)``
of its root, :data:`EMPTY_ROOT` for the empty tree. The tree never writes: :meth:`update`
returns the new rows for the caller to store in one transaction, and old nodes stay
untouched, so every old root remains readable. Each node read is checked against the hash
its parent (or the caller's root) commits to.

Proofs (:class:`SparseProof`, :func:`verify_proof`) and the hash functions live in
:mod:`medledger.merkle.sparse_proof` and are re-exported here.

Compiled update. When the extension ``medledger_native`` (built from ``native/``) imports,
:meth:`SparseMerkleTree.update` runs there: the same reads, checks, rows and ids as
:class:`_Batch`, the reference kept here (ADR 0008). ``MEDLEDGER_NATIVE=0`` in the
environment keeps the Python code; :data:`NATIVE` says which one is in use.

Errors::

    SparseMerkleError            anything this module raises about a tree or a proof
    +-- TamperedNode             stored bytes do not hash to what the parent commits to
    +-- MissingNode              the store has no node under an id the tree refers to
    +-- MalformedTree            hashes check out but the shape breaks an invariant
    +-- ProofFormatError         a proof (or its dict) is not well formed; also a ValueError
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple, Protocol

from medledger.merkle.sparse_batch import (
    _NODE_PACK,
    LEAF_KIND,
    LEAF_SIZE,
    NODE_KIND,
    NODE_SIZE,
    _Batch,
    _Node,
)
from medledger.merkle.sparse_proof import (
    _LEAF_PREFIX,
    _MASKS,
    _NODE_PREFIX,
    KEY_BITS,
    ZERO,
    ProofFormatError,
    ProofLeaf,
    SparseMerkleError,
    SparseProof,
    _bitmap,
    _is_hash,
    _sha256,
    leaf_hash,
    node_hash,
    verify_proof,
)

if TYPE_CHECKING:
    from medledger_native import NativeTree

__all__ = [
    "EMPTY_ROOT",
    "NATIVE",
    "ZERO",
    "MalformedTree",
    "MemoryNodeStore",
    "MissingNode",
    "NodeRef",
    "NodeStore",
    "ProofFormatError",
    "ProofLeaf",
    "SparseMerkleError",
    "SparseMerkleTree",
    "SparseProof",
    "TamperedNode",
    "UpdateResult",
    "leaf_hash",
    "node_hash",
    "verify_proof",
]



def _import_native() -> ModuleType | None:
    try:
        import medledger_native
    except ImportError:
        return None
    return medledger_native


_native = _import_native()
NATIVE: bool = _native is not None and os.environ.get("MEDLEDGER_NATIVE") != "0"
"""Updates run in the compiled extension by default (else in Python): a node logs it."""


class TamperedNode(SparseMerkleError):
    """Node ``node_id`` is not what its parent commits to.

    ``got`` is the hash of the stored bytes, ``None`` when they do not even decode.
    """

    def __init__(
        self, node_id: int, expected: bytes, got: bytes | None, reason: str = "hash mismatch"
    ) -> None:
        got_text = got.hex() if got is not None else "undecodable bytes"
        super().__init__(
            f"state tree node {node_id} is tampered ({reason}): "
            f"expected hash {expected.hex()}, got {got_text}"
        )
        self.node_id = node_id
        self.expected = expected
        self.got = got
        self.reason = reason


class MissingNode(SparseMerkleError):
    """The store has no node ``node_id``, though a parent or a root refers to it."""

    def __init__(self, node_id: int) -> None:
        super().__init__(f"state tree node {node_id} is missing from the store")
        self.node_id = node_id


class MalformedTree(SparseMerkleError):
    """Node ``node_id`` hashes correctly but breaks a shape invariant (``reason``)."""

    def __init__(self, node_id: int, reason: str) -> None:
        super().__init__(f"state tree node {node_id} is malformed: {reason}")
        self.node_id = node_id
        self.reason = reason


class NodeRef(NamedTuple):
    """The id and hash of a node; a version's root. ``(0, ZERO)`` is the empty tree."""

    node_id: int
    hash: bytes


EMPTY_ROOT = NodeRef(0, ZERO)


class NodeStore(Protocol):
    """Where nodes are read from. Writing is the caller's business (see ``update``)."""

    def get_node(self, node_id: int) -> bytes:
        """The stored bytes of ``node_id``; raises :class:`KeyError` if absent."""
        ...

    def next_node_id(self) -> int:
        """The first id not yet used (at least 1)."""
        ...


class MemoryNodeStore:
    """A :class:`NodeStore` in a dict, for tests and tools. Rows are write-once."""

    def __init__(self) -> None:
        self._nodes: dict[int, bytes] = {}
        self._next = 1

    def get_node(self, node_id: int) -> bytes:
        """The stored bytes of ``node_id``; raises :class:`KeyError` if absent."""
        return self._nodes[node_id]

    def next_node_id(self) -> int:
        """The first id not yet used."""
        return self._next

    def put_nodes(self, rows: Iterable[tuple[int, bytes]]) -> None:
        """Store new rows; an id already present or below 1 raises :class:`ValueError`."""
        nodes = self._nodes
        for node_id, raw in rows:
            if node_id < 1 or node_id in nodes:
                raise ValueError(f"node id {node_id} is taken or invalid")
            nodes[node_id] = bytes(raw)
            if node_id >= self._next:
                self._next = node_id + 1

    def __len__(self) -> int:
        return len(self._nodes)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """The new root of a batch and the rows to store for it, children before parents."""

    root: NodeRef
    rows: tuple[tuple[int, bytes], ...]


def _decode(node_id: int, raw: bytes, expected: bytes) -> _Node:
    """Decode stored bytes and check them against ``expected``; raise :class:`TamperedNode`."""
    if len(raw) == LEAF_SIZE and raw[0] == LEAF_KIND:
        got = _sha256(_LEAF_PREFIX + raw[1:]).digest()
        node: _Node = (raw[1:33], raw[33:])
    elif len(raw) == NODE_SIZE and raw[0] == NODE_KIND:
        got = _sha256(_NODE_PREFIX + raw[1:65]).digest()
        node = _NODE_PACK.unpack(raw)[1:]
        if (node[2] == 0) != (node[0] == ZERO) or (node[3] == 0) != (node[1] == ZERO):
            raise TamperedNode(node_id, expected, got, "child id and hash disagree on emptiness")
    else:
        raise TamperedNode(node_id, expected, None, "not a node encoding")
    if got != expected:
        raise TamperedNode(node_id, expected, got)
    return node


def _check_root(root: tuple[int, bytes]) -> NodeRef:
    node_id, root_hash = root
    if type(node_id) is not int or node_id < 0 or not _is_hash(root_hash):
        raise ValueError("a root is (node id >= 0, 32-byte hash)")
    if (node_id == 0) != (root_hash == ZERO):
        raise ValueError("only node id 0 has the empty hash")
    return NodeRef(node_id, root_hash)


def _check_key(key: bytes) -> int:
    if not _is_hash(key):
        raise ValueError("a state tree key is 32 bytes")
    return int.from_bytes(key, "big")


class SparseMerkleTree:
    """Reads, proves and updates versions of the tree kept in ``store``.

    Keeps at most ``cache_size`` decoded nodes (least recently used goes first), so hot
    upper levels are not read and hashed again on every block. ``native`` chooses where
    :meth:`update` runs: the compiled extension (``True``; it keeps a cache of its own, of
    the same bound), Python (``False``), or :data:`NATIVE` (``None``).
    """

    def __init__(
        self, store: NodeStore, cache_size: int = 100_000, native: bool | None = None
    ) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._store = store
        self._cache_size = cache_size
        self._cache: OrderedDict[int, tuple[bytes, _Node]] = OrderedDict()
        use_native = NATIVE if native is None else native
        self._native: NativeTree | None = _native_tree(store, cache_size) if use_native else None

    @property
    def cache_len(self) -> int:
        """How many decoded nodes a cache holds now, the larger if the update keeps its own
        (never above ``cache_size``)."""
        return max(len(self._cache), self._native.cache_len if self._native else 0)

    def _read(self, node_id: int, expected: bytes) -> _Node:
        try:
            raw = self._store.get_node(node_id)
        except KeyError as e:
            raise MissingNode(node_id) from e
        return _decode(node_id, raw, expected)

    def _remember(self, node_id: int, node_hash: bytes, node: _Node) -> None:
        cache = self._cache
        cache[node_id] = (node_hash, node)
        if len(cache) > self._cache_size:
            cache.popitem(last=False)

    def _load(self, node_id: int, expected: bytes) -> _Node:
        """The decoded node ``node_id``, checked against ``expected`` (cached or read)."""
        hit = self._cache.get(node_id)
        if hit is not None and hit[0] == expected:
            self._cache.move_to_end(node_id)
            return hit[1]
        node = self._read(node_id, expected)
        self._remember(node_id, expected, node)
        return node

    # -- reading ---------------------------------------------------------------------

    def get(self, root: tuple[int, bytes], key: bytes) -> bytes | None:
        """The value hash under ``key`` in version ``root``, or ``None`` if absent."""
        node_id, expected = _check_root(root)
        k = _check_key(key)
        load, depth = self._load, 0
        while node_id:
            node = load(node_id, expected)
            if len(node) == 2:
                return node[1] if node[0] == key else None
            if k & _MASKS[depth]:
                expected, node_id = node[1], node[3]
            else:
                expected, node_id = node[0], node[2]
            depth += 1
        return None

    def prove(self, root: tuple[int, bytes], key: bytes) -> SparseProof:
        """A proof of what ``key`` holds in version ``root``: a value, or nothing."""
        node_id, expected = _check_root(root)
        k = _check_key(key)
        path: list[bytes] = []  # sibling hashes, root level first
        leaf = None
        while node_id:
            node = self._load(node_id, expected)
            if len(node) == 2:
                leaf = ProofLeaf(node[0], node[1])
                break
            if k & _MASKS[len(path)]:
                path.append(node[0])
                expected, node_id = node[1], node[3]
            else:
                path.append(node[1])
                expected, node_id = node[0], node[2]
        return SparseProof(
            depth=len(path),
            bitmap=_bitmap(path),
            siblings=tuple(s for s in reversed(path) if s != ZERO),
            leaf=leaf,
        )

    def iter_leaves(self, root: tuple[int, bytes]) -> Iterator[tuple[bytes, bytes]]:
        """Every ``(key, value_hash)`` of version ``root``, in key order."""
        node_id, expected = _check_root(root)
        stack: list[tuple[int, bytes]] = [(node_id, expected)]
        while stack:
            node_id, expected = stack.pop()
            if not node_id:
                continue
            node = self._load(node_id, expected)
            if len(node) == 2:
                yield node[0], node[1]
            else:
                stack.append((node[3], node[1]))
                stack.append((node[2], node[0]))

    def count_leaves(self, root: tuple[int, bytes]) -> int:
        """How many keys version ``root`` holds (walks the tree)."""
        return sum(1 for _ in self.iter_leaves(root))

    def verify_tree(self, root: tuple[int, bytes]) -> int:
        """Read every node of version ``root`` from the store (not the cache) and check it.

        Checks every hash and the shape (no internal node with a lone leaf or two empty
        children, every leaf on its key's path); returns the number of leaves. Raises
        :class:`TamperedNode`, :class:`MissingNode` or :class:`MalformedTree` on the first
        bad node.
        """
        node_id, expected = _check_root(root)
        stack = [(node_id, expected, 0, 0, False)]
        leaves = 0
        while stack:
            node_id, expected, depth, base, sibling_empty = stack.pop()
            if not node_id:
                continue
            node = self._read(node_id, expected)
            if len(node) == 2:
                _check_leaf_place(node_id, node[0], depth, base, sibling_empty)
                leaves += 1
                continue
            if depth == KEY_BITS or (node[2] == 0 and node[3] == 0):
                raise MalformedTree(node_id, "internal node at depth 256 or with no children")
            right_base = base | _MASKS[depth]
            stack.append((node[3], node[1], depth + 1, right_base, node[2] == 0))
            stack.append((node[2], node[0], depth + 1, base, node[3] == 0))
        return leaves

    # -- writing ---------------------------------------------------------------------

    def update(
        self, root: tuple[int, bytes], changes: Mapping[bytes, bytes | None]
    ) -> UpdateResult:
        """Apply ``changes`` (key to value hash, ``None`` deletes) to version ``root``.

        Returns the new root and the new rows, ids from ``store.next_node_id()`` upwards,
        children before parents. Nothing is written and no existing node changes.
        """
        start = _check_root(root)
        if self._native is not None:
            return _native_update(self._native, start, changes, self._store.next_node_id())
        items = sorted(_check_change(key, value) for key, value in changes.items())
        if not items:
            return UpdateResult(start, ())
        batch = _Batch(self, items, self._store.next_node_id())
        node_id, new_hash, _ = batch.apply(start.node_id, start.hash, 0, 0, 0, len(items))
        return UpdateResult(NodeRef(node_id, new_hash), tuple(batch.rows))


def _native_tree(store: NodeStore, cache_size: int) -> NativeTree:
    """The compiled update over ``store``; raises :class:`RuntimeError` when not built."""
    if _native is None:
        raise RuntimeError("the compiled state tree update (medledger_native) is not installed")
    return _native.NativeTree(store.get_node, cache_size, MissingNode, TamperedNode)


def _native_update(
    native: NativeTree, start: NodeRef, changes: Mapping[bytes, bytes | None], next_id: int
) -> UpdateResult:
    """:meth:`SparseMerkleTree.update` in the extension (which checks and sorts ``changes``)."""
    node_id, new_hash, rows = native.update(start.node_id, start.hash, changes, next_id)
    return UpdateResult(NodeRef(node_id, new_hash), rows)


def _check_change(key: bytes, value: bytes | None) -> tuple[bytes, bytes | None]:
    _check_key(key)
    if value is not None and not _is_hash(value):
        raise ValueError("a state tree value hash is 32 bytes (or None to delete)")
    return key, value


def _check_leaf_place(node_id: int, key: bytes, depth: int, base: int, sibling_empty: bool) -> None:
    if depth and sibling_empty:
        raise MalformedTree(node_id, "a leaf beside an empty subtree should have moved up")
    if depth and (int.from_bytes(key, "big") ^ base) >> (KEY_BITS - depth):
        raise MalformedTree(node_id, "a leaf off its key's path")
