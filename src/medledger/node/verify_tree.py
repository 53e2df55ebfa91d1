"""Every version of the state tree, checked node by node for :func:`medledger.node.verify.verify_store`.

:class:`TreeVersions` walks the tree of each block's state root as the blocks are checked,
oldest first, reading and hash-checking each stored node once (a node shared by later
versions is only checked to be the one its parent names), with the tree's shape rules;
afterwards every stored node must belong to some version. :func:`check_state` checks the
state values against the tip's root.
"""

from __future__ import annotations

import hashlib
import struct
from bisect import bisect_left

from medledger.codec import Tag
from medledger.ledger import (
    IntegrityError,
)
from medledger.merkle.sparse import ZERO, NodeRef
from medledger.state import key_hash, value_hash
from medledger.store import Store, StoreError

__all__ = ["TreeVersions", "check_state"]

_LEAF_PREFIX = Tag.SMT_LEAF.prefix
_NODE_PREFIX = Tag.SMT_NODE.prefix
_INTERNAL = struct.Struct(">B32s32sQQ")  # kind, left hash, right hash, left id, right id
_LEAF_SIZE, _NODE_SIZE = 65, 81  # the stored encodings: kind 1 or 2, then the fields
_KEY_BITS = 256
_sha256 = hashlib.sha256
_UPPER_DEPTH, _UPPER_NODES = 12, 100_000  # the nodes :meth:`TreeVersions.get` keeps at hand
_RECENT_NODES = 65_536  # the hashes :meth:`TreeVersions.walk` keeps at hand


def _node_hash(raw: bytes) -> bytes | None:
    """The hash of a stored node's bytes; None when they are no node's encoding."""
    if len(raw) == _LEAF_SIZE and raw[0] == 1:
        return _sha256(_LEAF_PREFIX + raw[1:]).digest()
    if len(raw) == _NODE_SIZE and raw[0] == 2:
        return _sha256(_NODE_PREFIX + raw[1:65]).digest()
    return None


class TreeVersions:
    """Every version of the state tree (the root of each block), oldest first.

    Each node is read and checked against the hash its parent commits to when the first
    version that holds it is walked, so at the height of the block that wrote it; a later
    version that shares it checks only that its parent names its hash. Every node a walked
    root reaches is then checked, and :meth:`get` and :meth:`count_leaves` read such a
    version without hashing again. Linear in the number of nodes; a bit per node id.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen = bytearray()  # a bit per node id
        self.nodes = 0
        self._tops: list[int] = []  # the highest root id, as it grew ...
        self._top_heights: list[int] = []  # ... and the height of that root
        self._upper: dict[int, bytes] = {}  # the nodes near the roots, for :meth:`get`
        self._recent: dict[int, bytes] = {}  # the hashes of the nodes checked last

    def _is_seen(self, node_id: int) -> bool:
        at = node_id >> 3
        return at < len(self.seen) and bool(self.seen[at] >> (node_id & 7) & 1)

    def writer_of(self, node_id: int, latest: int) -> int:
        """The height of the block that wrote node ``node_id`` (the first whose root is at
        or above it: a block's nodes are numbered up to its root)."""
        at = bisect_left(self._tops, node_id)
        return self._top_heights[at] if at < len(self._tops) else latest

    def walk(self, height: int, root: NodeRef) -> None:
        """Walk the version of ``height``; raise IntegrityError at a bad node."""
        if not self._tops or root.node_id > self._tops[-1]:
            self._tops.append(root.node_id)
            self._top_heights.append(height)
        seen, recent, unpack = self.seen, self._recent, _INTERNAL.unpack
        stack = [(root.node_id, root.hash, 0, 0, False)]
        while stack:
            node_id, expected, depth, prefix, lone = stack.pop()
            if not node_id:
                continue
            at, bit = node_id >> 3, 1 << (node_id & 7)
            if at < len(seen) and seen[at] & bit:
                known = recent.get(node_id)
                if known is None:
                    known = _node_hash(self._read(height, node_id))
                if known != expected:
                    raise IntegrityError(height, f"state tree node {node_id} (table "
                                                 "smt_pages) is not the node its parent names")
                continue
            raw = self._read(height, node_id)
            got = _node_hash(raw)
            if got != expected:
                raise IntegrityError(height, f"state tree node {node_id} (table smt_pages) "
                                             "does not hash to what its parent commits to",
                                     expected.hex(), got.hex() if got else "no node's bytes")
            if at >= len(seen):
                seen.extend(bytes(at + 1 - len(seen) + 4096))
            seen[at] |= bit
            if len(recent) >= _RECENT_NODES:
                recent.clear()
            recent[node_id] = got
            self.nodes += 1
            if raw[0] == 1:
                _check_leaf(height, node_id, raw[1:33], depth, prefix, lone)
                continue
            _, left_hash, right_hash, left_id, right_id = unpack(raw)
            _check_internal(height, node_id, depth, left_hash, right_hash, left_id, right_id)
            right = prefix | 1 << (_KEY_BITS - 1 - depth)
            stack.append((right_id, right_hash, depth + 1, right, left_id == 0))
            stack.append((left_id, left_hash, depth + 1, prefix, right_id == 0))

    def _read(self, height: int, node_id: int) -> bytes:
        try:
            return self.store.get_node(node_id)
        except KeyError:
            raise IntegrityError(height, f"state tree node {node_id} is missing from table "
                                         "smt_pages") from None

    def get(self, root: NodeRef, key: bytes) -> bytes | None:
        """The value hash under tree key ``key`` in walked version ``root``."""
        k, depth, node_id = int.from_bytes(key, "big"), 0, root.node_id
        upper = self._upper
        while node_id:
            raw = upper.get(node_id) if depth < _UPPER_DEPTH else None
            if raw is None:
                raw = self.store.get_node(node_id)
                if depth < _UPPER_DEPTH:
                    if len(upper) >= _UPPER_NODES:
                        upper.clear()
                    upper[node_id] = raw
            if raw[0] == 1:
                return raw[33:] if raw[1:33] == key else None
            bit = k >> (_KEY_BITS - 1 - depth) & 1
            node_id = _INTERNAL.unpack(raw)[4 if bit else 3]
            depth += 1
        return None

    def count_leaves(self, root: NodeRef) -> int:
        """How many keys walked version ``root`` holds."""
        stack, leaves = [root.node_id], 0
        while stack:
            node_id = stack.pop()
            if node_id:
                raw = self.store.get_node(node_id)
                if raw[0] == 1:
                    leaves += 1
                else:
                    stack.extend(_INTERNAL.unpack(raw)[3:])
        return leaves

    def check_stored(self, latest: int, restored_up_to: int) -> None:
        """Every stored node was in some version (a node of a snapshot restore, up to id
        ``restored_up_to``, may have been replaced by a later batch of the same restore:
        it need only be a node)."""
        node_id = 0
        try:
            for node_id, raw in self.store.iter_nodes():
                if self._is_seen(node_id):
                    continue
                if node_id <= restored_up_to and _node_hash(raw) is not None:
                    continue
                raise IntegrityError(self.writer_of(node_id, latest),
                                     f"state tree node {node_id} (table smt_pages) is in no "
                                     "version of the state")
        except StoreError as e:
            raise IntegrityError(self.writer_of(node_id + 1, latest),
                                 f"table smt_pages: {e}") from e


def _check_internal(height: int, node_id: int, depth: int, left_hash: bytes,
                    right_hash: bytes, left_id: int, right_id: int) -> None:
    """The shape of an internal node whose bytes hash to what its parent commits to."""
    if (left_id == 0) != (left_hash == ZERO) or (right_id == 0) != (right_hash == ZERO):
        raise IntegrityError(height, f"state tree node {node_id} is malformed: a child's id "
                                     "and hash disagree on emptiness")
    if not (left_id or right_id) or depth == _KEY_BITS:
        raise IntegrityError(height, f"state tree node {node_id} is malformed: an internal "
                                     "node with no children or at depth 256")
    if left_id >= node_id or right_id >= node_id:
        raise IntegrityError(height, f"state tree node {node_id} is malformed: it names a "
                                     "child written after it")


def _check_leaf(height: int, node_id: int, key: bytes, depth: int, prefix: int,
                lone: bool) -> None:
    if depth and lone:
        raise IntegrityError(height, f"state tree node {node_id} is malformed: a leaf beside "
                                     "an empty subtree should have moved up")
    if depth and (int.from_bytes(key, "big") ^ prefix) >> (_KEY_BITS - depth):
        raise IntegrityError(height, f"state tree node {node_id} is malformed: a leaf off "
                                     "its key's path")


def check_state(store: Store, versions: TreeVersions, height: int, root: NodeRef) -> int:
    """Every state entry is the tip version's, and the tip holds no other key."""
    leaves = versions.count_leaves(root)
    count = 0
    for key, value in store.iter_values():
        if versions.get(root, key_hash(key)) != value_hash(value):
            raise IntegrityError(height, f"state value of {key!r} does not match the state "
                                         "root")
        count += 1
    if count != leaves:
        raise IntegrityError(height, "state holds entries the state root does not",
                             str(leaves), str(count))
    return count
