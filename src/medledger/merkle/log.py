"""The RFC 9162 section 2.1 log tree: roots, inclusion and consistency proofs.

Hashes are exactly those of the standard (plain SHA-256, no medledger domain tag):

- leaf hash ``SHA-256(0x00 || data)``, node hash ``SHA-256(0x01 || left || right)``;
- the root of the empty tree is ``SHA-256("")``.

Proof lists run from the leaf level up to the root, as in RFC 9162. Verifiers return
``False`` and never raise, whatever they are given.

Three ways to hold a log:

- plain functions over a sequence of leaf hashes (:func:`root`, :func:`inclusion_proof`,
  :func:`consistency_proof`), fine for a block's few thousand transactions;
- :class:`LogTree`, which keeps every perfect subtree it has built, so that the root of any
  earlier size and any proof cost O(log n) hashes or O(log^2 n) at worst;
- :class:`Frontier`, which keeps only the roots of the perfect subtrees of the current size
  (at most 64 hashes): O(log n) per append, no leaves kept. A store saves it with
  :meth:`Frontier.to_list` and the size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "LogTree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256
_SubtreeRoot = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 hash of a leaf: ``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return MTH, the root of the tree over ``leaf_hashes`` (already leaf-hashed).

    Bottom-up pairing with the odd last node promoted unchanged, which yields exactly the
    RFC's split at the largest power of two; ``n - 1`` node hashes, no recursion.
    """
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    sha = _sha256
    while len(level) > 1:
        odd = len(level) & 1
        paired = [
            sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if odd:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (``size >= 2``)."""
    return 1 << ((size - 1).bit_length() - 1)


def _path(subtree: _SubtreeRoot, index: int, size: int) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(index, D[0:size]), leaf level first."""
    start, end, path = 0, size, []
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
    path.reverse()
    return path


def _consistency(subtree: _SubtreeRoot, old_size: int, size: int) -> list[bytes]:
    """RFC 9162 2.1.4.1 PROOF(old_size, D[0:size]) = SUBPROOF(old_size, D[0:size], true)."""
    m, start, end, complete = old_size, 0, size, True
    tail: list[bytes] = []
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            tail.append(subtree(start + k, end))
            end = start + k
        else:
            tail.append(subtree(start, start + k))
            start, m, complete = start + k, m - k, False
    head = [] if complete else [subtree(start, end)]
    return head + tail[::-1]


def _list_subtree(leaf_hashes: Sequence[bytes]) -> _SubtreeRoot:
    return lambda start, end: root(leaf_hashes[start:end])


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the audit path of leaf ``index`` in the tree over ``leaf_hashes``.

    Raises :class:`IndexError` if ``index`` is not a leaf of the tree.
    """
    if not 0 <= index < len(leaf_hashes):
        raise IndexError(f"leaf index {index} outside a tree of {len(leaf_hashes)} leaves")
    return _path(_list_subtree(leaf_hashes), index, len(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the proof that the first ``old_size`` leaves are a prefix of ``leaf_hashes``.

    Empty when ``old_size`` is 0 or the whole tree; raises :class:`ValueError` if
    ``old_size`` is negative or larger than the tree.
    """
    if not 0 <= old_size <= len(leaf_hashes):
        raise ValueError(f"old size {old_size} outside 0..{len(leaf_hashes)}")
    if old_size == 0:
        return []
    return _consistency(_list_subtree(leaf_hashes), old_size, len(leaf_hashes))


def _is_hash(value: object) -> bool:
    return type(value) is bytes and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    return type(value) is int and value >= 0


def _proof_ok(proof: object) -> bool:
    return isinstance(proof, (list, tuple)) and all(_is_hash(p) for p in proof)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: is ``leaf_hash`` leaf ``index`` of the ``size``-leaf tree ``root``?"""
    if not (_is_hash(leaf_hash) and _is_hash(root) and _proof_ok(proof)):
        return False
    if not (_is_size(index) and _is_size(size) and index < size):
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the ``old_size`` tree under ``old_root`` a prefix of the new one?

    Equal sizes need an empty proof and equal roots. Size 0 needs an empty proof and, unlike
    verifiers that accept any root there, ``old_root`` must be the empty tree's root.
    """
    if not (_is_hash(old_root) and _is_hash(new_root) and _proof_ok(proof)):
        return False
    if not (_is_size(old_size) and _is_size(new_size) and old_size <= new_size):
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    return _replay_consistency(old_size, new_size, old_root, new_root, list(proof))


def _replay_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: list[bytes]
) -> bool:
    """Steps 2-8 of RFC 9162 2.1.4.2 for ``0 < old_size < new_size`` and a non-empty path."""
    if old_size & (old_size - 1) == 0:
        path = [old_root, *path]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


class LogTree:
    """An append-only log that keeps every perfect subtree it has built.

    ``levels[h][i]`` is the root of leaves ``[i * 2**h, (i + 1) * 2**h)``; each append adds
    one leaf and at most ``log n`` parents (amortised one). Roots at any earlier size and
    proofs then need only O(log n) stored hashes plus a few along the right edge. Memory is
    about two hashes per leaf.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0])

    def __len__(self) -> int:
        return self.size

    def append(self, leaf_hash: bytes) -> int:
        """Add a leaf hash; return its index."""
        if not _is_hash(leaf_hash):
            raise ValueError("a leaf hash is 32 bytes")
        levels = self._levels
        index = len(levels[0])
        levels[0].append(leaf_hash)
        i, h = index, 0
        while i & 1:
            if h + 1 == len(levels):
                levels.append([])
            levels[h + 1].append(node_hash(levels[h][i - 1], levels[h][i]))
            i, h = i >> 1, h + 1
        return index

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        return self._levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (default: all of them)."""
        size = self._check_size(size)
        return self._subtree(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
        size = self._check_size(size)
        if not 0 <= index < size:
            raise IndexError(f"leaf index {index} outside a tree of {size} leaves")
        return _path(self._subtree, index, size)

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        """The proof that the first ``old_size`` leaves are a prefix of the first ``size``."""
        size = self._check_size(size)
        if not 0 <= old_size <= size:
            raise ValueError(f"old size {old_size} outside 0..{size}")
        return _consistency(self._subtree, old_size, size) if old_size else []

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"size {size} outside 0..{self.size}")
        return size

    def _subtree(self, start: int, end: int) -> bytes:
        """Root of leaves ``[start, end)``, a range the RFC recursion produces (aligned)."""
        width = end - start
        if width & (width - 1) == 0:
            h = width.bit_length() - 1
            return self._levels[h][start >> h]
        k = _split(width)
        left = self._levels[k.bit_length() - 1][start // k]
        return node_hash(left, self._subtree(start + k, end))


class Frontier:
    """The roots of the perfect subtrees of a log (its "compact range" from 0).

    Holds one hash per set bit of the size, largest subtree first. :meth:`append` costs
    O(log n) hashes at worst (amortised one), :meth:`root` at most 63. A chain of a million
    blocks keeps 20 hashes or fewer and never rehashes old blocks.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Add a leaf hash to the log."""
        if not _is_hash(leaf_hash):
            raise ValueError("a leaf hash is 32 bytes")
        hashes = self._hashes
        hashes.append(leaf_hash)
        n = self._size
        while n & 1:
            right = hashes.pop()
            hashes[-1] = node_hash(hashes[-1], right)
            n >>= 1
        self._size += 1

    def root(self) -> bytes:
        """MTH of all leaves appended so far (equal to :func:`root` over them)."""
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = node_hash(h, r)
        return r

    def copy(self) -> Frontier:
        """An independent copy (append to it without touching this one)."""
        return Frontier.from_list(self._size, self._hashes)

    def to_list(self) -> list[bytes]:
        """The subtree roots, largest first; save them with :attr:`size`."""
        return list(self._hashes)

    @classmethod
    def from_list(cls, size: int, hashes: Sequence[bytes]) -> Frontier:
        """Rebuild from :attr:`size` and :meth:`to_list`; :class:`ValueError` if they disagree."""
        if not _is_size(size):
            raise ValueError(f"size {size!r} is not a non-negative integer")
        if len(hashes) != size.bit_count() or not all(_is_hash(h) for h in hashes):
            raise ValueError(f"a frontier of size {size} is {size.bit_count()} hashes of 32 bytes")
        frontier = cls()
        frontier._size = size
        frontier._hashes = list(hashes)
        return frontier

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()})"
