"""The Python batch update of :class:`medledger.merkle.sparse.SparseMerkleTree`: the
reference the compiled update (``native/``) must match byte for byte, and the path used
when the extension is not installed (or ``MEDLEDGER_NATIVE=0``). It also holds the stored
node layout both share.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, insort
from collections import OrderedDict
from typing import Any, Protocol

from medledger.merkle.sparse_proof import (
    _LEAF_PREFIX,
    _MASKS,
    _NODE_PREFIX,
    KEY_BITS,
    ZERO,
    _sha256,
)


class _Tree(Protocol):
    """What a batch uses of :class:`medledger.merkle.sparse.SparseMerkleTree`: its node
    loader and its cache of decoded nodes."""

    _cache: OrderedDict[Any, Any]

    def _load(self, node_id: int, expected: bytes) -> Any: ...

    def _remember(self, node_id: int, node_hash: bytes, node: Any) -> None: ...

__all__ = ["LEAF_KIND", "LEAF_SIZE", "NODE_KIND", "NODE_SIZE"]

LEAF_KIND = 1
NODE_KIND = 2
LEAF_SIZE = 65
NODE_SIZE = 81

_LEAF_BYTE = bytes([LEAF_KIND])
_NODE_PACK = struct.Struct(">B32s32sQQ")

# Decoded nodes on the hot path are plain tuples: a leaf (key, value_hash), an internal node
# (left_hash, right_hash, left_id, right_id). A reference in flight is (id, hash, is_leaf)
# with is_leaf None when not known without a read.
_Node = tuple[Any, ...]
_Ref = tuple[int, bytes, bool | None]
_EMPTY: _Ref = (0, ZERO, False)


class _Batch:
    """One :meth:`SparseMerkleTree.update`: the sorted changes, new rows and next id.

    The changes are split by key bit at each internal node (one bisect), so every node on
    the union of the changed paths is read and rebuilt once.
    """

    __slots__ = (
        "cached",
        "ints",
        "keys",
        "load",
        "next_id",
        "remember",
        "rows",
        "to_end",
        "values",
    )

    def __init__(
        self, tree: _Tree, items: list[tuple[bytes, bytes | None]], next_id: int
    ) -> None:
        self.keys = [k for k, _ in items]
        self.values = [v for _, v in items]
        self.ints = [int.from_bytes(k, "big") for k in self.keys]
        self.rows: list[tuple[int, bytes]] = []
        self.next_id = max(next_id, 1)
        self.load = tree._load
        self.remember = tree._remember
        self.cached = tree._cache.get
        self.to_end = tree._cache.move_to_end

    def apply(self, node_id: int, expected: bytes, depth: int, base: int, lo: int, hi: int) -> _Ref:
        """The subtree at (``depth``, ``base``) after changes ``[lo, hi)``."""
        if not node_id:
            entries = self.inserts(lo, hi)
            return self.build(entries, 0, len(entries), depth, base)
        if hi - lo == 1:
            return self.apply_one(node_id, expected, depth, lo)
        node = self.load(node_id, expected)
        if len(node) == 2:
            return self.merge_leaf(node_id, expected, node, depth, base, lo, hi)
        left_hash, right_hash, left_id, right_id = node
        right_base = base | _MASKS[depth]
        mid = bisect_left(self.ints, right_base, lo, hi)
        left: _Ref = (left_id, left_hash, None)
        right: _Ref = (right_id, right_hash, None)
        if lo < mid:
            left = self.apply(left_id, left_hash, depth + 1, base, lo, mid)
        if mid < hi:
            right = self.apply(right_id, right_hash, depth + 1, right_base, mid, hi)
        if left[1] == left_hash and right[1] == right_hash:
            return (node_id, expected, False)
        return self.join(left, right)

    def apply_one(self, node_id: int, expected: bytes, depth: int, i: int) -> _Ref:
        """The subtree at ``depth`` after the one change ``i``: walk down, fix, hash up.

        The common case below the top levels of a batch, done in loops, not recursion.
        """
        k, key, value = self.ints[i], self.keys[i], self.values[i]
        path, end_id, end_hash, end = self.descend(node_id, expected, depth, k)
        bottom = depth + len(path)
        if not end_id:  # an empty slot
            if value is None:
                return (node_id, expected, None)
            current = self.new_leaf(key, value)
        elif end[0] == key:
            if value == end[1]:
                return (node_id, expected, None)
            current = _EMPTY if value is None else self.new_leaf(key, value)
        elif value is None:  # deleting a key that is absent
            return (node_id, expected, None)
        else:
            current = self.split_leaf(end_id, end_hash, end, bottom, i)
        return self.ascend(path, current, bottom, k)

    def descend(
        self, node_id: int, expected: bytes, depth: int, k: int
    ) -> tuple[list[_Node], int, bytes, _Node]:
        """The internal nodes down ``k``'s path, then where it ends: (id, hash, leaf or ())."""
        cached, to_end, load, masks = self.cached, self.to_end, self.load, _MASKS
        path: list[_Node] = []
        node: _Node = ()
        while node_id:
            hit = cached(node_id)
            if hit is not None and hit[0] == expected:
                to_end(node_id)
                node = hit[1]
            else:
                node = load(node_id, expected)
            if len(node) == 2:
                break
            path.append(node)
            if k & masks[depth]:
                expected, node_id = node[1], node[3]
            else:
                expected, node_id = node[0], node[2]
            depth += 1
        return path, node_id, expected, node

    def ascend(self, path: list[_Node], current: _Ref, depth: int, k: int) -> _Ref:
        """Rebuild the internal nodes of ``path`` above the new ``current`` at ``depth``."""
        masks, sha, prefix, pack = _MASKS, _sha256, _NODE_PREFIX, _NODE_PACK.pack
        rows, remember = self.rows, self.remember
        for left_hash, right_hash, left_id, right_id in reversed(path):
            depth -= 1
            node_id, node_hash, _ = current
            if k & masks[depth]:
                if not (node_id and left_id):
                    current = self.join((left_id, left_hash, None), current)
                    continue
                right_hash, right_id = node_hash, node_id
            else:
                if not (node_id and right_id):
                    current = self.join(current, (right_id, right_hash, None))
                    continue
                left_hash, left_id = node_hash, node_id
            node_id = self.next_id
            self.next_id = node_id + 1
            node_hash = sha(prefix + left_hash + right_hash).digest()
            rows.append((node_id, pack(NODE_KIND, left_hash, right_hash, left_id, right_id)))
            remember(node_id, node_hash, (left_hash, right_hash, left_id, right_id))
            current = (node_id, node_hash, False)
        return current

    def split_leaf(self, node_id: int, expected: bytes, leaf: _Node, depth: int, i: int) -> _Ref:
        """The subtree at ``depth`` holding leaf ``leaf`` and the new key ``i`` beside it."""
        k = self.ints[i]
        mine = (k, self.keys[i], self.values[i], None)
        leaf_int = int.from_bytes(leaf[0], "big")
        theirs = (leaf_int, leaf[0], leaf[1], (node_id, expected))
        entries = [mine, theirs] if k < leaf_int else [theirs, mine]
        shift = KEY_BITS - depth
        return self.build(entries, 0, 2, depth, (k >> shift) << shift)

    def join(self, left: _Ref, right: _Ref) -> _Ref:
        """The parent of two changed subtrees, collapsing a lone leaf upwards."""
        if left[0] and right[0]:
            return self.new_node(left, right)
        if not left[0]:
            if not right[0]:
                return _EMPTY
            if self.is_leaf(right):
                return (right[0], right[1], True)
        elif not right[0] and self.is_leaf(left):
            return (left[0], left[1], True)
        return self.new_node(left, right)

    def is_leaf(self, ref: _Ref) -> bool:
        if ref[2] is not None:
            return ref[2]
        return len(self.load(ref[0], ref[1])) == 2

    def merge_leaf(
        self, node_id: int, expected: bytes, leaf: _Node, depth: int, base: int, lo: int, hi: int
    ) -> _Ref:
        """The subtree that was the single leaf ``leaf``, after changes ``[lo, hi)``."""
        ints, values = self.ints, self.values
        leaf_key, leaf_value = leaf
        leaf_int = int.from_bytes(leaf_key, "big")
        entries = self.inserts(lo, hi)
        at = bisect_left(ints, leaf_int, lo, hi)
        if at == hi or ints[at] != leaf_int:
            insort(entries, (leaf_int, leaf_key, leaf_value, (node_id, expected)))
        elif values[at] == leaf_value:
            pos = bisect_left(entries, (leaf_int,))
            entries[pos] = (leaf_int, leaf_key, leaf_value, (node_id, expected))
        return self.build(entries, 0, len(entries), depth, base)

    def inserts(self, lo: int, hi: int) -> list[Any]:
        """The changes ``[lo, hi)`` that set a value, as entries ``(int, key, value, None)``."""
        ints, keys, values = self.ints, self.keys, self.values
        return [(ints[i], keys[i], values[i], None) for i in range(lo, hi) if values[i] is not None]

    def build(self, entries: list[Any], lo: int, hi: int, depth: int, base: int) -> _Ref:
        """A fresh subtree at (``depth``, ``base``) over sorted ``(int, key, value, ref)``."""
        count = hi - lo
        if count == 0:
            return _EMPTY
        if count == 1:
            _, key, value, ref = entries[lo]
            if ref is not None:
                return (ref[0], ref[1], True)
            return self.new_leaf(key, value)
        right_base = base | _MASKS[depth]
        mid = bisect_left(entries, (right_base,), lo, hi)
        left = self.build(entries, lo, mid, depth + 1, base)
        right = self.build(entries, mid, hi, depth + 1, right_base)
        return self.new_node(left, right)

    def new_leaf(self, key: bytes, value: bytes) -> _Ref:
        node_id = self.next_id
        self.next_id = node_id + 1
        self.rows.append((node_id, _LEAF_BYTE + key + value))
        return (node_id, _sha256(_LEAF_PREFIX + key + value).digest(), True)

    def new_node(self, left: _Ref, right: _Ref) -> _Ref:
        node_id = self.next_id
        self.next_id = node_id + 1
        left_id, left_hash, _ = left
        right_id, right_hash, _ = right
        self.rows.append(
            (node_id, _NODE_PACK.pack(NODE_KIND, left_hash, right_hash, left_id, right_id))
        )
        new_hash = _sha256(_NODE_PREFIX + left_hash + right_hash).digest()
        self.remember(node_id, new_hash, (left_hash, right_hash, left_id, right_id))
        return (node_id, new_hash, False)
