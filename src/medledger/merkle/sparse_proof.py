"""Proofs of the sparse Merkle tree (:mod:`medledger.merkle.sparse`): what they hold, their
dict encoding, and how they are checked against a root hash.

Also home of what the tree and its proofs share, so :mod:`.sparse` imports from here and
never the other way: the hash functions (``leaf_hash``, ``node_hash``), the key constants
and the base error :class:`SparseMerkleError`. Everything public is re-exported by
:mod:`medledger.merkle.sparse`; import it from there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medledger.codec import Tag

__all__ = [
    "ZERO",
    "ProofFormatError",
    "ProofLeaf",
    "SparseMerkleError",
    "SparseProof",
    "leaf_hash",
    "node_hash",
    "verify_proof",
]

KEY_BITS = 256
ZERO = bytes(32)

_sha256 = hashlib.sha256
_LEAF_PREFIX = Tag.SMT_LEAF.prefix
_NODE_PREFIX = Tag.SMT_NODE.prefix
_MASKS = [1 << (KEY_BITS - 1 - depth) for depth in range(KEY_BITS)]


class SparseMerkleError(Exception):
    """Base of the errors of the sparse tree and its proofs (see :mod:`.sparse`'s docstring)."""


class ProofFormatError(SparseMerkleError, ValueError):
    """A sparse proof, or the dict it was read from, is not well formed (``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed sparse Merkle proof: {reason}")
        self.reason = reason


def leaf_hash(key: bytes, value_hash: bytes) -> bytes:
    """The hash of a leaf: ``tagged_hash(SMT_LEAF, key || value_hash)``."""
    return _sha256(_LEAF_PREFIX + key + value_hash).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an internal node: ``tagged_hash(SMT_NODE, left || right)``."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _is_hash(value: object) -> bool:
    return type(value) is bytes and len(value) == 32


def _bitmap(path: list[bytes]) -> bytes:
    """Bit ``d`` (most significant first) set when the sibling at depth ``d`` is not empty."""
    bits = bytearray((len(path) + 7) // 8)
    for depth, sibling in enumerate(path):
        if sibling != ZERO:
            bits[depth >> 3] |= 0x80 >> (depth & 7)
    return bytes(bits)


def _bit(bitmap: bytes, depth: int) -> bool:
    return bool(bitmap[depth >> 3] & (0x80 >> (depth & 7)))


@dataclass(frozen=True, slots=True)
class ProofLeaf:
    """The leaf a proof path ends at: the key itself, or another key on its path."""

    key: bytes
    value_hash: bytes


@dataclass(frozen=True, slots=True)
class SparseProof:
    """What a key holds in one version of the tree, provable against its root hash.

    The path from the root runs ``depth`` levels down the key's bits and ends at ``leaf``
    (the key's own leaf, or another key's leaf that stands alone on the path) or, when
    ``leaf`` is ``None``, at an empty subtree. ``bitmap`` has ``ceil(depth / 8)`` bytes; bit
    ``d`` (most significant first) says the sibling at depth ``d`` is not empty.
    ``siblings`` lists only those non-empty siblings, deepest first.
    """

    depth: int
    bitmap: bytes
    siblings: tuple[bytes, ...]
    leaf: ProofLeaf | None

    def validate(self) -> None:
        """Raise :class:`ProofFormatError` unless the fields are consistent and canonical."""
        depth, bitmap = self.depth, self.bitmap
        if type(depth) is not int or not 0 <= depth <= KEY_BITS:
            raise ProofFormatError("depth must be an integer in 0..256")
        if type(bitmap) is not bytes or len(bitmap) != (depth + 7) // 8:
            raise ProofFormatError("bitmap must be ceil(depth / 8) bytes")
        if depth % 8 and bitmap[-1] & (0xFF >> (depth % 8)):
            raise ProofFormatError("bitmap has bits set beyond depth")
        if not isinstance(self.siblings, tuple) or not all(_is_hash(s) for s in self.siblings):
            raise ProofFormatError("siblings must be a tuple of 32-byte hashes")
        if ZERO in self.siblings:
            raise ProofFormatError("empty siblings are left out, not listed")
        if sum(bin(b).count("1") for b in bitmap) != len(self.siblings):
            raise ProofFormatError("bitmap and siblings disagree on the count")
        leaf = self.leaf
        if leaf is not None and not (
            isinstance(leaf, ProofLeaf) and _is_hash(leaf.key) and _is_hash(leaf.value_hash)
        ):
            raise ProofFormatError("leaf must hold a 32-byte key and a 32-byte value hash")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: hex strings, lower case (see :meth:`from_dict`)."""
        leaf = self.leaf
        return {
            "depth": self.depth,
            "bitmap": self.bitmap.hex(),
            "siblings": [s.hex() for s in self.siblings],
            "leaf": None
            if leaf is None
            else {"key": leaf.key.hex(), "value_hash": leaf.value_hash.hex()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SparseProof:
        """Read :meth:`to_dict` output strictly; raise :class:`ProofFormatError`."""
        if not isinstance(data, Mapping) or set(data) != {"depth", "bitmap", "siblings", "leaf"}:
            raise ProofFormatError("expected exactly the fields depth, bitmap, siblings, leaf")
        siblings = data["siblings"]
        if not isinstance(siblings, list):
            raise ProofFormatError("siblings must be a list")
        proof = cls(
            depth=data["depth"],
            bitmap=_unhex(data["bitmap"], "bitmap"),
            siblings=tuple(_unhex(s, "sibling") for s in siblings),
            leaf=_leaf_from_dict(data["leaf"]),
        )
        proof.validate()
        return proof


def _unhex(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ProofFormatError(f"{what} must be a hex string")
    try:
        raw = bytes.fromhex(text)
    except ValueError as e:
        raise ProofFormatError(f"{what} is not hex") from e
    if raw.hex() != text:
        raise ProofFormatError(f"{what} must be lower-case hex without spaces")
    return raw


def _leaf_from_dict(data: object) -> ProofLeaf | None:
    if data is None:
        return None
    if not isinstance(data, Mapping) or set(data) != {"key", "value_hash"}:
        raise ProofFormatError("leaf must be null or exactly {key, value_hash}")
    return ProofLeaf(_unhex(data["key"], "leaf key"), _unhex(data["value_hash"], "value hash"))


def verify_proof(
    root_hash: bytes, key: bytes, value_hash: bytes | None, proof: SparseProof
) -> bool:
    """Does ``proof`` show that ``key`` holds ``value_hash`` under ``root_hash``?

    ``value_hash`` ``None`` asks whether the key is absent.

    Never raises: anything malformed, altered or inconsistent gives ``False``.
    """
    try:
        return _verify(root_hash, key, value_hash, proof)
    except Exception:  # a verifier answers no; it does not crash on hostile input
        return False


def _verify(root_hash: bytes, key: bytes, value_hash: bytes | None, proof: SparseProof) -> bool:
    if not (_is_hash(root_hash) and _is_hash(key) and isinstance(proof, SparseProof)):
        return False
    if value_hash is not None and not _is_hash(value_hash):
        return False
    proof.validate()
    if not _claim_matches(key, value_hash, proof):
        return False
    depth, bitmap = proof.depth, proof.bitmap
    if depth and not _bit(bitmap, depth - 1):
        return False  # a leaf or an empty slot beside an empty sibling cannot exist
    k = int.from_bytes(key, "big")
    leaf = proof.leaf
    current = ZERO if leaf is None else leaf_hash(leaf.key, leaf.value_hash)
    siblings = iter(proof.siblings)
    for d in range(depth - 1, -1, -1):
        sibling = next(siblings) if _bit(bitmap, d) else ZERO
        if k & _MASKS[d]:
            current = _sha256(_NODE_PREFIX + sibling + current).digest()
        else:
            current = _sha256(_NODE_PREFIX + current + sibling).digest()
    return current == root_hash


def _claim_matches(key: bytes, value_hash: bytes | None, proof: SparseProof) -> bool:
    """The proof's end point fits the claim: the key's own leaf, or absence on its path."""
    leaf = proof.leaf
    if value_hash is not None:
        return leaf is not None and leaf.key == key and leaf.value_hash == value_hash
    if leaf is None:
        return True
    if leaf.key == key:
        return False
    shift = KEY_BITS - proof.depth
    return (int.from_bytes(leaf.key, "big") ^ int.from_bytes(key, "big")) >> shift == 0
